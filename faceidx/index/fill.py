"""Fill one index shard from a row range of a collection, in a folder the caller publishes.

    part = collection_range(coll, lo, hi)              # only the collection shards it needs
    stats = fill_shard(part, lo, hi, tmp, out / "trained.index", row0=row0)

The shard gets the trained empty index (read from its file, never pickled), FAISS ids
row0 + 0..n-1, and the row store (face ids, identities, sources, exact vectors). Face
ids are the collection's, or renumber + collection row when `renumber` is set (a
collection whose ids collide with indexed ones). The Ray build runs this in tasks, one
group of collection shards each; the caller checks and renames the folder into place.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from faceidx.index.faissio import prepare, read_index, write_index
from faceidx.index.gpu import gpu_assignment
from faceidx.index.manifest import SHARD_INDEX
from faceidx.index.store import ShardStoreWriter
from faceidx.io import Collection, EmbeddingBatch
from faceidx.io.fs import filesystem


def collection_range(coll: Collection, lo: int, hi: int) -> tuple[Collection, int]:
    """(the collection's shard files overlapping rows [lo, hi) as a Collection, the
    collection row where the first of them starts). Nothing is opened."""
    picked, first, start = [], None, 0
    for shard in coll.shards:
        end = start + shard.rows
        if end > lo and start < hi:
            picked.append(shard)
            first = start if first is None else first
        start = end
    return Collection(coll.path, coll.meta, picked, None), (first or 0)


def iter_rows(part: Collection, part_start: int, lo: int, hi: int,
              batch_size: int) -> Iterator[tuple[int, EmbeddingBatch]]:
    """(collection row of the slice's first row, batch slice) covering rows [lo, hi)."""
    pos = part_start
    for b in part.iter_batches(batch_size):
        a, z = max(lo - pos, 0), min(hi - pos, len(b))
        if a < z:
            yield pos + a, _slice(b, a, z)
        pos += len(b)
        if pos >= hi:
            return


def _slice(b: EmbeddingBatch, a: int, z: int) -> EmbeddingBatch:
    def cut(x):
        return None if x is None else x[a:z]

    return EmbeddingBatch(b.path, b.row_offset + a, cut(b.face_ids), cut(b.identities),
                          cut(b.sources), cut(b.embeddings))


def fill_shard(part: Collection, part_start: int, lo: int, hi: int, folder: Path,
               trained: Path, row0: int, renumber: int | None = None,
               mean: np.ndarray | None = None, batch_size: int = 65_536,
               gpu: bool = False, vector_dtype: str = "float32") -> dict:
    """Write the shard of collection rows [lo, hi) into the empty folder `folder`.

    part, part_start: from :func:`collection_range`. Returns {"rows", "faiss_seconds",
    "seconds"}. On error the folder is left for the caller to remove.
    """
    from faceidx.index.build import prefetch  # parquet decoding overlaps FAISS add

    t0 = time.perf_counter()
    filesystem(folder).makedirs(folder)
    writer = ShardStoreWriter(folder, hi - lo, part.dim, vector_dtype)
    index = read_index(trained)
    faiss_s = 0.0
    try:
        with gpu_assignment(index, gpu):
            for pos, b in prefetch(iter_rows(part, part_start, lo, hi, batch_size)):
                k = len(b)
                unit = prepare(b.embeddings)
                coded = unit if mean is None else prepare(unit, mean)
                fids = b.face_ids
                if renumber is not None:
                    fids = renumber + pos + np.arange(k, dtype=np.int64)
                t = time.perf_counter()
                index.add_with_ids(coded, row0 + writer.filled + np.arange(k, dtype=np.int64))
                faiss_s += time.perf_counter() - t
                writer.append(fids, b.identities, b.sources, unit)
        writer.finish()
    except BaseException:
        writer.abort()
        raise
    write_index(index, folder / SHARD_INDEX)
    return {"rows": hi - lo, "faiss_seconds": round(faiss_s, 3),
            "seconds": round(time.perf_counter() - t0, 3)}


@dataclass(frozen=True)
class ShardJob:
    """One shard to fill: collection rows [lo, hi) become FAISS ids row0.. in `folder`."""

    number: int
    lo: int
    hi: int
    row0: int
    folder: Path


class LocalFiller:
    """Fills shards one after another in this process (the local engine).

    An engine's `fill` yields (job, stats) in job order; the caller publishes each
    shard as it comes. faceidx.distributed.build.RayFiller fills them in Ray tasks.
    """

    def fill(self, coll: Collection, jobs: list[ShardJob], trained: Path,
             renumber: int | None, mean: np.ndarray | None, batch_size: int,
             gpu: bool, vector_dtype: str = "float32") -> Iterator[tuple[ShardJob, dict]]:
        for job in jobs:
            part, start = collection_range(coll, job.lo, job.hi)
            yield job, fill_shard(part, start, job.lo, job.hi, job.folder, trained, job.row0,
                                  renumber, mean, batch_size, gpu, vector_dtype)
