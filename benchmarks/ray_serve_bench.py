"""Serving on Ray Serve (part groups + router) against one process, on one machine.

    python benchmarks/ray_serve_bench.py --index /tmp/rayb/index-local --groups 2

Prints JSON lines: batch QPS (identify, k=5, `--queries` probes in batches of `--batch`)
and single-probe latency (median of `--singles`) for one process (open_gallery) and for
the Serve application, whether the answers are equal, and the ratio. Probes are indexed
faces plus noise. Ray starts on this machine with the usable cores.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import time
from pathlib import Path

import numpy as np


def emit(**row) -> None:
    print(json.dumps(row), flush=True)


def measure(name: str, identify, probes: np.ndarray, batch: int, singles: int) -> list:
    identify(probes[:batch])  # warm up (page cache, replicas)
    t0 = time.perf_counter()
    out = []
    for a in range(0, len(probes), batch):
        out += identify(probes[a:a + batch])
    qps = len(probes) / (time.perf_counter() - t0)
    lat = []
    for i in range(singles):
        t = time.perf_counter()
        identify(probes[i:i + 1])
        lat.append(time.perf_counter() - t)
    emit(engine=name, probes=len(probes), batch=batch, qps=round(qps, 1),
         single_ms_median=round(statistics.median(lat) * 1e3, 2), load_avg=os.getloadavg()[0])
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--index", type=Path, required=True)
    ap.add_argument("--groups", type=int, default=2)
    ap.add_argument("--queries", type=int, default=1000)
    ap.add_argument("--batch", type=int, default=100)
    ap.add_argument("--singles", type=int, default=50)
    ap.add_argument("--cpus", type=int, default=len(os.sched_getaffinity(0)))
    args = ap.parse_args()

    import ray
    from ray import serve

    from faceidx.distributed.serve import serve_index
    from faceidx.gallery import open_gallery
    from faceidx.index.search import open_index

    gallery = open_gallery(args.index, threshold=0.5)
    reader = open_index(args.index)
    rng = np.random.default_rng(0)
    rows = np.sort(rng.choice(reader.ntotal, size=args.queries, replace=False))
    probes = reader.store.gather(rows, "vectors") + rng.normal(0, 0.02, (args.queries, reader.dim))
    probes = (probes / np.linalg.norm(probes, axis=1, keepdims=True)).astype(np.float32)

    local = measure("one process", lambda q: [r.to_json() for r in gallery.identify(q, k=5)],
                    probes, args.batch, args.singles)
    del reader
    ray.init(num_cpus=args.cpus, include_dashboard=False, logging_level="WARNING",
             log_to_driver=False)
    try:
        serve.start(proxy_location="Disabled")
        t0 = time.perf_counter()
        handle = serve_index(args.index, groups=args.groups, threshold=0.5, route_prefix=None,
                             cpus_per_replica=max(args.cpus / (args.groups + 1), 0.1))
        emit(stage="deploy", groups=args.groups, seconds=round(time.perf_counter() - t0, 2))
        remote = measure(f"ray serve, {args.groups} groups",
                         lambda q: handle.identify.remote(q, k=5).result(timeout_s=600),
                         probes, args.batch, args.singles)
        emit(same_answers=remote == local)
        serve.shutdown()
    finally:
        ray.shutdown()


if __name__ == "__main__":
    main()
