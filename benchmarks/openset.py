"""Does a calibrated threshold hold on people it was not fitted on? At each gallery size?

For each dataset the held-out people are split by identity into a CALIBRATE half and a
TEST half. `faceidx.query.calibrate` fits the 1:1 threshold (target FAR) and the 1:N
threshold (target FPIR) on the calibrate half against the built index; the same index
is then searched with the test half and the FAR / FPIR / TPIR achieved there at the
calibrate half's thresholds are reported next to the targets (goal: within [0.5x, 2x]).

Datasets:
  --lfw COLLECTION   embeddings of ../shared/data/lfw-subset (`faceidx embed`): half of
                     the people with >= 2 images are enrolled with one image; their
                     other images (at most --max-probes each) are mated probes; the other
                     people (incl. all with one image) are strangers.
  --synthetic N,...  galleries of N synthetic identities (faceidx.synth, realistic face
                     statistics), one image enrolled each; --mated enrolled people give a
                     second image as a mated probe; --strangers never-enrolled people give
                     two images each. The threshold must rise with N while FPIR holds;
                     the smallest size's tail model also predicts the larger sizes'
                     thresholds (reported as predicted_threshold).

One JSON line per (dataset, gallery size, split seed). Example:
  python benchmarks/openset.py --synthetic 10000,100000 --lfw /tmp/lfw-emb --out bench-out/openset
"""

from __future__ import annotations

import argparse
import json
import logging
import sys
import time
from pathlib import Path

import numpy as np

from faceidx.index import BuildOptions, build_index, open_index
from faceidx.io import CollectionMeta, CollectionWriter, EmbeddingBatch, open_collection
from faceidx.query import metrics as M
from faceidx.query.calibrate import CalibrationError, CalibrationOptions, calibrate
from faceidx.query.tail import ImpostorTail

log = logging.getLogger("openset")


def batch_of(x, labels, sources) -> EmbeddingBatch:
    return EmbeddingBatch(path=Path("."), row_offset=0, embeddings=x,
                          identities=np.asarray(labels, dtype=object),
                          sources=np.asarray(sources, dtype=object))


