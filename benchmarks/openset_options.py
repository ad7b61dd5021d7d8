"""Open-set TPIR at FPIR 1% on real photos, each accuracy option on and off, several splits.

    python benchmarks/face_cache.py --data ../shared/data/lfw-subset --out /tmp/acc/cache
    python benchmarks/openset_options.py --cache /tmp/acc/cache --seeds 5

Protocol per split seed (identities split at random, exact cosine search):
  people with >= 2 images: half ENROLLED (first photo with a face in the gallery; with
  --enrol 3, people with >= 4 images enrol their first three), the rest STRANGERS, with
  all one-image people. Enrolled people are split in two: CAL-mated and TEST-mated
  (their other photos, at most --max-probes each, are the mated probes); strangers in
  three: COHORT (AS-norm's impostor cohort), CAL and TEST. The 1:N threshold for FPIR
  1% is set on the CAL strangers' non-mated searches (and the quality gate on CAL
  strangers + CAL-mated); TPIR is measured on TEST-mated probes and FPIR on TEST
  strangers. A probe whose image gave no face counts as a miss (mated) or a reject
  (stranger): that is how detection failures cost TPIR.

Options (one JSON line per option set and seed, then a summary line per option set):
  pipeline  dlib-own (dlib's own pipeline), pil-hog (faceidx before issue 13), dlib-hog,
            hog+mtcnn
  tta       none, flip
  norm      raw cosine, as-norm (--cohort-top scores of the COHORT third, default 100)
  rule      best, mean_top, template, knn (with --enrol 3)
  gate      none, quality (gate fitted on CAL)
"""

from __future__ import annotations

import argparse
import itertools
import json
import sys
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).parent))
import face_cache  # noqa: E402

from faceidx.query import metrics as M  # noqa: E402
from faceidx.query.aggregate import identity_scores  # noqa: E402
from faceidx.query.quality_gate import fit_gate, rates_by_bucket  # noqa: E402
from faceidx.query.scorenorm import Cohort, as_norm  # noqa: E402


def emit(obj: dict) -> None:
    print(json.dumps(obj), flush=True)


def qualities(out: Path, name: str) -> np.ndarray:
    """Quality score per cached face (NaN without a face), cached as quality.npy."""
    path = out / name / "quality.npy"
    if path.exists():
        return np.load(path)
    from faceidx.embedder.align import Chip
    from faceidx.embedder.quality import face_quality

    d = face_cache.load(out, name)
    q = np.full(len(d["ok"]), np.nan)
    for i in np.flatnonzero(d["ok"]):
        chip = Chip(np.asarray(d["chips"][i]), tuple(int(v) for v in d["box"][i]), float(d["score"][i]),
                    d["landmarks"][i], int(d["faces_found"][i]), str(d["detector"][i]))
        q[i] = face_quality(chip, tuple(d["hw"][i])).score
    np.save(path, q)
    return q


