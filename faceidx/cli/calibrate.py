"""`faceidx calibrate`: set an index's open-set threshold from labelled held-out faces."""

from __future__ import annotations

from pathlib import Path

import click

from faceidx.cli.options import device_option, echo_json, json_option, warn


def _rate(name: str):
    def check(ctx, param, value: float) -> float:
        if not 0.0 < value < 1.0:
            raise click.BadParameter(f"{value} must be a rate strictly between 0 and 1",
                                     param_hint=name)
        return value
    return check


@click.command()
@click.argument("index_dir", type=click.Path(exists=True, file_okay=False, path_type=Path))
@click.option("--holdout", required=True, type=click.Path(exists=True, path_type=Path),
              help="Photos of people who are not enrolled, named by folder or file (a public "
                   "labelled face set works), plus, to measure TPIR/CMC too, other photos of "
                   "enrolled people; none of them in the gallery. An image folder (embedded "
                   "with the index's model and detector) or an embeddings collection.")
@click.option("--target-far", type=float, default=1e-3, show_default=True,
              callback=_rate("--target-far"), help="1:1 false accept rate to set a threshold for.")
@click.option("--target-fpir", type=float, default=1e-2, show_default=True,
              callback=_rate("--target-fpir"),
              help="1:N false positive identification rate the query threshold is set for.")
@click.option("--plots", "plots_dir", type=click.Path(file_okay=False, path_type=Path), default=None,
              help="Write scores.png, roc.png and openset.png here.")
@click.option("--seed", type=int, default=0, show_default=True, help="Seed of pair sampling.")
@click.option("--score", type=click.Choice(["best", "template"]), default="best", show_default=True,
              help="Scores to calibrate on, as `query --score` decides: a person's best face, "
                   "or their template (normalised mean of their faces).")
@device_option
@json_option
def calibrate(index_dir: Path, holdout: Path, target_far: float, target_fpir: float,
              plots_dir: Path | None, seed: int, score: str, device: str, as_json: bool) -> None:
    """Calibrate INDEX_DIR's threshold on held-out labelled faces (writes calibration.json).

    1:1: genuine/impostor pairs of the holdout give ROC, EER, TAR at --target-far and
    10-fold accuracy. 1:N: every holdout face is searched against the index as built
    (N = its identities); the threshold at --target-fpir is what `faceidx query
    --threshold auto` uses. Also prints the FPIR the same threshold would give at 10x
    and 100x N (from a fitted impostor tail). A holdout of strangers only (nobody in it
    enrolled) sets the threshold from their non-mated searches and reports TPIR/CMC as
    not measured. Refuses a holdout with one identity, no pairs, or too few impostors
    for the target; warns when there are barely enough.

    A holdout is a set of labelled faces the gallery has never seen: it shows which
    scores strangers reach, so the threshold can keep them out. To get one, take photos
    of people you did not enrol (a public labelled face set such as LFW works), in one
    folder per person or named by person (Jane_Doe_0001.jpg), two or more of some people
    (the 1:1 numbers need pairs), and add other photos of enrolled people if you have them.

    \b
    Example:
      faceidx calibrate faces.index --holdout strangers/ --plots plots/
      faceidx calibrate faces.index --holdout heldout/ --plots plots/
      faceidx calibrate faces.index --holdout heldout/ --target-fpir 1e-3 --json
      faceidx calibrate faces.index --holdout heldout/ --score template
    """
    from faceidx.gallery.probes import is_collection
    from faceidx.index import open_index
    from faceidx.io import open_collection
    from faceidx.query.calibfile import save_calibration
    from faceidx.query.calibrate import CalibrationOptions
    from faceidx.query.calibrate import calibrate as run

    index = open_index(index_dir)
    if is_collection(holdout):
        coll = open_collection(holdout)
        index.meta.check_compatible(coll.meta, holdout)
        batch = coll.read_all(columns=["identity", "source", "embedding"]
                              + (["quality"] if "quality" in coll.columns else []))
    else:
        batch = _embed_holdout(holdout, index, device)
    opts = CalibrationOptions(target_far=target_far, target_fpir=target_fpir, seed=seed,
                              score=score)
    templates_of = None
    if score == "template":
        from faceidx.gallery.templates import templates_for

        templates_of = templates_for(index)
    result, raw = run(index, batch, opts, holdout_path=str(holdout), templates_of=templates_of)
    if plots_dir is not None:
        from faceidx.query.plots import write_plots

        result["plots"] = [str(p) for p in write_plots(plots_dir, result, raw)]
    path = save_calibration(index_dir, result)
    for w in result["warnings"]:
        warn(w)  # once: the library may have logged the same text
    if as_json:
        echo_json({"calibration": str(path), **result})
        return
    _report(result, path)


