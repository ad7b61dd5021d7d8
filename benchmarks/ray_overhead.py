"""Ray's overhead against the local engine on one node: build and embed, side by side.

    python benchmarks/ray_overhead.py --collection syn1m --images ../shared/data/lfw-subset \
        --work /tmp/rayb --shard-rows 250000 --max-images 200

Prints one JSON line per measurement: each stage run locally and on a Ray started on this
machine (`ray.init(num_cpus=N)`, N = the usable cores), in the order local, ray, and the
ratio of throughputs (ray / local; >= 0.8 is the goal). Ray's start-up is timed apart.
The same files come out either way (the build's shard checksums are compared).
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import time
from pathlib import Path


def emit(**row) -> None:
    print(json.dumps(row), flush=True)


def build_pair(collection: Path, work: Path, shard_rows: int, tune_queries: int, engine) -> None:
    from faceidx.index.build import BuildOptions, build_index

    runs = {}
    for name in ("local", "ray"):
        out = work / f"index-{name}"
        shutil.rmtree(out, ignore_errors=True)
        opts = BuildOptions(shard_rows=shard_rows, tune_queries=tune_queries,
                            engine=engine if name == "ray" else None)
        t0 = time.perf_counter()
        manifest = build_index(collection, out, opts)
        runs[name] = time.perf_counter() - t0
        b = manifest.build
        emit(stage="build", engine=name, rows=manifest.rows, shards=len(manifest.shards),
             factory=manifest.factory, seconds=round(runs[name], 2),
             train_seconds=b.get("train", {}).get("train_seconds"),
             add_seconds=b.get("add_seconds"), vectors_per_s=round(manifest.rows / runs[name]))
    sha = [json.loads((work / f"index-{n}" / "manifest.json").read_text())["shards"]
           for n in ("local", "ray")]
    emit(stage="build", ratio_ray_over_local=round(runs["local"] / runs["ray"], 3),
         same_shard_files=[s["sha256"] for s in sha[0]] == [s["sha256"] for s in sha[1]])


def embed_pair(images: Path, work: Path, max_images: int, workers: int) -> None:
    from faceidx.distributed.embed import embed_source_ray
    from faceidx.embedder.pipeline import embed_source
    from faceidx.embedder.sources import list_source

    items = list_source(images)[:max_images]
    rates = {}
    for name in ("local", "ray"):
        out = work / f"emb-{name}"
        shutil.rmtree(out, ignore_errors=True)
        t0 = time.perf_counter()
        if name == "local":
            s = embed_source(items, out, workers=workers, device="cpu")
        else:
            s = embed_source_ray(items, out, device="cpu", actors=workers)
        sec = time.perf_counter() - t0
        rates[name] = s.processed / sec
        emit(stage="embed", engine=name, images=s.processed, faces=s.faces,
             seconds=round(sec, 2), images_per_s=round(rates[name], 2))
    emit(stage="embed", ratio_ray_over_local=round(rates["ray"] / rates["local"], 3))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--collection", type=Path)
    ap.add_argument("--images", type=Path)
    ap.add_argument("--work", type=Path, required=True)
    ap.add_argument("--shard-rows", type=int, default=250_000)
    ap.add_argument("--tune-queries", type=int, default=200)
    ap.add_argument("--max-images", type=int, default=200)
    ap.add_argument("--cpus", type=int, default=len(os.sched_getaffinity(0)))
    args = ap.parse_args()
    args.work.mkdir(parents=True, exist_ok=True)

    import ray

    from faceidx.distributed.build import RayFiller

    t0 = time.perf_counter()
    ray.init(num_cpus=args.cpus, include_dashboard=False, logging_level="WARNING",
             log_to_driver=False)
    emit(stage="ray_start", cpus=args.cpus, seconds=round(time.perf_counter() - t0, 2),
         load_avg=os.getloadavg()[0])
    try:
        if args.collection:
            build_pair(args.collection, args.work, args.shard_rows, args.tune_queries,
                       RayFiller(device="cpu"))
        if args.images:
            embed_pair(args.images, args.work, args.max_images, args.cpus)
    finally:
        ray.shutdown()
    emit(stage="end", load_avg=os.getloadavg()[0])


if __name__ == "__main__":
    main()