def split_halves(labels: np.ndarray, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """Boolean masks of two identity-disjoint halves of the rows."""
    names = np.unique(labels)
    rng = np.random.default_rng(seed)
    a = set(rng.permutation(names)[: len(names) // 2])
    in_a = np.array([n in a for n in labels])
    return in_a, ~in_a


def evaluate(index, x, labels, sources, opts: CalibrationOptions, seed: int) -> dict:
    """Calibrate on one half, measure on the other; returns one result row."""
    a, b = split_halves(labels, seed)
    t0 = time.perf_counter()
    cal_a, _ = calibrate(index, batch_of(x[a], labels[a], sources[a]), opts)
    cal_b, raw_b = calibrate(index, batch_of(x[b], labels[b], sources[b]), opts)
    seconds = time.perf_counter() - t0
    thr_far = cal_a["verification"]["threshold"]
    thr_n = cal_a["openset"]["threshold"]
    far = float(M.accept_rate(raw_b["impostor"], thr_far))
    fpir = float(M.fpir_curve(raw_b["nonmated_top"], thr_n))
    tpir = float(1 - M.fnir_curve(raw_b["mate_rank"], raw_b["mate_score"], thr_n))
    oa, ob = cal_a["openset"], cal_b["openset"]
    return {
        "N": oa["gallery_identities"], "gallery_faces": oa["gallery_faces"], "split_seed": seed,
        "target_far": opts.target_far, "threshold_far": thr_far, "achieved_far": far,
        "far_ratio": far / opts.target_far, "test_impostor_pairs": cal_b["verification"]["impostor_pairs"],
        "tar_test": float(M.accept_rate(raw_b["genuine"], thr_far)),
        "target_fpir": opts.target_fpir, "threshold_fpir": thr_n, "achieved_fpir": fpir,
        "fpir_ratio": fpir / opts.target_fpir, "tpir_test": tpir,
        "test_nonmated_searches": ob["nonmated_searches"], "test_mated_searches": ob["mated_searches"],
        "calib_nonmated_searches": oa["nonmated_searches"],
        "threshold_fpir_fit_on_test": ob["threshold"], "rank1_test": ob["rank1"],
        "fpir_at_1to1_threshold": float(M.fpir_curve(raw_b["nonmated_top"], thr_far)),
        "tail": (oa.get("extrapolation") or {}).get("tail"),
        "growth": (oa.get("extrapolation") or {}).get("growth"),
        "warnings": cal_a["warnings"] + cal_b["warnings"],
        "calibrate_seconds": round(seconds, 2),
    }


# -- LFW -------------------------------------------------------------------------------


def lfw_rows(path: Path, out: Path, opts: CalibrationOptions, seeds: int, max_probes: int,
             rebuild: bool) -> list[dict]:
    coll = open_collection(path)
    data = coll.read_all(columns=["identity", "source", "embedding"])
    labels = np.asarray(data.identities, dtype=object)
    x = data.embeddings.astype(np.float32)
    names, counts = np.unique(labels, return_counts=True)
    rng = np.random.default_rng(0)
    multi = names[counts >= 2]
    enrolled = set(rng.permutation(multi)[: len(multi) // 2])
    order = np.argsort(np.asarray(data.sources, dtype=str), kind="stable")
    seen: dict[str, int] = {}
    gallery = np.zeros(len(x), bool)
    probe = np.zeros(len(x), bool)
    for i in order:
        n = labels[i]
        c = seen.get(n, 0)
        seen[n] = c + 1
        if n in enrolled and c == 0:
            gallery[i] = True
        elif c < max_probes + (1 if n in enrolled else 0):
            probe[i] = True
    gdir = out / "lfw-gallery"
    idir = out / "lfw-index"
    if rebuild or not (idir / "manifest.json").exists():
        import shutil

        shutil.rmtree(gdir, ignore_errors=True)
        shutil.rmtree(idir, ignore_errors=True)
        with CollectionWriter(gdir, coll.meta) as w:
            w.write(x[gallery], identities=labels[gallery], sources=data.sources[gallery])
        build_index(gdir, idir, BuildOptions(tune_queries=500))
    index = open_index(idir)
    rows = []
    for seed in range(seeds):
        row = evaluate(index, x[probe], labels[probe], data.sources[probe], opts, seed)
        rows.append({"dataset": "lfw-subset", "bench": "openset", **row})
    return rows


# -- synthetic -------------------------------------------------------------------------


def synthetic_rows(n: int, out: Path, opts: CalibrationOptions, seeds: int, mated: int,
                   strangers: int, rebuild: bool, index_spec: str = "auto",
                   first_seed: int = 0) -> list[dict]:
    from faceidx.synth.generator import iter_synthetic
    from faceidx.synth.model import MODEL_NAME

    total = n + strangers
    rng = np.random.default_rng(n)
    mated_ids = np.zeros(n, bool)
    mated_ids[rng.choice(n, size=min(mated, n), replace=False)] = True
    gdir, idir = out / f"synth-{n}-gallery", out / f"synth-{n}-index"
    need_build = rebuild or not (idir / "manifest.json").exists()
    if need_build:
        import shutil

        shutil.rmtree(gdir, ignore_errors=True)
        shutil.rmtree(idir, ignore_errors=True)
    meta = CollectionMeta(model=MODEL_NAME, dim=128)
    px, pl, ps = [], [], []
    start = 0
    writer = CollectionWriter(gdir, meta) if need_build else None
    t0 = time.perf_counter()
    for labels, vecs in iter_synthetic(total, 2, dim=128, seed=0, fixed_counts=True,
                                       chunk_identities=65_536):
        ident = start + np.arange(len(labels)) // 2     # two rows per identity, in order
        img = np.arange(len(labels)) % 2
        start = int(ident[-1]) + 1
        enrolled = ident < n
        g = enrolled & (img == 0)
        if writer is not None and g.any():
            writer.write(vecs[g], identities=labels[g], sources=[f"synth/{i}/0" for i in ident[g]])
        p = (enrolled & (img == 1) & mated_ids[np.minimum(ident, n - 1)]) | ~enrolled
        px.append(vecs[p])
        pl.append(labels[p])
        ps += [f"synth/{i}/{j}" for i, j in zip(ident[p], img[p], strict=True)]
    if writer is not None:
        writer.close()
        gen_s = time.perf_counter() - t0
        t0 = time.perf_counter()
        build_index(gdir, idir, BuildOptions(index_spec=index_spec, tune_queries=1000))
        log.info("N=%d: generated in %.1f s, built in %.1f s", n, gen_s, time.perf_counter() - t0)
    index = open_index(idir)
    x, labels, sources = np.concatenate(px), np.concatenate(pl).astype(object), np.asarray(ps, object)
    rows = []
    for seed in range(first_seed, first_seed + seeds):
        row = evaluate(index, x, labels, sources, opts, seed)
        rows.append({"dataset": "synthetic", "bench": "openset",
                     "factory": index.manifest["factory"], **row})
    return rows


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--lfw", type=Path, help="LFW-subset embeddings collection")
    ap.add_argument("--synthetic", default="", help="comma-separated gallery sizes, e.g. 10000,100000")
    ap.add_argument("--out", type=Path, default=Path("bench-out/openset"))
    ap.add_argument("--target-far", type=float, default=1e-3)
    ap.add_argument("--target-fpir", type=float, default=1e-2)
    ap.add_argument("--seeds", type=int, default=3, help="identity splits per dataset")
    ap.add_argument("--first-seed", type=int, default=0, help="seed of the first split")
    ap.add_argument("--mated", type=int, default=2000)
    ap.add_argument("--strangers", type=int, default=6000)
    ap.add_argument("--max-probes", type=int, default=10, help="LFW: probes per enrolled person")
    ap.add_argument("--rebuild", action="store_true", help="rebuild galleries already built")
    ap.add_argument("--index-spec", default="auto", help="synthetic galleries: faceidx build --index-spec")
    args = ap.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s",
                        stream=sys.stderr)
    args.out.mkdir(parents=True, exist_ok=True)
    opts = CalibrationOptions(target_far=args.target_far, target_fpir=args.target_fpir)
    rows: list[dict] = []
    if args.lfw:
        for row in lfw_rows(args.lfw, args.out, opts, args.seeds, args.max_probes, args.rebuild):
            _emit(row)
            rows.append(row)
    sizes = [int(s) for s in args.synthetic.split(",") if s.strip()]
    first_tail: ImpostorTail | None = None
    for n in sorted(sizes):
        try:
            got = synthetic_rows(n, args.out, opts, args.seeds, args.mated, args.strangers,
                                 args.rebuild, args.index_spec, args.first_seed)
        except CalibrationError as err:
            _emit({"dataset": "synthetic", "N": n, "error": str(err)})
            continue
        for row in got:
            if first_tail is None and row["tail"]:
                first_tail = ImpostorTail(**row["tail"])
            if first_tail is not None:
                row["predicted_threshold_from_smallest"] = first_tail.threshold_for(args.target_fpir, row["N"])
            _emit(row)
            rows.append(row)
    (args.out / "openset.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    _plot(rows, args.out / "openset.png")
    return 0


def _emit(row: dict) -> None:
    slim = {k: v for k, v in row.items() if k not in ("tail", "growth")}
    print(json.dumps(slim), flush=True)


def _plot(rows: list[dict], path: Path) -> None:
    synth = [r for r in rows if r.get("dataset") == "synthetic" and "N" in r and "threshold_fpir" in r]
    if not synth:
        return
    import matplotlib

    matplotlib.use("Agg", force=True)
    import matplotlib.pyplot as plt

    fig, (a1, a2) = plt.subplots(1, 2, figsize=(11, 4))
    n = np.array([r["N"] for r in synth])
    a1.semilogx(n, [r["threshold_fpir"] for r in synth], "o", label="1:N threshold (calibrated)")
    a1.semilogx(n, [r["threshold_far"] for r in synth], "s", label="1:1 threshold (FAR)")
    if "predicted_threshold_from_smallest" in synth[0]:
        a1.semilogx(n, [r["predicted_threshold_from_smallest"] for r in synth], "x",
                    label="predicted from smallest N (tail model)")
    a1.set_xlabel("gallery identities N")
    a1.set_ylabel("threshold (cosine)")
    a1.legend(fontsize=8)
    a2.semilogx(n, [r["achieved_fpir"] for r in synth], "o", label="achieved FPIR (test half)")
    a2.semilogx(n, [r["fpir_at_1to1_threshold"] for r in synth], "s", label="FPIR at the 1:1 threshold")
    a2.axhline(synth[0]["target_fpir"], color="k", ls="--", lw=1, label="target")
    a2.set_yscale("log")
    a2.set_xlabel("gallery identities N")
    a2.legend(fontsize=8)
    fig.savefig(path, dpi=110, bbox_inches="tight")
    plt.close(fig)


if __name__ == "__main__":
    sys.exit(main())
