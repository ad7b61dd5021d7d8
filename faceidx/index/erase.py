"""Erase faces from an index without rebuilding it (FAISS fast-scan has no remove_ids).

    erase_faces("faces.index", face_ids=[12, 99], identities=["person_17"])

Erased rows are listed in ``erased.npy`` (sorted global rows, written atomically
first), then their exact vectors are overwritten with zeros and their source strings
with NUL bytes in the row store, so nothing that identifies them stays readable. Search
drops them from candidates, lookup returns None and exact_scores NaN. Their 4-bit PQ
codes remain inside the FAISS lists (lossy, unlinked from any identity) until the index
is rebuilt. Rerunning the same erase is harmless (it finishes an interrupted one).
"""

from __future__ import annotations

import os
from collections.abc import Iterable
from pathlib import Path

import numpy as np

from faceidx.errors import DataError
from faceidx.index.manifest import IndexManifest
from faceidx.io.atomic import atomic_path

ERASED_NAME = "erased.npy"


def load_erased(index_dir: str | os.PathLike) -> np.ndarray:
    """Sorted global rows erased so far (empty when none)."""
    path = Path(index_dir) / ERASED_NAME
    if not path.exists():
        return np.empty(0, np.int64)
    try:
        return np.load(path, allow_pickle=False).astype(np.int64)
    except (OSError, ValueError) as err:
        raise DataError(f"cannot read erased rows: {err}", path) from err


def erase_faces(index_dir: str | os.PathLike, face_ids: Iterable[int] = (),
                identities: Iterable[str] = ()) -> dict:
    """Erase faces by face id and/or every face of the given identities. Returns counts.

    Takes the index's writer lock; an unknown face id or identity is a DataError.
    """
    from faceidx.index.writer import open_writer

    with open_writer(index_dir, "faceidx erase") as writer:
        return writer.erase(face_ids=list(face_ids), identities=list(identities))


def erase_locked(writer, manifest: IndexManifest, face_ids: Iterable[int],
                 identities: Iterable[str]) -> dict:
    """erase_faces for a caller holding the writer lock (IndexWriter.erase)."""
    from faceidx.index.search import open_index

    out = writer.index_dir
    reader = open_index(out)
    store = reader.store
    wanted_ids = np.asarray(list(face_ids), np.int64)
    found = store.rows_of(wanted_ids).reshape(-1)
    before = load_erased(out)
    missing = wanted_ids[found < 0]
    if len(missing):
        raise DataError(f"face id {int(missing[0])} is not in the index", out)
    rows = [found]
    wanted = set(identities)
    seen: set[str] = set()
    for shard in store.shards:
        codes = [c for c in range(len(shard.names)) if shard.names.get(c) in wanted]
        if codes:
            local = np.flatnonzero(np.isin(np.asarray(shard.codes), codes))
            rows.append(local + shard.row_offset)
            seen.update(shard.names.get(c) for c in codes)
    if wanted - seen:
        raise DataError(f"identity {sorted(wanted - seen)[0]!r} is not in the index", out)
    new = np.unique(np.concatenate(rows))
    new = new[new >= 0]
    erased = np.union1d(before, new).astype(np.int64)
    with atomic_path(out / ERASED_NAME) as tmp, open(tmp, "wb") as fh:
        np.save(fh, erased)
    _scrub(store, new)
    manifest.build["erased_rows"] = int(len(erased))
    writer.publish(manifest)
    return {"erased_now": int(len(np.setdiff1d(new, before))), "erased_total": int(len(erased))}


def _scrub(store, rows: np.ndarray) -> None:
    """Zero the vectors and NUL the source bytes of `rows` in place."""
    if not len(rows):
        return
    shard_of, local = store.locate(rows)
    for s in np.unique(shard_of):
        shard = store.shards[s]
        loc = np.sort(local[shard_of == s])
        vectors = np.load(shard.folder / "vectors.npy", mmap_mode="r+")
        vectors[loc] = 0.0
        vectors.flush()
        del vectors
        offsets = shard.sources.offsets
        with open(shard.folder / "sources.bin", "r+b") as fh:
            for r in loc:
                a, b = int(offsets[r]), int(offsets[r + 1])
                if b > a:
                    fh.seek(a)
                    fh.write(b"\0" * (b - a))
