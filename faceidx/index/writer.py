"""The one way to change an index directory: a locked writer that publishes snapshots.

    with open_writer("faces.index", "faceidx add") as w:   # IndexBusyError if held
        w.add_collection("new-faces/")                       # one publish, index online
        ids = w.reserve_face_ids(3)                          # durable before the add
        w.add_arrays(vectors, ["ann", "ann", "bob"], face_ids=ids)
        w.erase(identities=["ann"])

An index's state is manifest.json. A writer never changes the content of a file a
published manifest names; it writes new files (temp + rename) and publishes them by
replacing manifest.json atomically with ``generation`` + 1 (IndexManifest.save). Files
no longer named are deleted after the publish (open readers keep their mappings). A
reader (`open_index`) opens one generation eagerly and keeps answering from it; a
long-lived reader compares `current_generation()` with its own to know when to reopen.

`add_collection` builds its shards beside the published index; progress is journaled
in ``pending-add.json`` so that a rerun resumes, and a crash leaves the previous
manifest serving. A collection already added (same content fingerprint) is a no-op.
"""

from __future__ import annotations

import json
import logging
import os
from collections.abc import Sequence
from dataclasses import asdict
from pathlib import Path

import numpy as np

from faceidx.errors import DataError
from faceidx.index.lock import WriterLock
from faceidx.index.manifest import (
    MANIFEST_NAME,
    SHARD_INDEX,
    IndexManifest,
    ShardInfo,
    load_mean,
    shard_dir_name,
)
from faceidx.index.staging import (
    PENDING_FORMAT,
    PENDING_NAME,
    collect_garbage,
    discard_pending,
    load_pending,
    pending_dirs,
    staging_dir,
    write_pending,
)
from faceidx.io.validate import MIN_NORM

log = logging.getLogger(__name__)

def current_generation(index_dir: str | os.PathLike) -> int:
    """The generation of the manifest published now (cheap: one small JSON read)."""
    path = Path(index_dir) / MANIFEST_NAME
    try:
        return int(json.loads(path.read_text()).get("generation", 0))
    except (OSError, ValueError, AttributeError, TypeError) as err:
        raise DataError(f"cannot read the index manifest: {err}", path) from err


def open_writer(index_dir: str | os.PathLike, holder: str = "faceidx") -> IndexWriter:
    """Take `index_dir`'s writer lock (IndexBusyError when another writer holds it)."""
    return IndexWriter(index_dir, holder)


