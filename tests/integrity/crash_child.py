"""Run one faceidx write operation, killed by SIGKILL at its k-th durable file step.

    python -m tests.integrity.crash_child OP ROOT KILL_AT      (KILL_AT 0: never; prints the
                                                               number of steps it took)

A durable step is a rename or hard link (os.replace, os.rename, os.link): where every
writer of faceidx commits a file. The kill comes just before the k-th one, with no
cleanup (SIGKILL), like a power cut or an OOM kill.
"""

from __future__ import annotations

import os
import signal
import sys
from pathlib import Path

STEPS = ("replace", "rename", "link")


def arm(kill_at: int) -> list[int]:
    count = [0]
    for name in STEPS:
        real = getattr(os, name)

        def step(*a, _real=real, **k):
            count[0] += 1
            if count[0] == kill_at:
                os.kill(os.getpid(), signal.SIGKILL)
            return _real(*a, **k)

        setattr(os, name, step)
    return count


def run(op: str, root: Path) -> None:
    from faceidx.index import BuildOptions, build_index
    from faceidx.index.writer import open_writer

    if op == "build":
        build_index(root / "c", root / "idx", BuildOptions(index_spec="IVF8,PQ4x4fs",
                                                           shard_rows=200, tune_queries=30,
                                                           merge=True))
    elif op == "add":
        with open_writer(root / "idx") as w:
            w.add_collection(root / "new", shard_rows=100)
    elif op == "merge":
        with open_writer(root / "idx") as w:
            w.merge()
    elif op == "erase":
        with open_writer(root / "idx") as w:
            w.erase(identities=["s0-id00003"], face_ids=[40])
    elif op == "embed":
        from faceidx.embedder import pipeline
        from faceidx.embedder.sources import list_source
        from tests.embedder.standin import TinyFaceModel

        real = pipeline.open_model  # run() also runs in the test process: restore it after
        pipeline.open_model = lambda spec, device="auto": TinyFaceModel()
        try:
            pipeline.embed_source(list_source(root / "photos"), root / "emb", "tiny",
                                  device="cpu", detector="none", shard_rows=3)
        finally:
            pipeline.open_model = real
    else:
        raise SystemExit(f"unknown op {op}")


if __name__ == "__main__":
    op, root, kill_at = sys.argv[1], Path(sys.argv[2]), int(sys.argv[3])
    counter = arm(kill_at)
    run(op, root)
    print(counter[0])
