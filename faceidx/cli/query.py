"""`faceidx query`: who is this? Top-k identities per probe and an open-set decision.

Parsing and printing only: probes, thresholds and searches are faceidx.gallery's.
"""

from __future__ import annotations

import json
import time
from pathlib import Path

import click
import numpy as np

from faceidx.cli.options import device_option, echo_json, json_option
from faceidx.errors import DataError

SINGLE_QUERY_MAX = 64  # up to this many probes are searched one by one (true latency)


def threshold_option(help_text: str):
    return click.option("--threshold", default="auto", show_default=True, callback=_check_threshold,
                        help=help_text)


def _check_threshold(ctx, param, value: str) -> str:
    from faceidx.gallery.threshold import parse_threshold

    try:
        parse_threshold(value)
    except ValueError as err:
        raise click.BadParameter(str(err), ctx=ctx, param=param) from err
    return value


@click.command()
@click.argument("index_dir", type=click.Path(exists=True, file_okay=False, path_type=Path))
@click.argument("probes", nargs=-1, required=True, type=click.Path(exists=True, path_type=Path))
@click.option("-k", "k", type=click.IntRange(min=1), default=5, show_default=True,
              help="Distinct identities listed per probe.")
@threshold_option("'auto' (from calibration.json) or a cosine score in [-1, 1].")
@click.option("--faces", type=click.Choice(["largest", "all"]), default="largest", show_default=True,
              help="Faces searched per probe image: the largest, or every face (group photos).")
@click.option("--model", default=None,
              help="Model to embed probe images (default: the index's; must match it).")
@click.option("--detector", type=click.Choice(["hog", "none"]), default=None,
              help="Face detector for probe images (default: the one the index's faces used).")
@click.option("--score", type=click.Choice(["best", "template"]), default="best", show_default=True,
              help="A listed person's score: their best face, or their template (the "
                   "normalised mean of their faces; calibrate with the same --score).")
@device_option
@json_option
def query(index_dir: Path, probes: tuple[Path, ...], k: int, threshold: str, faces: str,
          model: str | None, detector: str | None, score: str, device: str, as_json: bool) -> None:
    """Identify probes: the top-k identities of each and the decision (a name or unknown).

    PROBE is an image file, a folder of images, or an embeddings collection/parquet file.
    A person's score is the exact cosine of their best face; nobody is listed twice. The
    answer is the top identity when its score >= the threshold, else "unknown". Each
    answer says its score, the threshold, the calibrated FPIR at that threshold for this
    gallery (the share of strangers who would get a name) and the margin to the runner-up.

    \b
    Example:
      faceidx query faces.index photo.jpg strangers/ -k 3
      faceidx query faces.index group.jpg --faces all --json
      faceidx query faces.index probes.parquet --threshold auto --json
      faceidx query faces.index photo.jpg --score template
    """
    from faceidx.gallery import open_gallery
    from faceidx.gallery.probes import load_probes

    gallery = open_gallery(index_dir, threshold=threshold, device=device, model=model,
                           detector=detector, score=score)
    thr = gallery.threshold_for(None)
    for warning in thr.warnings:
        click.echo(f"warning: {warning}", err=True)
    p = load_probes(probes, gallery.index, gallery.embedder, faces)
    for src, _, reason in p.skipped:
        click.echo(f"warning: {src}: {reason.replace('_', ' ')}; probe skipped", err=True)
    if not len(p.vectors) and not p.skipped:
        raise DataError("no probe to search", probes[0])
    results, latencies = _search(gallery, p.vectors, k)
    from faceidx.query.quality_gate import gate_results

    gate_results(results, p.quality, thr.quality_gate)
    for res, box in zip(results, p.boxes, strict=True):
        res.box = box
    summary = _summary(p, results, latencies, thr, gallery)
    if as_json:
        for src, truth, res in zip(p.sources, p.truth, results, strict=True):
            echo_json({"probe": src, "truth": truth, **res.to_json()})
        from faceidx.query.identify import Identification

        for src, truth, reason in p.skipped:
            skipped = Identification.skipped(reason, thr.value)
            skipped.fpir = thr.fpir
            echo_json({"probe": src, "truth": truth, **skipped.to_json()})
        click.echo(json.dumps({"summary": summary}), err=True)
        return
    if results:
        _table(p, results, k, gallery.snapshot.counts())
    if any(t is not None for t in p.truth):
        _how_truth(probes)
    fpir = "" if thr.fpir is None else f" (FPIR {thr.fpir:.3g} for this gallery)"
    click.echo(f"\n{summary['probes']} probes, threshold {thr.value:.4f} from {thr.origin}{fpir}; "
               f"{summary['known']} answered with a name, {summary['unknown']} unknown"
               + (f", {summary['low_quality']} low_quality (below the quality gate "
                  f"{thr.quality_gate:.3f})" if summary["low_quality"] else "")
               + (f", {summary['skipped']} skipped (no usable face)" if p.skipped else ""))
    if summary["correct"] is not None:
        click.echo(f"labelled probes: {summary['correct']} correct answers of {summary['labelled']}")
    if results:
        mode = "one probe at a time" if summary["single_query"] else "batched, per probe"
        click.echo(f"search latency ({mode}): p50 {summary['latency_ms_p50']:.2f} ms, "
                   f"p95 {summary['latency_ms_p95']:.2f} ms over N={summary['gallery_identities']:,} "
                   f"identities, {gallery.index.ntotal:,} faces")
    if p.images:
        click.echo(f"embedding {p.images} images took {p.embed_seconds:.2f} s")


