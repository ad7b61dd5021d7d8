"""Erasure cost: a seeded 200k x 128 IVF-PQ index; erase 1 and 3 identities from its
shards, then from a merged index, with and without --verify. One JSON line per step.

    python benchmarks/erase_cost.py
"""

from __future__ import annotations

import json
import tempfile
import time
from pathlib import Path

import numpy as np

from faceidx.index import BuildOptions, build_index
from faceidx.index.writer import open_writer
from faceidx.io import CollectionMeta, CollectionWriter

N, D = 200_000, 128


def timed(what: str, fn, **fields) -> dict:
    t = time.perf_counter()
    out = fn()
    print(json.dumps({"what": what, **fields, "seconds": round(time.perf_counter() - t, 2)}))
    return out


def main() -> None:
    root = Path(tempfile.mkdtemp())
    rng = np.random.default_rng(0)
    centres = rng.standard_normal((N // 5, D)).astype(np.float32)
    x = np.repeat(centres, 5, 0) + 0.3 * rng.standard_normal((N, D)).astype(np.float32)
    with CollectionWriter(root / "c", CollectionMeta(model="m", dim=D, model_version="1")) as w:
        w.write(x, identities=[f"p{i // 5}" for i in range(N)])
    timed("build", lambda: build_index(root / "c", root / "idx", BuildOptions(
        index_spec="IVF256,PQ32x4fs", shard_rows=50_000, tune_queries=200)), rows=N)
    for merged, first in ((False, 1), (True, 11)):
        with open_writer(root / "idx") as w:
            if merged:
                timed("merge", w.merge, rows=N)
            for who in ([f"p{first}"], [f"p{first + 1}", f"p{first + 2}", f"p{first + 3}"]):
                timed("erase", lambda who=who: w.erase(identities=who), merged=merged,
                      identities=len(who))
            r = timed("erase --verify", lambda f=first: w.erase(identities=[f"p{f + 20}"],
                                                        verify=True), merged=merged)
            print(json.dumps({"verify_clean": r["verify"]["clean"], "files": r["verify"]["files"],
                              "bytes": r["verify"]["bytes"]}))


if __name__ == "__main__":
    main()
