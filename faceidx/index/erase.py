"""Erasure that leaves nothing: faces removed physically from every part of an index.

    with open_writer("faces.index", "faceidx erase") as w:
        w.erase(face_ids=[12, 99], identities=["person_17"])

For each shard holding an erased face a new shard folder is written and published in
one manifest swap (faceidx/index/writer.py):
- the shard's FAISS part without those entries (Flat and IVF: ``remove_ids``; fast-scan
  IVF: its lists unpacked, filtered and packed again, so no stale code stays in a block's
  padding; anything else: rebuilt from the kept exact vectors);
- face ids -1, identity codes -1, the identity names no longer used by any face of the
  shard dropped (codes renumbered), the sorted face-id arrays without them;
- the exact vectors and sources, shared with the previous folder by a hard link, are
  zeroed / NUL-filled in place right after the publish (removing content in place is
  allowed: an older snapshot can only see the face vanish early).
A merged index that covered an affected shard is merged again from the new shard
files. Erased rows keep their empty slot, so the global rows (FAISS ids) of every other
face are unchanged. ``erasure-log.jsonl`` gets one line per erasure: time, the selector
salted and hashed, and the count; nothing biometric.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import logging
import os
import secrets
import time
from collections.abc import Iterable
from dataclasses import replace
from pathlib import Path

import numpy as np

from faceidx.errors import DataError
from faceidx.index.manifest import SHARD_INDEX, IndexManifest, ShardInfo, load_mean
from faceidx.index.store import ERASED_NAME, ShardStore, StringBlobWriter, load_erased

log = logging.getLogger(__name__)

__all__ = ["ERASED_NAME", "erase_faces", "erase_locked", "load_erased"]

LOG_NAME = "erasure-log.jsonl"
SALT_NAME = "erasure.salt"
LINKED = ("vectors.npy", "sources.bin", "source_offsets.npy")


def erase_faces(index_dir: str | os.PathLike, face_ids: Iterable[int] = (),
                identities: Iterable[str] = ()) -> dict:
    """Erase faces by face id and/or every face of the given identities. Returns counts.

    Takes the index's writer lock; an unknown face id or identity is a DataError.
    """
    from faceidx.index.writer import open_writer

    with open_writer(index_dir, "faceidx erase") as writer:
        return writer.erase(face_ids=list(face_ids), identities=list(identities))


def select_rows(out: Path, m: IndexManifest, face_ids: Iterable[int],
                identities: Iterable[str]) -> dict[int, np.ndarray]:
    """{shard number: sorted local rows} of the faces selected. Unknown -> DataError."""
    stores = [ShardStore(out / s.dir, s.row_offset, s.rows, m.dim) for s in m.shards]
    wanted_ids = np.unique(np.asarray(list(face_ids), np.int64))
    wanted = set(identities)
    found_ids = np.zeros(len(wanted_ids), bool)
    found_names: set[str] = set()
    legacy = load_erased(out)
    picked: dict[int, np.ndarray] = {}
    for no, store in enumerate(stores):
        local = [store.find(wanted_ids)]
        found_ids |= local[0] >= 0
        if wanted:
            codes = [c for c in range(len(store.names)) if store.names.get(c) in wanted]
            if codes:
                found_names.update(store.names.get(c) for c in codes)
                local.append(np.flatnonzero(np.isin(np.asarray(store.codes), codes)))
        lo, hi = np.searchsorted(legacy, [store.row_offset, store.row_offset + store.rows])
        local.append(legacy[lo:hi] - store.row_offset)
        rows = np.unique(np.concatenate(local))
        rows = rows[rows >= 0]
        rows = rows[np.asarray(store.face_ids)[rows] >= 0] if len(rows) else rows
        if len(rows):
            picked[no] = rows
    if not found_ids.all():
        raise DataError(f"face id {int(wanted_ids[~found_ids][0])} is not in the index "
                        "(never added, or erased already)", out)
    if wanted - found_names:
        raise DataError(f"identity {sorted(wanted - found_names)[0]!r} is not in the index "
                        "(check the spelling; names are case-sensitive)", out)
    return picked


def erase_locked(writer, manifest: IndexManifest, face_ids: Iterable[int],
                 identities: Iterable[str], keep_vectors: bool = False) -> dict:
    """IndexWriter.erase: the caller holds the lock. Returns counts (and, with
    keep_vectors, the erased unit vectors, names and sources under "erased", for a scan).
    """
    out = writer.index_dir
    m = manifest
    face_ids, identities = list(face_ids), list(identities)
    picked = select_rows(out, m, face_ids, identities)
    gen = m.generation + 1
    new_shards = list(m.shards)
    old_dirs: dict[int, str] = {}
    erased_info = {"vectors": [], "names": set(), "sources": [], "face_ids": []}
    for no, local in picked.items():
        old = m.shards[no]
        store = ShardStore(out / old.dir, old.row_offset, old.rows, m.dim)
        if keep_vectors:
            erased_info["vectors"].append(np.asarray(store.vectors[local], np.float32))
            erased_info["face_ids"].extend(np.asarray(store.face_ids)[local].tolist())
            erased_info["sources"].extend(s for r in local if (s := store.source(int(r))))
            erased_info["names"].update(n for r in local if (n := store.identity(int(r))))
        new_shards[no] = _rewrite_shard(out, m, old, store, local, gen)
        old_dirs[no] = old.dir
        del store
    count = int(sum(len(v) for v in picked.values()))
    new = replace(m, shards=new_shards)
    if m.merged and any(no < m.merged["shards"] for no in picked):
        from faceidx.index.merge import merge_shards

        new.merged = merge_shards(out, new, m.merged["shards"], gen)
    from faceidx.index.build import _count_identities

    new.num_identities = _count_identities(out, new)
    new.build["erased_rows"] = int(sum(s.erased for s in new.shards))
    from faceidx.index.staging import collect_garbage, pending_dirs

    new.save(out)  # the publish; then content removal in place, then the old files go
    m.generation = new.generation
    for no, local in picked.items():
        _scrub(out / new_shards[no].dir, local, m.dim)  # vectors, sources (shared inodes)
        _unlink_rows(out / old_dirs[no], local)  # a reader of the old generation too
    (out / ERASED_NAME).unlink(missing_ok=True)
    collect_garbage(out, new, pending_dirs(out))
    _log_erasure(out, face_ids, identities, count, new.generation)
    result = {"erased_now": count, "erased_total": new.build["erased_rows"],
              "faces": new.live_rows, "identities": new.num_identities}
    if keep_vectors:
        vecs = erased_info["vectors"]
        result["erased"] = {"vectors": np.concatenate(vecs) if vecs else np.empty((0, m.dim)),
                            "names": sorted(erased_info["names"]),
                            "sources": erased_info["sources"],
                            "face_ids": erased_info["face_ids"]}
    return result


def _rewrite_shard(out: Path, m: IndexManifest, old: ShardInfo, store: ShardStore,
                   local: np.ndarray, gen: int) -> ShardInfo:
    """Write shard `old` without rows `local` into a new folder; return its entry."""
    from faceidx.index.staging import staging_dir
    from faceidx.index.store import identity_names_of
    from faceidx.io.atomic import sha256_file

    name = f"{old.dir.split('.')[0]}.g{gen}"
    tmp = staging_dir(out, name)
    src = out / old.dir
    for f in LINKED:
        os.link(src / f, tmp / f)
    face_ids = np.array(store.face_ids)
    codes = np.array(store.codes)
    face_ids[local] = -1
    codes[local] = -1
    used = np.unique(codes[codes >= 0])
    remap = np.full(len(store.names) + 1, -1, np.int32)
    remap[used] = np.arange(len(used), dtype=np.int32)
    codes = remap[codes]  # -1 indexes the last entry, which stays -1
    names = StringBlobWriter(tmp / "identity_names.bin", tmp / "identity_offsets.npy")
    names.extend([store.names.get(int(c)) for c in used])
    names.finish()
    np.save(tmp / "face_ids.npy", face_ids)
    np.save(tmp / "identity_codes.npy", codes)
    live = np.flatnonzero(face_ids >= 0)
    order = live[np.argsort(face_ids[live], kind="stable")]
    np.save(tmp / "sorted_face_ids.npy", face_ids[order])
    np.save(tmp / "sorted_rows.npy", order.astype(np.int64))
    _remove_from_part(out, m, src / SHARD_INDEX, tmp / SHARD_INDEX, old.row_offset + local,
                      store, face_ids >= 0)
    sha = {f: sha256_file(tmp / f) for f in (SHARD_INDEX, "face_ids.npy")}
    kept = len(identity_names_of(tmp))
    tmp.rename(out / name)
    return replace(old, dir=name, erased=int(len(face_ids) - len(live)), identities=kept,
                   face_id_min=int(face_ids[order[0]]) if len(order) else -1,
                   face_id_max=int(face_ids[order[-1]]) if len(order) else -1, sha256=sha)


def _remove_from_part(out: Path, m: IndexManifest, src: Path, dst: Path, rows: np.ndarray,
                      store: ShardStore, live: np.ndarray) -> None:
    """Write FAISS part `src` to `dst` without the entries whose ids are `rows`."""
    from faceidx.index.faissio import faiss, ivf_of, prepare, read_index, write_index
    from faceidx.index.merge import is_fast_scan, merge_fast_scan

    f = faiss()
    index = read_index(src)
    before = int(index.ntotal)
    expected = before - len(rows)
    if is_fast_scan(index):
        target = read_index(out / "trained.index")
        merge_fast_scan(ivf_of(target), [ivf_of(index)], drop=rows)
        target.ntotal = ivf_of(target).ntotal
        index = target
    else:
        try:
            index.remove_ids(f.IDSelectorBatch(np.ascontiguousarray(rows, np.int64)))
        except RuntimeError:  # no remove_ids (HNSW, ...): rebuild from the kept vectors
            index = read_index(out / "trained.index")
            mean = load_mean(out, m.dim) if m.center else None
            keep = np.flatnonzero(live)
            for a in range(0, len(keep), 65_536):
                part = keep[a:a + 65_536]
                x = np.asarray(store.vectors[part], np.float32)
                index.add_with_ids(x if mean is None else prepare(x, mean),
                                   store.row_offset + part)
    if int(index.ntotal) != expected:
        raise DataError(f"erasing {len(rows)} entries left {index.ntotal} of {before} "
                        f"(expected {expected})", src)
    write_index(index, dst)


def _scrub(folder: Path, local: np.ndarray, dim: int) -> None:
    """Zero the vectors and NUL the source bytes of `local` rows, in place (fsynced)."""
    vectors = np.load(folder / "vectors.npy", mmap_mode="r+")
    vectors[local] = 0.0
    vectors.flush()
    del vectors
    offsets = np.load(folder / "source_offsets.npy", mmap_mode="r")
    with open(folder / "sources.bin", "r+b") as fh:
        for r in local:
            a, b = int(offsets[r]), int(offsets[r + 1])
            if b > a:
                fh.seek(a)
                fh.write(b"\0" * (b - a))
        fh.flush()
        os.fsync(fh.fileno())


def _unlink_rows(folder: Path, local: np.ndarray) -> None:
    """Face id and identity code -1 for `local` rows of a replaced shard folder, in place:
    a reader still answering from it sees those faces vanish (no id, no name)."""
    for name in ("face_ids.npy", "identity_codes.npy"):
        arr = np.load(folder / name, mmap_mode="r+")
        arr[local] = -1
        arr.flush()
        del arr


def _log_erasure(out: Path, face_ids: list, identities: list, count: int, gen: int) -> None:
    """Append one line to erasure-log.jsonl: when, the selector salted and hashed, how many."""
    salt_path = out / SALT_NAME
    if not salt_path.exists():
        salt_path.write_bytes(secrets.token_bytes(32))
        os.chmod(salt_path, 0o600)
    salt = salt_path.read_bytes()

    def digest(kind: str, value) -> str:
        return hmac.new(salt, f"{kind}:{value}".encode(), hashlib.sha256).hexdigest()

    entry = {"time": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()), "generation": gen,
             "identities": [digest("identity", x) for x in identities],
             "face_ids": [digest("face_id", int(x)) for x in face_ids], "faces": count}
    with open(out / LOG_NAME, "a") as fh:
        fh.write(json.dumps(entry) + "\n")
        fh.flush()
        os.fsync(fh.fileno())


def selector_digest(index_dir: str | os.PathLike, identity: str) -> str | None:
    """The hash erasure-log.jsonl records for `identity` (None before any erasure): lets an
    auditor who is asked about a person check that their erasure was logged."""
    salt_path = Path(index_dir) / SALT_NAME
    if not salt_path.exists():
        return None
    return hmac.new(salt_path.read_bytes(), f"identity:{identity}".encode(),
                    hashlib.sha256).hexdigest()


def scrub_erased(index_dir: Path, m: IndexManifest) -> int:
    """Zero the vectors / sources of erased slots still holding data (an erasure killed
    between its publish and its scrub); returns the rows scrubbed."""
    done = 0
    for s in m.shards:
        if not s.erased:
            continue
        store = ShardStore(index_dir / s.dir, s.row_offset, s.rows, m.dim)
        slots = np.flatnonzero(np.asarray(store.face_ids) < 0)
        offsets = np.asarray(store.sources.offsets)
        dirty = slots[np.asarray(store.vectors[slots]).any(axis=1)
                      | (offsets[slots + 1] > offsets[slots])
                      & _has_text(store, slots)]
        del store
        if len(dirty):
            _scrub(index_dir / s.dir, dirty, m.dim)
            done += len(dirty)
    return done


def _has_text(store: ShardStore, rows: np.ndarray) -> np.ndarray:
    off = store.sources.offsets
    return np.asarray([bool(np.asarray(store.sources.blob[int(off[r]):int(off[r + 1])]).any())
                       for r in rows], bool)


def own_collections(index_dir: Path) -> list[Path]:
    """The collections `faceidx enrol` embedded for this index (see enrolled_folder)."""
    from faceidx.index.manifest import enrolled_folder

    folder = enrolled_folder(index_dir)
    if not folder.is_dir():
        return []
    return sorted(c for c in folder.iterdir() if (c / "collection.json").is_file())


def erase_from_collection(collection, vectors: np.ndarray, names: set[str],
                           sources: set[str]) -> int:
    """Drop from `collection` the rows of erased faces: the same vector (cosine > 0.9999,
    whatever face id it had there), a name no longer in the index, an erased source."""
    from faceidx.io.rewrite import drop_rows

    unit = vectors / np.maximum(np.linalg.norm(vectors, axis=1, keepdims=True), 1e-12)
    name_list, source_list = list(names), list(sources)

    def drop(b) -> np.ndarray:
        mask = np.zeros(len(b), bool)
        if b.identities is not None and name_list:
            mask |= np.isin(b.identities, name_list)
        if b.sources is not None and source_list:
            mask |= np.isin(b.sources, source_list)
        if b.embeddings is not None and len(unit):
            x = b.embeddings / np.maximum(np.linalg.norm(b.embeddings, axis=1, keepdims=True),
                                          1e-12)
            mask |= ((x @ unit.T.astype(x.dtype)) > 0.9999).any(axis=1)
        return mask

    def failed(path: str) -> bool:
        parts = set(Path(path).parts)
        return path in sources or bool(parts & names)

    return drop_rows(collection, drop, failed)
