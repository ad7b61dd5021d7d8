"""`faceidx query`: who is this? Top-k identities per probe and an open-set decision."""

from __future__ import annotations

import json
import logging
import time
from dataclasses import dataclass
from pathlib import Path

import click
import numpy as np

from faceidx.cli.options import device_option, echo_json, json_option
from faceidx.errors import DataError, ModelMismatchError

log = logging.getLogger(__name__)

SINGLE_QUERY_MAX = 64  # up to this many probes are searched one by one (true latency)


@dataclass
class Probes:
    """Probe vectors with where they came from and, when known, who they are."""

    vectors: np.ndarray
    sources: list[str]
    truth: list[str | None]
    embed_seconds: float = 0.0
    images: int = 0


def parse_threshold(value: str) -> float | None:
    """'auto' -> None (read calibration.json); a float in [-1, 1] otherwise."""
    if value.strip().lower() == "auto":
        return None
    try:
        t = float(value)
    except ValueError as err:
        raise click.BadParameter(f"{value!r} is neither 'auto' nor a number",
                                 param_hint="--threshold") from err
    if not -1.0 <= t <= 1.0:
        raise click.BadParameter(f"{t} is outside the cosine score range [-1, 1]",
                                 param_hint="--threshold")
    return t


def is_collection(path: Path) -> bool:
    if path.is_file():
        return path.suffix.lower() in (".parquet", ".pq")
    return (path / "collection.json").exists() or any(path.glob("*.parquet"))


def load_probes(paths: tuple[Path, ...], index, model: str | None, detector: str | None,
                device: str) -> Probes:
    """Collections are read as they are; images are embedded with the index's model."""
    from faceidx.io import open_collection

    vecs, sources, truth, images = [], [], [], []
    for p in paths:
        if is_collection(p):
            coll = open_collection(p)
            index.meta.check_compatible(coll.meta, p)
            batch = coll.read_all(columns=["identity", "source", "embedding"])
            vecs.append(batch.embeddings)
            sources += [str(s) for s in batch.sources]
            truth += list(batch.identities)
        else:
            from faceidx.embedder.sources import list_source

            images += list_source(p)
    out = Probes(np.empty((0, index.dim), np.float32), [], [])
    if images:
        emb = embed_images(images, index, model, detector, device)
        vecs.append(emb.vectors)
        sources += emb.sources
        truth += emb.truth
        out.embed_seconds, out.images = emb.embed_seconds, emb.images
    if vecs:
        out.vectors = np.concatenate(vecs).astype(np.float32)
    out.sources, out.truth = sources, truth
    return out


def embed_images(items, index, model: str | None, detector: str | None, device: str) -> Probes:
    from faceidx.embedder.pipeline import embed_paths

    meta = index.meta
    spec = model or meta.model
    detector = detector or _index_detector(index) or "hog"
    t0 = time.perf_counter()
    try:
        res = embed_paths([it.path for it in items], model=spec, detector=detector, device=device)
    except DataError as err:
        if model is None:
            raise DataError(f"probe images need the index's model {meta.model!r} to embed them, "
                            f"and it cannot be loaded ({err.reason}); pass --model MODEL_DIR, "
                            "or give an embeddings collection as PROBE", index.path) from err
        raise
    seconds = time.perf_counter() - t0
    if (res.meta.model, res.meta.model_version, res.meta.dim) != (meta.model, meta.model_version, meta.dim):
        raise ModelMismatchError(
            f"probe model {res.meta.model!r} (version {res.meta.model_version!r}, D={res.meta.dim}) "
            f"is not the index's {meta.model!r} (version {meta.model_version!r}, D={meta.dim})",
            index.path)
    for path, reason in res.failures:
        click.echo(f"warning: {path}: {reason.replace('_', ' ')}; probe skipped", err=True)
    identity = {it.path: it.identity for it in items}
    return Probes(res.embeddings, list(res.sources), [identity.get(s) for s in res.sources],
                  seconds, len(items))


def _index_detector(index) -> str | None:
    """The detector the index's first collection was embedded with (embed.json), if known."""
    for c in index.manifest.get("collections", []):
        settings = Path(c.get("path", "")) / "embed.json"
        if settings.exists():
            try:
                return json.loads(settings.read_text()).get("detector")
            except (OSError, ValueError):
                return None
    return None


def resolve_threshold(index_dir: Path, index, threshold: float | None) -> tuple[float, str]:
    """(threshold, where it came from). auto reads calibration.json (checked for this index)."""
    from faceidx.query.calibfile import check_growth, load_calibration

    if threshold is not None:
        return threshold, "--threshold"
    cal = load_calibration(index_dir, index.manifest)
    warning = check_growth(cal, index.manifest)
    if warning:
        log.warning("%s", warning)
        click.echo(f"warning: {warning}", err=True)
    t = cal["threshold"]
    return float(t["value"]), f"calibration.json (FPIR {t['target_fpir']:g} at N={t['gallery_identities']})"


@click.command()
@click.argument("index_dir", type=click.Path(exists=True, file_okay=False, path_type=Path))
@click.argument("probes", nargs=-1, required=True, type=click.Path(exists=True, path_type=Path))
@click.option("-k", "k", type=click.IntRange(min=1), default=5, show_default=True,
              help="Distinct identities listed per probe.")