def split(identity: np.ndarray, seed: int, enrol: int, max_probes: int, min_images: int = 2) -> dict:
    """Row masks: gallery, cal/test mated probes, cohort/cal/test strangers. Enrolled
    people are drawn from those with at least max(min_images, enrol + 1) images."""
    rng = np.random.default_rng(seed)
    names, counts = np.unique(identity, return_counts=True)
    multi = rng.permutation(names[counts >= max(min_images, enrol + 1)])
    enrolled = multi[: len(multi) // 2]
    e_cal = set(enrolled[: len(enrolled) // 2])
    e_all = set(enrolled)
    strangers = rng.permutation(np.setdiff1d(names, enrolled))
    thirds = np.array_split(strangers, 3)
    role = {**{n: "cohort" for n in thirds[0]}, **{n: "s_cal" for n in thirds[1]},
            **{n: "s_test" for n in thirds[2]}}
    seen: dict = {}
    masks = {k: np.zeros(len(identity), bool)
             for k in ("gallery", "m_cal", "m_test", "cohort", "s_cal", "s_test")}
    for i, n in enumerate(identity):
        c = seen.get(n, 0)
        seen[n] = c + 1
        if n in e_all:
            if c < enrol:
                masks["gallery"][i] = True
            elif c < enrol + max_probes:
                masks["m_cal" if n in e_cal else "m_test"][i] = True
        else:
            masks[role[n]][i] = True
    return masks


def run(v, ok, q, identity, m, opts, target: float) -> dict:
    """TPIR / FPIR on TEST for one option set; thresholds from CAL."""
    gal = m["gallery"] & ok
    names, _ = np.unique(identity[gal], return_inverse=True)
    cohort = Cohort(v[m["cohort"] & ok], top_k=opts["cohort_top"]) if opts["norm"] == "as-norm" else None

    def search(rows):
        rows = rows & ok
        got, s = identity_scores(v[rows], v[gal], identity[gal], opts["rule"])
        if cohort is not None:
            g_faces = v[gal]
            g_mu, g_sd = cohort.stats(g_faces)
            gid = identity[gal]
            # a person's cohort statistics: those of the face that scores best for the probe
            best_face = np.zeros(s.shape, np.int64)
            sc = v[rows] @ g_faces.T
            for j, n in enumerate(got):
                cols = np.flatnonzero(gid == n)
                best_face[:, j] = cols[np.argmax(sc[:, cols], axis=1)]
            p_mu, p_sd = cohort.stats(v[rows])
            s = as_norm(s, p_mu[:, None], p_sd[:, None], g_mu[best_face], g_sd[best_face])
        return rows, got, s

    def top_of(rows):
        r, _, s = search(rows)
        full = np.full(len(v), -np.inf)
        full[r] = s.max(axis=1)
        return full[rows]

    def mated(rows):
        r, got, s = search(rows)
        rank1 = np.zeros(len(v), bool)
        score = np.full(len(v), -np.inf)
        first = got[np.argmax(s, axis=1)]
        rank1[r] = first == identity[r]
        score[r] = s.max(axis=1)
        return np.where(rank1[rows], 1, 0), score[rows]

    top_cal, top_test = top_of(m["s_cal"]), top_of(m["s_test"])
    rank_cal, score_cal = mated(m["m_cal"])
    rank_test, score_test = mated(m["m_test"])
    qn_cal, qm_cal = np.nan_to_num(q[m["s_cal"]]), np.nan_to_num(q[m["m_cal"]])
    if opts["gate"] == "quality":
        g = fit_gate(top_cal, qn_cal, rank_cal, score_cal, qm_cal, target)
        gate, thr = g["gate"], g["threshold"]
    else:
        gate, thr = 0.0, M.threshold_at_fpir(top_cal[np.isfinite(top_cal)], target)
    pass_n = np.nan_to_num(q[m["s_test"]]) >= gate
    pass_m = np.nan_to_num(q[m["m_test"]]) >= gate
    # the same measured at the TEST strangers' own FPIR-1% threshold (no calibration
    # noise: how well the option separates mates from strangers)
    thr_test = M.threshold_at_fpir(np.where(pass_n & np.isfinite(top_test), top_test, -1e9), target)
    buckets = rates_by_bucket(np.nan_to_num(q[m["s_test"]]), top_test, np.nan_to_num(q[m["m_test"]]),
                              rank_test, score_test, thr)
    return {"buckets": buckets, "threshold": round(float(thr), 5), "gate_value": round(float(gate), 4),
            "tpir": round(float(np.mean(pass_m & (rank_test == 1) & (score_test >= thr))), 4),
            "tpir_at_test_fpir": round(float(np.mean(pass_m & (rank_test == 1)
                                                     & (score_test >= thr_test))), 4),
            "fpir": round(float(np.mean(pass_n & (top_test >= thr))), 4),
            "rank1": round(float(np.mean(rank_test == 1)), 4),
            "refused_mated": round(float(np.mean(~pass_m)), 4),
            "n_gallery": int(gal.sum()), "n_mated_test": int(m["m_test"].sum()),
            "n_strangers_test": int(m["s_test"].sum()), "n_strangers_cal": int(m["s_cal"].sum())}


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--cache", required=True, type=Path)
    ap.add_argument("--seeds", type=int, default=5)
    ap.add_argument("--target-fpir", type=float, default=0.01)
    ap.add_argument("--enrol", type=int, default=1, help="photos enrolled per person")
    ap.add_argument("--max-probes", type=int, default=5)
    ap.add_argument("--min-images", type=int, default=2,
                    help="enrol people with at least this many images (fix it to compare --enrol)")
    ap.add_argument("--pipelines", nargs="+", default=["pil-hog", "dlib-hog", "hog+mtcnn"])
    ap.add_argument("--tta", nargs="+", default=["none", "flip"])
    ap.add_argument("--norms", nargs="+", default=["raw", "as-norm"])
    ap.add_argument("--cohort-top", type=int, default=100, help="AS-norm: top cohort scores used")
    ap.add_argument("--rules", nargs="+", default=["best"])
    ap.add_argument("--gates", nargs="+", default=["none", "quality"])
    args = ap.parse_args(argv)
    results: dict = {}
    for name in args.pipelines:
        # dlib's own pipeline = faceidx's dlib-hog rows HOG found at upsample 1 (see
        # face_cache.dlib_own_parity: equal vectors on the images run through dlib)
        source = "dlib-hog" if name == "dlib-own" else name
        d = face_cache.load(args.cache, source)
        identity, ok = d["identity"].astype(str), d["ok"]
        if name == "dlib-own":
            ok = ok & (d["detector"] == "hog")
        q = qualities(args.cache, source)
        for tta in args.tta if name != "dlib-own" else ["none"]:
            v = face_cache.vectors(args.cache, source, tta)
            for norm, rule, gate in itertools.product(args.norms, args.rules, args.gates):
                opts = {"pipeline": name, "tta": tta, "norm": norm, "rule": rule, "gate": gate,
                        "enrol": args.enrol, "min_images": args.min_images}
                if norm == "as-norm":
                    opts["cohort_top"] = args.cohort_top
                key = json.dumps(opts)
                for seed in range(args.seeds):
                    m = split(identity, seed, args.enrol, args.max_probes, args.min_images)
                    row = {"bench": "openset_options", **opts, "seed": seed,
                           **run(v, ok, q, identity, m, opts, args.target_fpir)}
                    emit(row)
                    results.setdefault(key, []).append(row)
    for key, rows in results.items():
        t = np.array([r["tpir"] for r in rows])
        f = np.array([r["fpir"] for r in rows])
        o = np.array([r["tpir_at_test_fpir"] for r in rows])
        emit({"bench": "openset_options.summary", **json.loads(key), "seeds": len(rows),
              "tpir_mean": round(float(t.mean()), 4), "tpir_min": float(t.min()), "tpir_max": float(t.max()),
              "tpir_per_seed": t.tolist(), "fpir_mean": round(float(f.mean()), 4),
              "fpir_per_seed": f.tolist(), "tpir_at_test_fpir_mean": round(float(o.mean()), 4),
              "tpir_at_test_fpir_per_seed": o.tolist(),
              "rank1_mean": round(float(np.mean([r["rank1"] for r in rows])), 4),
              "target_fpir": args.target_fpir,
              "note": "2-core machine shared with other jobs (loaded); exact search"})
    return 0


if __name__ == "__main__":
    sys.exit(main())
