"""Where a search's time goes, per query: coarse assignment, list scanning, re-ranking.

    python benchmarks/search_profile.py --index w10m/idx --nprobes 1,32,128,512 --candidates 128

On 1000 collection rows (batch, best of 3, wall ms per query): the exact coarse
assignment alone, `candidates` (assignment + list scan + merge) at each nprobe, the
re-rank of that many candidates, and whole `search_rows` calls. Differences between
lines give each stage's share (what caps QPS even at tiny nprobe).
"""

from __future__ import annotations

import argparse
import json
import time

import numpy as np


def per_query_ms(fn, queries: int, repeats: int = 3) -> float:
    fn()
    best = float("inf")
    for _ in range(repeats):
        t0 = time.perf_counter()
        fn()
        best = min(best, time.perf_counter() - t0)
    return round(best / queries * 1e3, 4)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                 formatter_class=argparse.RawDescriptionHelpFormatter, epilog=__doc__)
    ap.add_argument("--index", required=True)
    ap.add_argument("--nprobes", default="1,32,128,512")
    ap.add_argument("--candidates", type=int, default=128)
    ap.add_argument("--queries", type=int, default=1000)
    args = ap.parse_args()
    from faceidx.index import open_index

    r = open_index(args.index)
    rows = np.sort(np.random.default_rng(1).choice(r.ntotal, min(args.queries, r.ntotal), replace=False))
    unit = r._check(r.store.gather(rows, "vectors"))
    q, c = len(unit), args.candidates
    out = {"bench": "search_profile", "index": args.index, "n": r.ntotal, "candidates": c}
    xt = r.parts[0].transform(unit)
    for nprobe in [int(x) for x in args.nprobes.split(",")]:
        if r.coarse is not None:
            out[f"coarse_ms_nprobe{nprobe}"] = per_query_ms(lambda p=nprobe: r.coarse.assign(xt, p), q)
        out[f"candidates_ms_nprobe{nprobe}"] = per_query_ms(lambda p=nprobe: r.candidates(unit, c, p), q)
        out[f"search_ms_nprobe{nprobe}"] = per_query_ms(lambda p=nprobe: r.search_rows(unit, 11, p, c), q)
    _, cand = r.candidates(unit, c, 32)
    out["rerank_ms"] = per_query_ms(lambda: r.rerank(unit, cand, 11), q)
    print(json.dumps(out))


if __name__ == "__main__":
    main()
