"""A gallery that answers, enrols and erases at the same time (the service's state).

    live = LiveGallery(open_gallery("faces.index"), holder="faceidx serve :8000")
    ids = live.enrol("ann", vectors)        # durable (WAL fsync) and searchable on return
    live.erase(identities=["bob"])          # through the index writer; gone on return
    live.merge()                            # fold shards into the merged index, online
    live.close()                            # flush, release the writer lock

The writer lock is held for the service's lifetime, so another writer (a `faceidx add`)
is refused with IndexBusyError naming this service. Enrolment: face ids are reserved in
the index (durably, in blocks), the faces appended to the write-ahead log with fsync,
then added to an in-memory Delta searched exactly beside the index. A background thread
flushes the delta into the index (`add_arrays` with the reserved ids, one publish), swaps
in the new reader and rewrites the log without the flushed faces. Start-up replays the
log (faces already in the index are skipped: a crash between publish and rewrite adds
nothing twice). Every change swaps one Snapshot reference: a request sees one gallery.
"""

from __future__ import annotations

import logging
import threading
import time

import numpy as np

from faceidx.gallery.catalog import check_known
from faceidx.gallery.layered import Delta
from faceidx.serve.wal import WAL_NAME, AddRecord, EraseRecord, WriteAheadLog

log = logging.getLogger(__name__)


class LiveGallery:
    """Owns the writer, the WAL and the delta of a Gallery; see the module docstring."""

    def __init__(self, gallery, holder: str = "faceidx serve", flush_rows: int = 4096,
                 flush_seconds: float = 5.0, reserve_block: int = 1024, background: bool = True):
        from faceidx.index.writer import open_writer

        self.gallery = gallery
        self.flush_rows, self.flush_seconds, self.reserve_block = flush_rows, flush_seconds, reserve_block
        self.writer = open_writer(gallery.path, holder=holder)
        self._write = threading.RLock()    # writer calls, one at a time
        self._state = threading.Lock()     # delta + WAL + snapshot swaps
        self._ids = np.empty(0, np.int64)
        self._oldest = None                # monotonic time of the oldest unflushed face
        self.flushes = 0
        self.gallery.refresh()
        self.wal = WriteAheadLog(gallery.path / WAL_NAME)
        self._delta = self._replay()
        self._swap(self.gallery.index.base)
        self._stop = threading.Event()
        self._thread = None
        if background:
            self._thread = threading.Thread(target=self._flusher, name="faceidx-flush", daemon=True)
            self._thread.start()

    # -- state --------------------------------------------------------------------------

    def _replay(self) -> Delta:
        base = self.gallery.index.base
        delta = Delta.empty(base.dim)
        records = self.wal.read()
        for rec in records:
            if isinstance(rec, AddRecord):
                fresh = base.store.rows_of(rec.face_ids) < 0
                if fresh.any():
                    delta = delta.add(rec.vectors[fresh], [rec.identity] * int(fresh.sum()),
                                      np.asarray(rec.sources, object)[fresh], rec.face_ids[fresh])
            else:
                delta, _ = delta.without(face_ids=rec.face_ids)
        if records:
            log.info("write-ahead log replayed: %d record(s), %d face(s) pending", len(records),
                     len(delta))
            self._oldest = time.monotonic() if len(delta) else None
        return delta

    def _swap(self, reader) -> None:
        """Answer from `reader` plus the current delta (caller holds _state or is __init__)."""
        self.gallery.use(self.gallery.layer(reader, self._delta))

    @property
    def pending(self) -> int:
        """Faces acknowledged but not yet in the index."""
        return len(self._delta)

    def _base(self):
        return self.gallery.index.base

    # -- writes -------------------------------------------------------------------------

    def _reserve(self, n: int) -> np.ndarray:
        with self._write:
            if len(self._ids) < n:
                more = self.writer.reserve_face_ids(max(n, self.reserve_block))
                self._ids = np.concatenate([self._ids, more])
            ids, self._ids = self._ids[:n], self._ids[n:]
            return ids

    def enrol(self, identity: str | None, vectors: np.ndarray, sources=None) -> np.ndarray:
        """Acknowledge faces: reserved ids, WAL fsync, then searchable. Returns the ids."""
        x = np.asarray(vectors, np.float32)
        x = x / np.linalg.norm(x, axis=1, keepdims=True)
        sources = [None] * len(x) if sources is None else list(sources)
        ids = self._reserve(len(x))
        with self._state:
            self.wal.append(AddRecord(ids, identity, sources, x))
            self._delta = self._delta.add(x, [identity] * len(x), sources, ids)
            self._oldest = self._oldest or time.monotonic()
            self._swap(self._base())
        return ids

    def erase(self, face_ids=(), identities=()) -> dict:
        """Erase faces (by id) and identities from the delta and the index; NotFoundError
        for one the gallery does not hold (then nothing is erased)."""
        face_ids, identities = [int(f) for f in face_ids], list(identities)
        with self._write:
            snap = self.gallery.snapshot
            check_known(snap.index, snap.counts(), face_ids, identities)
            base = self._base()
            in_base = self.gallery.base_counts(base)
            with self._state:
                self._delta, dropped = self._delta.without(face_ids, identities)
                if len(dropped):
                    self.wal.append(EraseRecord(dropped))
                    self._swap(base)
            base_ids = [f for f in face_ids if f not in set(dropped.tolist())]
            base_names = [n for n in identities if n in in_base]
            counts = {"erased_pending": int(len(dropped))}
            if base_ids or base_names:
                counts.update(self.writer.erase(face_ids=base_ids, identities=base_names))
                self._reopen()
            return counts

    def _reopen(self) -> None:
        from faceidx.index import open_index

        reader = open_index(self.gallery.path)
        with self._state:
            self._swap(reader)

    def flush(self) -> int:
        """Write the pending faces into the index (one publish); returns how many."""
        from faceidx.index import open_index

        with self._write:
            d = self._delta
            if not len(d):
                return 0
            self.writer.add_arrays(d.vectors, list(d.identities), list(d.sources), face_ids=d.face_ids)
            reader = open_index(self.gallery.path)
            with self._state:
                flushed = np.isin(self._delta.face_ids, d.face_ids)
                self._delta = self._delta.keep(~flushed)
                self.wal.rewrite(_records_of(self._delta))
                self._oldest = time.monotonic() if len(self._delta) else None
                self._swap(reader)
            self.flushes += 1
            return int(len(d))

    def merge(self) -> dict:
        """Flush, then fold every shard into the merged index (online; one swap)."""
        with self._write:
            self.flush()
            out = self.writer.merge()
            self._reopen()
            return out

    def _flusher(self) -> None:
        while not self._stop.wait(0.25):
            due = self._oldest is not None and (len(self._delta) >= self.flush_rows or
                                                time.monotonic() - self._oldest >= self.flush_seconds)
            if due:
                try:
                    self.flush()
                except Exception:   # keep serving; the WAL still holds the faces
                    log.exception("background flush failed; faces stay in the write-ahead log")

    def close(self, flush: bool = True) -> None:
        """Stop the flusher, flush what is pending (unless told not to), release the lock."""
        self._stop.set()
        if self._thread is not None:
            self._thread.join()
        try:
            if flush:
                self.flush()
        finally:
            self.wal.close()
            self.writer.close()


def _records_of(delta: Delta) -> list[AddRecord]:
    """One AddRecord per face of the delta (what the log must still hold)."""
    return [AddRecord(delta.face_ids[i:i + 1], delta.identities[i], [delta.sources[i]],
                      delta.vectors[i:i + 1]) for i in range(len(delta))]