def _embed_holdout(holdout: Path, index, device: str):
    """An image-folder holdout embedded in memory with the index's model and detector."""
    import os

    import numpy as np

    from faceidx.embedder.enrolment import embed_labelled_photos
    from faceidx.gallery.probes import index_detector
    from faceidx.io.reader import EmbeddingBatch

    meta = index.meta
    faces = embed_labelled_photos(holdout, meta.model, detector=index_detector(index) or "hog",
                                  device=device, workers=min(os.cpu_count() or 1, 8))
    if faces.failures:
        shown = ", ".join(f"{Path(p).name} ({r.replace('_', ' ')})" for p, r in faces.failures[:3])
        warn(f"{len(faces.failures)} holdout photo(s) gave no face and are left out: {shown}")
    n = len(faces.identities)
    click.echo(f"holdout photos: {faces.naming.lines[0]}; {n} faces embedded with "
               f"{meta.model}", err=True)
    meta.check_compatible(faces.meta, holdout)
    return EmbeddingBatch(path=holdout, row_offset=0, face_ids=np.arange(n, dtype=np.int64), embeddings=faces.embeddings,
                          identities=np.asarray(faces.identities, dtype=object),
                          sources=np.asarray(faces.sources, dtype=object))


def _report(r: dict, path: Path) -> None:
    v, o = r["verification"], r["openset"]
    click.echo(f"holdout: {r['holdout']['faces']:,} faces of {r['holdout']['identities']:,} people")
    if v is None:
        click.echo("1:1 verification: not measured (no person with two or more photos in "
                   "the holdout)")
    else:
        click.echo(f"1:1 verification on {v['genuine_pairs']:,} genuine / "
                   f"{v['impostor_pairs']:,} impostor pairs:")
        click.echo(f"  TAR {v['tar']:.4f} at FAR {v['far']:.2e} (target {v['target_far']:g}), "
                   f"threshold {v['threshold']:.4f}")
        click.echo(f"  EER {v['eer']:.4f} at {v['eer_threshold']:.4f}")
    if v is not None and v.get("kfold"):
        kf = v["kfold"]
        click.echo(f"  {kf['folds']}-fold accuracy {kf['accuracy']:.4f} +- {kf['std']:.4f} "
                   f"({kf['per_fold']} + {kf['per_fold']} pairs per fold)")
    click.echo(f"1:N open-set ({r['threshold'].get('score', 'best')} scores) against "
               f"N = {o['gallery_identities']:,} identities "
               f"({o['gallery_faces']:,} faces): {o['mated_searches']:,} mated, "
               f"{o['nonmated_searches']:,} non-mated searches "
               f"({o['nonmated_strangers']:,} strangers + {o['nonmated_mate_removed']:,} with the mate removed)")
    if o["tpir"] is None:
        click.echo(f"  threshold {o['threshold']:.4f}: FPIR {o['fpir']:.4f} (target "
                   f"{o['target_fpir']:g}); TPIR, FNIR and CMC not measured (no enrolled "
                   "person in the holdout)")
    else:
        click.echo(f"  threshold {o['threshold']:.4f}: FPIR {o['fpir']:.4f} (target "
                   f"{o['target_fpir']:g}), TPIR {o['tpir']:.4f}")
        click.echo(f"  rank-1 {o['rank1']:.4f}  rank-5 {o['rank5']:.4f}  rank-10 {o['rank10']:.4f}")
    if v is not None:
        click.echo(f"  the 1:1 threshold {v['threshold']:.4f} would give FPIR "
                   f"{o['fpir_at_verification_threshold']:.4f} at this N")
    ext = o.get("extrapolation")
    if ext:
        for g in ext["growth"][1:]:
            click.echo(f"  at {g['factor']}x N ({g['identities']:,} identities): FPIR "
                       f"{g['fpir_at_threshold']:.4f} at this threshold; "
                       f"{g['threshold_for_target']:.4f} would keep it at {o['target_fpir']:g} (modelled)")
    qual = r.get("quality")
    if qual:
        g = qual["gate"]
        click.echo(f"quality gate {g['gate']:.3f}" + (" (none: refusing low-quality probes wins "
                   "no mated search back)" if g["gate"] <= 0 else
                   f": threshold {g['threshold']:.4f}, TPIR {g['tpir']:.4f}, refused {g['refused']:.3f}"))
        for b in qual["buckets"]:
            rates = ", ".join(f"{k.upper()} {b[k]:.3f}" for k in ("tpir", "fpir") if b[k] is not None)
            click.echo(f"  quality {b['quality'][0]:.2f}-{b['quality'][1]:.2f}: {b['mated']} mated, "
                       f"{b['nonmated']} non-mated searches" + (f"; {rates}" if rates else ""))
    for p in r.get("plots", []):
        click.echo(f"plot: {p}")
    click.echo(f"wrote {path}")
