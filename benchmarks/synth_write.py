"""Write throughput of `faceidx synth`: rows/s, peak RSS and bytes for ~N rows.

    python benchmarks/synth_write.py --rows 1000000 --out bench-out

Writes OUT/synth-write (replaced on every run) with identities = rows / per-identity,
so the row count is about --rows (the long tail of images per identity makes it vary
by a few percent). Prints one JSON line: rows/s (wall), CPU seconds of all threads (the
figure to compare on a shared machine), peak RSS, bytes on disk, and the 1-minute load.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import shutil
import sys
from pathlib import Path

from faceidx.io import MANIFEST_NAME
from faceidx.synth import write_synthetic

SUBDIR = "synth-write"


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--rows", type=int, default=1_000_000, help="about this many rows")
    ap.add_argument("--out", type=Path, required=True, help="parent folder; writes OUT/synth-write")
    ap.add_argument("--dim", type=int, default=128)
    ap.add_argument("--per-identity", type=float, default=10.0)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--float16", action="store_true")
    ap.add_argument("--keep", action="store_true", help="keep the written collection")
    args = ap.parse_args(argv)

    target = args.out / SUBDIR
    if target.exists():
        if not (target / MANIFEST_NAME).exists() and any(target.iterdir()):
            sys.exit(f"{target} exists and is not a collection written by this benchmark")
        shutil.rmtree(target)
    identities = max(1, round(args.rows / args.per_identity))
    before = resource.getrusage(resource.RUSAGE_SELF)
    cpu_before = before.ru_utime + before.ru_stime
    summary = write_synthetic(target, identities, args.per_identity, dim=args.dim, seed=args.seed,
                              dtype="float16" if args.float16 else "float32")
    usage = resource.getrusage(resource.RUSAGE_SELF)
    peak_kib = usage.ru_maxrss  # KiB on Linux
    cpu = usage.ru_utime + usage.ru_stime - cpu_before  # all threads; robust to a busy machine
    print(json.dumps({
        "benchmark": "synth_write", "rows": summary["rows"], "seconds": summary["seconds"],
        "rows_per_s": summary["rows_per_s"], "peak_rss_mb": round(peak_kib / 1024, 1),
        "cpu_seconds": round(cpu, 2), "cpu_us_per_row": round(cpu / summary["rows"] * 1e6, 2),
        "load_avg_1m": os.getloadavg()[0],
        "bytes": summary["bytes"], "dim": args.dim, "per_identity": args.per_identity,
        "identities": identities, "dtype": summary["dtype"], "shards": summary["shards"],
    }))
    if not args.keep:
        shutil.rmtree(target)


if __name__ == "__main__":
    main()