class IndexWriter:
    """The holder of an index directory's writer lock. A context manager."""

    def __init__(self, index_dir: str | os.PathLike, holder: str = "faceidx"):
        self.index_dir = Path(index_dir)
        m = IndexManifest.load(self.index_dir)  # not an index: DataError before locking
        self._lock = WriterLock(self.index_dir, holder).acquire()
        if any(sh.erased for sh in m.shards):
            from faceidx.index.erase import scrub_erased

            try:  # an erasure killed between its publish and its scrub is finished here
                scrub_erased(self.index_dir, IndexManifest.load(self.index_dir))
            except BaseException:
                self._lock.release()
                raise

    def __enter__(self) -> IndexWriter:
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def close(self) -> None:
        self._lock.release()

    # -- state ------------------------------------------------------------------------

    def manifest(self) -> IndexManifest:
        """The published manifest, which must be of a finished build."""
        if not self._lock.held:
            raise DataError("this index writer is closed", self.index_dir)
        m = IndexManifest.load(self.index_dir)
        if not m.complete:
            raise DataError("index build is unfinished; rerun `faceidx build` to resume it",
                            self.index_dir)
        return m

    def publish(self, manifest: IndexManifest) -> None:
        """Replace manifest.json (generation + 1), then delete what no manifest names."""
        manifest.save(self.index_dir)
        collect_garbage(self.index_dir, manifest, pending_dirs(self.index_dir))

    def _stores(self, manifest: IndexManifest):
        from faceidx.index.store import RowStore, ShardStore

        return RowStore([ShardStore(self.index_dir / s.dir, s.row_offset, s.rows, manifest.dim)
                         for s in manifest.shards])

    # -- face ids -----------------------------------------------------------------------

    def reserve_face_ids(self, n: int) -> np.ndarray:
        """n fresh face ids (int64), durable: next_face_id is bumped and published first."""
        if n < 0:
            raise ValueError("n must be >= 0")
        m = self.manifest()
        ids = np.arange(m.next_face_id, m.next_face_id + n, dtype=np.int64)
        if n:
            m.next_face_id += n
            self.publish(m)
        return ids

    # -- adding -------------------------------------------------------------------------

    def add_arrays(self, vectors: np.ndarray, identities: Sequence[str | None],
                   sources: Sequence[str | None] | None = None,
                   face_ids: np.ndarray | None = None) -> np.ndarray:
        """Enrol (n, D) vectors as one new shard in one publish; returns their face ids.

        face_ids: reserved ids (or any unused ids >= 0); when every one of them is
        already indexed the call is a replay and adds nothing. None: fresh ids.
        """
        from faceidx.index.build import _count_identities
        from faceidx.index.faissio import prepare, read_index, write_index
        from faceidx.index.store import ShardStoreWriter, identity_names_of, vector_dtype_of
        from faceidx.io.atomic import sha256_file

        m = self.manifest()
        x = check_new_vectors(vectors, m.dim, self.index_dir)
        n = len(x)
        identities = list(identities)
        sources = [None] * n if sources is None else list(sources)
        if len(identities) != n or len(sources) != n:
            raise ValueError(f"{n} vectors need {n} identities and sources")
        if face_ids is None:
            fids = np.arange(m.next_face_id, m.next_face_id + n, dtype=np.int64)
        else:
            fids = np.asarray(face_ids, np.int64).reshape(-1)
            if len(fids) != n:
                raise ValueError(f"{n} vectors need {n} face ids, got {len(fids)}")
            if n and fids.min() < 0:
                raise DataError(f"face id {int(fids.min())} is negative; face ids are >= 0",
                                self.index_dir)
            if len(np.unique(fids)) != n:
                raise DataError("face ids given to add_arrays repeat", self.index_dir)
            present = self._stores(m).rows_of(fids) >= 0
            if n and present.all():
                log.info("face ids %d.. already indexed: nothing to add (a replay)", fids[0])
                return fids
            if present.any():
                raise DataError(f"face id {int(fids[np.flatnonzero(present)[0]])} is already "
                                "indexed", self.index_dir)
        if n == 0:
            return fids
        discard_pending(self.index_dir, m)
        number = len(m.shards)
        folder = self.index_dir / shard_dir_name(number)
        tmp = staging_dir(self.index_dir, folder.name)
        rows = m.rows + np.arange(n, dtype=np.int64)
        store = ShardStoreWriter(tmp, n, m.dim, vector_dtype_of(m))
        store.append(fids, np.asarray(identities, object), np.asarray(sources, object), x)
        store.finish()
        index = read_index(self.index_dir / "trained.index")
        mean = load_mean(self.index_dir, m.dim) if m.center else None
        index.add_with_ids(x if mean is None else prepare(x, mean), rows)
        write_index(index, tmp / SHARD_INDEX)
        sha = {name: sha256_file(tmp / name) for name in (SHARD_INDEX, "face_ids.npy")}
        names = identity_names_of(tmp)
        tmp.rename(folder)
        m.shards.append(ShardInfo(dir=folder.name, rows=n, row_offset=m.rows,
                                  face_id_min=int(fids.min()), face_id_max=int(fids.max()),
                                  identities=len(names), collection="arrays", sha256=sha))
        m.collections.append({"path": "arrays", "rows": n, "first_shard": number, "done": True})
        m.next_face_id = max(m.next_face_id, int(fids.max()) + 1)
        m.num_identities = _count_identities(self.index_dir, m)
        self.publish(m)
        return fids

    def add_collection(self, collection: str | os.PathLike, shard_rows: int = 1_000_000,
                       progress: bool = False, options=None) -> dict:
        """Add a collection as new shards, published in one manifest swap.

        options: a BuildOptions (its shard_rows/progress win over the arguments).
        Returns {"added", "already_added", "shards", "renumbered_from"}.
        """
        from faceidx.index.build import (
            BuildOptions,
            _count_identities,
            add_shards,
            collection_key,
        )
        from faceidx.index.gpu import use_gpu
        from faceidx.io import open_collection

        opts = options or BuildOptions(shard_rows=shard_rows, progress=progress)
        m = self.manifest()
        coll = open_collection(collection)
        m.meta.check_compatible(coll.meta, coll.path)
        if coll.num_rows == 0:
            raise DataError("collection is empty: nothing to add", coll.path)
        coll.verify()  # every byte against collection.json: damage the page CRCs miss
        key = collection_key(coll)
        path = str(coll.path.resolve())
        if any(c.get("done") and (c.get("key") == key or (
                "key" not in c and c.get("path") == path and c.get("rows") == coll.num_rows))
               for c in m.collections):
            discard_pending(self.index_dir, m)
            log.info("%s was already added to %s: nothing to do", coll.path, self.index_dir)
            return {"added": 0, "already_added": True, "shards": 0, "renumbered_from": None}
        pending = load_pending(self.index_dir, m, key)
        if pending is None:
            discard_pending(self.index_dir, m)
            pending = self._start_pending(coll, m, key, opts.batch_size)
            m = self.manifest()  # the reservation was published
        entry = {"path": path, "rows": coll.num_rows, "key": key, "first_shard": len(m.shards),
                 "done": False, "renumber_from": pending["renumber_from"]}
        m.collections.append(entry)
        staged = [ShardInfo(**s) for s in pending["staged"]]
        if staged:
            log.info("resuming the add of %s (%d shard(s) done)", coll.path, len(staged))

        def save() -> None:
            pending["staged"] = [asdict(s) for s in staged]
            write_pending(self.index_dir, pending)

        reserved = m.next_face_id
        add_shards(coll, self.index_dir, m, opts, gpu=use_gpu(opts.device), staged=staged,
                   save=save)
        m.next_face_id = max(m.next_face_id, reserved)
        m.shards.extend(staged)
        entry["done"] = True
        m.num_identities = _count_identities(self.index_dir, m)
        self.publish(m)
        (self.index_dir / PENDING_NAME).unlink(missing_ok=True)
        return {"added": coll.num_rows, "already_added": False, "shards": len(staged),
                "renumbered_from": pending["renumber_from"]}

    def _start_pending(self, coll, m: IndexManifest, key: str, batch_size: int) -> dict:
        """Decide renumbering, reserve the face ids the add will use, start the journal."""
        stores = self._stores(m)
        lo, hi, collides = None, None, False
        for b in coll.iter_batches(batch_size, columns=["face_id"], validate=False):
            if not len(b):
                continue
            lo = int(b.face_ids.min()) if lo is None else min(lo, int(b.face_ids.min()))
            hi = int(b.face_ids.max()) if hi is None else max(hi, int(b.face_ids.max()))
            collides = collides or bool((stores.rows_of(b.face_ids) >= 0).any())
        if lo is not None and lo < 0:
            raise DataError(f"face id {lo} is negative; face ids are >= 0", coll.path)
        renumber = m.next_face_id if collides else None
        if collides:
            log.warning("face ids of %s collide with indexed ones: renumbering its faces "
                        "from %d", coll.path, renumber)
            m.next_face_id += coll.num_rows
        else:
            m.next_face_id = max(m.next_face_id, (hi or 0) + 1)
        pending = {"format": PENDING_FORMAT, "key": key, "path": str(coll.path.resolve()),
                   "base_shards": len(m.shards), "base_rows": m.rows,
                   "renumber_from": renumber, "staged": []}
        write_pending(self.index_dir, pending)
        self.publish(m)  # the face ids are reserved before any shard uses them
        return pending

    # -- other writes -------------------------------------------------------------------

    def erase(self, face_ids: Sequence[int] = (), identities: Sequence[str] = (),
              collection: str | os.PathLike | None = None, verify: bool = False) -> dict:
        """Erase faces by face id and/or every face of the given identities (one publish).

        Entries are removed physically from every part (faceidx/index/erase.py). An
        unknown face id or identity is a DataError (nothing is erased then).
        collection: also rewrite that collection without the erased faces' rows.
        verify: then scan every file of the index (and collection) for what was erased;
        the report is under "verify" (``clean`` true when nothing is left).
        """
        from faceidx.index.erase import erase_from_collection, erase_locked, own_collections

        m = self.manifest()
        discard_pending(self.index_dir, m)
        own = own_collections(self.index_dir)
        need = verify or collection is not None or bool(own)
        result = erase_locked(self, m, face_ids, identities, keep_vectors=need)
        if not need:
            return result
        erased = result.pop("erased")
        gone_names = set(erased["names"]) - set(_all_names(self.index_dir, self.manifest()))
        gone_sources = set(erased["sources"])
        if collection is not None:
            result["collection_rows_removed"] = erase_from_collection(
                collection, erased["vectors"], gone_names, gone_sources)
        if own:  # `faceidx enrol`'s embedded copies hold the same faces: never leave them
            result["enrolled_rows_removed"] = sum(
                erase_from_collection(c, erased["vectors"], gone_names, gone_sources)
                for c in own)
        if verify:
            from faceidx.index.erasure_scan import scan_for_traces

            roots = [self.index_dir] + ([Path(collection)] if collection is not None else []) + own
            result["verify"] = scan_for_traces(roots, erased["vectors"], sorted(gone_names),
                                               sorted(gone_sources), index_dir=self.index_dir,
                                               face_ids=erased["face_ids"])
        return result

    def merge(self) -> dict:
        """Fold every shard into one merged index (IVF only); one publish."""
        from faceidx.index.merge import merge_index

        self.manifest()
        return merge_index(self.index_dir)

    def tune(self, target_agreement: float = 0.995, queries: int = 1000, seed: int = 0,
             max_latency_ms: float | None = None) -> dict:
        """Tune the stored search defaults again against exact search; one publish."""
        from faceidx.index.tune import tune_search

        m = self.manifest()
        chosen = tune_search(self.index_dir, m, target_agreement, queries, seed, force=True,
                             max_latency_ms=max_latency_ms)
        self.publish(m)
        return chosen


def _all_names(index_dir: Path, m: IndexManifest) -> set[str]:
    from faceidx.index.store import identity_names_of

    names: set[str] = set()
    for s in m.shards:
        names.update(identity_names_of(index_dir / s.dir))
    return names


def check_new_vectors(vectors: np.ndarray, dim: int, where: str | os.PathLike) -> np.ndarray:
    """(n, dim) finite vectors of norm >= MIN_NORM, returned unit-normalised (float32)."""
    from faceidx.index.faissio import prepare

    x = np.asarray(vectors, dtype=np.float32)
    if x.ndim != 2 or x.shape[1] != dim:
        raise ValueError(f"vectors must have shape (n, {dim}), got {np.shape(vectors)}")
    if not np.isfinite(x).all():
        raise DataError("vectors hold NaN or inf", where)
    norms = np.linalg.norm(x.astype(np.float64), axis=1)
    if len(x) and norms.min() < MIN_NORM:
        i = int(np.argmin(norms))
        raise DataError(f"vector {i} has norm {norms[i]:.3g}, below {MIN_NORM}: it has no "
                        "direction to index", where)
    return prepare(x)