def _search(gallery, vectors: np.ndarray, k: int):
    latencies, results = [], []
    if len(vectors) <= SINGLE_QUERY_MAX:
        for row in vectors:
            t0 = time.perf_counter()
            results += gallery.identify(row[None, :], k=k)
            latencies.append(time.perf_counter() - t0)
    else:
        for lo in range(0, len(vectors), 1024):
            t0 = time.perf_counter()
            chunk = gallery.identify(vectors[lo:lo + 1024], k=k)
            latencies += [(time.perf_counter() - t0) / len(chunk)] * len(chunk)
            results += chunk
    return results, latencies


def _summary(p, results, latencies, thr, gallery) -> dict:
    from faceidx.gallery.probes import count_correct

    decisions = [r.decision for r in results]
    labelled, correct = count_correct(p.truth, results, gallery.snapshot)
    lat = np.asarray(latencies or [0.0]) * 1000
    return {"probes": len(results) + len(p.skipped), "searched": len(results),
            "skipped": len(p.skipped), "known": sum(d is not None for d in decisions),
            "unknown": sum(r.status == "unknown" for r in results),
            "low_quality": sum(r.status == "low_quality" for r in results),
            "quality_gate": thr.quality_gate, "threshold": thr.value,
            "threshold_from": thr.origin, "fpir_at_threshold": thr.fpir,
            "labelled": labelled, "correct": correct,
            "single_query": len(results) <= SINGLE_QUERY_MAX,
            "latency_ms_p50": float(np.percentile(lat, 50)),
            "latency_ms_p95": float(np.percentile(lat, 95)),
            "embed_seconds": p.embed_seconds,
            "gallery_identities": gallery.index.manifest.get("num_identities", 0)}


def _table(p, results, k: int, enrolled) -> None:
    """One line per probe; with truth known, whether the answer is right: an enrolled
    person must get their name, anyone else "unknown"."""
    width = min(max((len(_short(s)) for s in p.sources), default=5), 48)
    labelled = any(t is not None for t in p.truth)
    truth_col = f"{'truth':<22} {'result':<6} " if labelled else ""
    boxes = any(b is not None for b in p.boxes) and len(set(p.sources)) < len(p.sources)
    box_col = f"{'face box':<20} " if boxes else ""
    click.echo(f"{'probe':<{width}}  {box_col}{truth_col}{'answer':<22} {'score':>6} "
               f"{'margin':>6}  top-{k} (identity score)")
    for src, truth, box, res in zip(p.sources, p.truth, p.boxes, results, strict=True):
        answer = {"known": res.decision, "unlabelled": "(unlabelled face)",
                  "low_quality": "low_quality"}.get(res.status, "unknown")
        right = (res.decision == truth) if truth in enrolled else res.decision is None
        mark = "-" if truth is None else "right" if right else "WRONG"
        col = f"{(truth or '-')[:22]:<22} {mark:<6} " if labelled else ""
        bcol = f"{','.join(map(str, box)) if box else '-':<20} " if boxes else ""
        margin = "-" if res.margin is None else f"{res.margin:.3f}"
        cands = " | ".join(f"{c.identity or '-'} {c.score:.3f}" for c in res.candidates)
        click.echo(f"{_short(src):<{width}}  {bcol}{col}{answer[:22]:<22} {res.top_score:>6.3f} "
                   f"{margin:>6}  {cands}")


def _how_truth(probes) -> None:
    """Say where the truth column came from, per probe folder (folder names, or none)."""
    from faceidx.embedder.sources import list_labelled
    from faceidx.gallery.probes import is_collection

    for path in map(Path, probes):
        if is_collection(path):
            click.echo(f"truth: {path}: the collection's identity column")
        elif path.is_dir():
            click.echo(f"truth: {list_labelled(path).explain()}")


def _short(path: str) -> str:
    parts = Path(path).parts
    s = "/".join(parts[-2:]) if len(parts) >= 2 else path
    return s if len(s) <= 48 else "..." + s[-45:]
