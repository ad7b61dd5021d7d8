"""End-to-end images/s of `faceidx embed` (decode + HOG + align + model + shards); JSON lines.

    python benchmarks/embed_e2e.py --data ../shared/data/lfw-subset --images 400 --workers 0 1 2

Runs the same pipeline as `faceidx embed` (faceidx.embedder.pipeline.embed_source) on
the first `--images` images of the tree (sorted, so every configuration sees the same
ones), once per `--workers` value, into a fresh temporary collection each time. The
model is loaded once before the timings (its load time is its own line); the timed part
is what the summary's images/s reports: listing excluded, everything from the first
decode to the last shard written included. Configurations run one after the other in one
process, so their ratios are comparable even on a shared machine; `cpu_ms_per_image`
(CPU time of this process and its workers) and the load average say how shared it was.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import resource
import sys
import tempfile
import time
from pathlib import Path

from faceidx.embedder.device import usable_cores
from faceidx.embedder.pipeline import embed_source, open_model
from faceidx.embedder.sources import list_source


def cpu_seconds() -> float:
    """User + system CPU of this process and its reaped children (the detect workers)."""
    me, kids = resource.getrusage(resource.RUSAGE_SELF), resource.getrusage(resource.RUSAGE_CHILDREN)
    return me.ru_utime + me.ru_stime + kids.ru_utime + kids.ru_stime


def emit(obj: dict) -> None:
    print(json.dumps(obj), flush=True)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--data", type=Path, default=Path("../shared/data/lfw-subset"))
    ap.add_argument("--images", type=int, default=400)
    ap.add_argument("--workers", type=int, nargs="+", default=[0, 1, 2])
    ap.add_argument("--batch-size", type=int, default=64)
    ap.add_argument("--tta", choices=["none", "flip"], default="none")
    ap.add_argument("--detector", choices=["hog", "none"], default="hog")
    ap.add_argument("--model", default="dlib-resnet-v1")
    ap.add_argument("--device", default="cpu")
    args = ap.parse_args(argv)
    logging.basicConfig(level=logging.WARNING)

    items = list_source(args.data)[: args.images]
    start = time.perf_counter()
    model = open_model(args.model, args.device)
    emit({"bench": "embed_e2e.model_load", "model": model.name, "seconds": round(time.perf_counter() - start, 2)})
    for workers in args.workers:
        cpu0 = cpu_seconds()
        with tempfile.TemporaryDirectory() as tmp:
            s = embed_source(items, Path(tmp) / "emb", model, device=args.device,
                             batch_size=args.batch_size, workers=workers, tta=args.tta,
                             detector=args.detector)
        emit({"bench": "embed_e2e", "data": str(args.data), "images": s.processed, "faces": s.faces,
              "failed": sum(s.failures.values()), "workers": workers, "batch_size": args.batch_size,
              "tta": args.tta, "detector": args.detector, "device": args.device,
              "cores": usable_cores(), "seconds": round(s.seconds, 2),
              "images_per_s": round(s.images_per_s, 2),
              "cpu_ms_per_image": round(1000 * (cpu_seconds() - cpu0) / max(s.processed, 1), 1),
              "load_avg_1m": round(os.getloadavg()[0], 1)})
    return 0


if __name__ == "__main__":
    sys.exit(main())