@click.option("--threshold", default="auto", show_default=True,
              help="'auto' (from calibration.json) or a cosine score in [-1, 1].")
@click.option("--model", default=None,
              help="Model to embed probe images (default: the index's; must match it).")
@click.option("--detector", type=click.Choice(["hog", "none"]), default=None,
              help="Face detector for probe images (default: the one the index's faces used).")
@device_option
@json_option
def query(index_dir: Path, probes: tuple[Path, ...], k: int, threshold: str, model: str | None,
          detector: str | None, device: str, as_json: bool) -> None:
    """Identify probes: the top-k identities of each and the decision (a name or unknown).

    PROBE is an image file, a folder of images, or an embeddings collection/parquet file.
    A person's score is the exact cosine of their best face; nobody is listed twice. The
    answer is the top identity when its score >= the threshold, else "unknown".

    \b
    Example:
      faceidx query faces.index photo.jpg strangers/ -k 3
      faceidx query faces.index probes.parquet --threshold 0.62 --json
    """
    from faceidx.index import open_index
    from faceidx.query.identify import identify

    t = parse_threshold(threshold)
    index = open_index(index_dir)
    thr, origin = resolve_threshold(index_dir, index, t)
    p = load_probes(probes, index, model, detector, device)
    if not len(p.vectors):
        raise DataError("no probe to search (no face found in the images given)", probes[0])
    latencies = []
    results = []
    if len(p.vectors) <= SINGLE_QUERY_MAX:
        for row in p.vectors:
            t0 = time.perf_counter()
            results += identify(index, row[None, :], k=k, threshold=thr)
            latencies.append(time.perf_counter() - t0)
    else:
        for lo in range(0, len(p.vectors), 1024):
            t0 = time.perf_counter()
            chunk = identify(index, p.vectors[lo:lo + 1024], k=k, threshold=thr)
            latencies += [(time.perf_counter() - t0) / len(chunk)] * len(chunk)
            results += chunk
    summary = _summary(p, results, latencies, thr, origin, index)
    if as_json:
        for src, truth, res in zip(p.sources, p.truth, results, strict=True):
            echo_json({"probe": src, "truth": truth, **res.to_json()})
        click.echo(json.dumps({"summary": summary}), err=True)
        return
    _table(p, results, k)
    click.echo(f"\n{summary['probes']} probes, threshold {thr:.4f} from {origin}; "
               f"{summary['known']} answered with a name, {summary['unknown']} unknown")
    if summary["correct"] is not None:
        click.echo(f"labelled probes: {summary['correct']} correct answers of {summary['labelled']}")
    mode = "one probe at a time" if summary["single_query"] else "batched, per probe"
    click.echo(f"search latency ({mode}): p50 {summary['latency_ms_p50']:.2f} ms, "
               f"p95 {summary['latency_ms_p95']:.2f} ms over N={index.num_identities:,} identities, "
               f"{index.ntotal:,} faces")
    if p.images:
        click.echo(f"embedding {p.images} images took {p.embed_seconds:.2f} s")


def _summary(p: Probes, results, latencies, thr: float, origin: str, index) -> dict:
    decisions = [r.decision for r in results]
    labelled = [(tr, d) for tr, d in zip(p.truth, decisions, strict=True) if tr is not None]
    enrolled = None
    if labelled:
        from faceidx.query.calibrate import enrolled_identities

        enrolled = enrolled_identities(index)
    correct = sum((d == tr) if tr in enrolled else d is None for tr, d in labelled) if labelled else None
    lat = np.asarray(latencies) * 1000
    return {"probes": len(results), "known": sum(d is not None for d in decisions),
            "unknown": sum(d is None for d in decisions), "threshold": thr,
            "threshold_from": origin, "labelled": len(labelled), "correct": correct,
            "single_query": len(results) <= SINGLE_QUERY_MAX,
            "latency_ms_p50": float(np.percentile(lat, 50)),
            "latency_ms_p95": float(np.percentile(lat, 95)),
            "embed_seconds": p.embed_seconds, "gallery_identities": index.num_identities}


def _table(p: Probes, results, k: int) -> None:
    width = min(max((len(_short(s)) for s in p.sources), default=5), 48)
    labelled = any(t is not None for t in p.truth)
    truth_col = f"{'truth':<22} " if labelled else ""
    click.echo(f"{'probe':<{width}}  {truth_col}{'answer':<22} {'score':>6}  top-{k} (identity score)")
    for src, truth, res in zip(p.sources, p.truth, results, strict=True):
        d = res.decision
        answer = "unknown" if d is None else d
        col = f"{(truth or '-')[:22]:<22} " if labelled else ""
        cands = " | ".join(f"{c.identity or '-'} {c.score:.3f}" for c in res.candidates)
        click.echo(f"{_short(src):<{width}}  {col}{answer[:22]:<22} {res.top_score:>6.3f}  {cands}")


def _short(path: str) -> str:
    parts = Path(path).parts
    s = "/".join(parts[-2:]) if len(parts) >= 2 else path
    return s if len(s) <= 48 else "..." + s[-45:]
