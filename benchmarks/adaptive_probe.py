"""Query-adaptive probing, measured before it is built: how many queries could stop early?

    python benchmarks/adaptive_probe.py --index w10m/idx --small 64,128,192 --big 512

Two-stage search: every query first probes `small` lists; a query whose stage-1 rank-1
exact score reaches an acceptance score keeps that answer, the others are searched again
with `big` lists. For each (small, acceptance score) this prints the rank-1 identity and
open-set decision agreement with exact search (same protocol as index_bench: collection
rows as queries, own row excluded, FPIR-1% threshold), the share of queries escalated,
and the QPS the two stages would give from the measured batch time of each stage
(1 / (t_small + escalated * t_big)), against the one-stage `big` setting.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
import index_bench as ib  # noqa: E402  the one exact-search and agreement protocol


def timed_search(reader, unit, k, nprobe, cand):
    reader.search_rows(unit, k, nprobe, cand)  # warm-up
    best = float("inf")
    for _ in range(ib.REPEATS):
        t0 = time.perf_counter()
        scores, rows = reader.search_rows(unit, k, nprobe, cand)
        best = min(best, time.perf_counter() - t0)
    return scores, rows, best


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                 formatter_class=argparse.RawDescriptionHelpFormatter, epilog=__doc__)
    ap.add_argument("--index", type=Path, required=True)
    ap.add_argument("--small", default="64,128,192")
    ap.add_argument("--big", type=int, default=0, help="stage-2 nprobe (default: the tuned one)")
    ap.add_argument("--candidates", type=int, default=0, help="default: the tuned candidates")
    ap.add_argument("--queries", type=int, default=1000)
    ap.add_argument("--exact-in-memory", type=int, default=11_000_000)
    args = ap.parse_args()
    from faceidx.index import open_index

    reader = open_index(args.index)
    n = reader.ntotal
    names = []
    for s in reader.store.shards:
        table = np.asarray([s.names.get(i) for i in range(len(s.names))] + ["<none>"], object)
        names.append(table[np.asarray(s.codes)])
    ident = np.concatenate(names)
    rng = np.random.default_rng(1)
    qrows = np.sort(rng.choice(n, size=min(args.queries, n), replace=False))
    q = reader.store.gather(qrows, "vectors")
    qident = ident[qrows]
    truth, exact_qps, _, deep = ib.exact_truth(reader, q, qrows, 10, n <= args.exact_in_memory)
    exact_top, threshold = ib.open_set(deep, qrows, ident, qident)
    search = reader.manifest["search"]
    big = args.big or int(search["nprobe"])
    cand = args.candidates or int(search.get("candidates", 0)) or 128
    unit = reader._check(q)
    k = 11  # top-10 after dropping the query's own row

    def answers(scores, rows):
        got = ib.drop_self(rows, qrows, 10)
        top = np.where(rows[:, 0] == qrows, scores[:, 1], scores[:, 0])
        return got, top

    def agreement(got, top):
        r = ib.quality(got, top, truth, ident, qident, exact_top, threshold)
        return r["rank1_identity_agreement"], r["decision_agreement"]

    s_big, r_big, t_big = timed_search(reader, unit, k, big, cand)
    got_big, top_big = answers(s_big, r_big)
    a_big, d_big = agreement(got_big, top_big)
    base = {"bench": "adaptive_probe", "n": n, "big": big, "candidates": cand,
            "exact_qps": round(exact_qps, 1)}
    ib.emit({**base, "stage": "one", "nprobe": big, "rank1_agreement": a_big,
             "decision_agreement": d_big, "qps": round(len(q) / t_big, 1),
             "qps_vs_exact": round(len(q) / t_big / exact_qps, 1)})
    for small in [int(x) for x in args.small.split(",")]:
        s_sm, r_sm, t_sm = timed_search(reader, unit, k, small, cand)
        got_sm, top_sm = answers(s_sm, r_sm)
        for accept in np.round(np.arange(0.90, 1.0001, 0.01), 3):
            keep = top_sm >= accept
            got = np.where(keep[:, None], got_sm, got_big)
            top = np.where(keep, top_sm, top_big)
            a, d = agreement(got, top)
            escalated = float(1 - keep.mean())
            per_query = (t_sm + escalated * t_big) / len(q)
            ib.emit({**base, "stage": "two", "small": small, "accept_score": float(accept),
                     "escalated": round(escalated, 3), "rank1_agreement": a,
                     "decision_agreement": d, "qps_model": round(1 / per_query, 1),
                     "qps_vs_exact": round(1 / per_query / exact_qps, 1),
                     "small_qps": round(len(q) / t_sm, 1)})


if __name__ == "__main__":
    main()
