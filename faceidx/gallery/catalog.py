"""What an index holds, by person: identity keys, names and sources of faces (vectorised,
read once per shard), identity counts, an identity's faces, and the known-or-404 check.

    keys = IdentityKeys(reader)              # owned by a LayeredIndex
    keys(face_ids)                           # int64 per face: same person, same key
    identity_counts(view)["Ada_Lovelace"]    # faces of a person (index + delta)
    identity_faces(view, "Ada_Lovelace")     # (face ids, sources)

Erased rows (an old `erased.npy` list) are skipped everywhere.
"""

from __future__ import annotations

from collections import Counter

import numpy as np


class IdentityKeys:
    """Per-face identity keys, names and sources of an index's row store, vectorised.

    `keys(face_ids)` gives an int64 per face telling identities apart (-1: a face without
    identity); each shard's names are read once (and hashed, as this process hashes
    strings), so grouping a search's faces by person needs no string per face.
    `lookup(face_ids)` gives names and sources with one gather per shard.

    Owned by its caller (a LayeredIndex); `IdentityKeys(reader, previous)` reuses what
    the previous one read for shards both readers share.
    """

    def __init__(self, reader, previous: IdentityKeys | None = None):
        import threading

        self.store = getattr(reader, "store", None)   # None: names come from lookup
        self.erased = getattr(reader, "_is_erased", None)
        self._lock = threading.Lock()
        self._shards: dict[int, tuple] = {}
        self._codes: dict[int, dict] = {}
        self._done: dict[tuple, tuple] = {} if previous is None else dict(previous._done)

    def warm(self) -> None:
        """Read every shard's names now (a service does it in the background at start)."""
        if self.store is not None:
            for s in range(len(self.store.shards)):
                self._shard(s)

    def _shard(self, s: int) -> tuple:
        """(keys by code, names by code, sources mmap) of shard s."""
        got = self._shards.get(s)
        if got is None:
            with self._lock:
                shard = self.store.shards[s]
                sig = _signature(shard)
                got = self._done.get(sig)
                if got is None:
                    names = shard_names(shard)
                    got = (np.asarray([hash(n) for n in names], np.int64),
                           np.asarray(names, object), _map(shard.folder / "sources.bin"))
                    self._done[sig] = got
                self._shards[s] = got
        return got

    def code_of(self, s: int, identity: str) -> int:
        """The code of `identity` in shard s (-1 when the shard does not hold it)."""
        got = self._codes.get(s)
        if got is None:
            names = self._shard(s)[1]
            got = self._codes[s] = {n: c for c, n in enumerate(names)}
        return got.get(identity, -1)

    def _groups(self, face_ids: np.ndarray):
        """(flat output positions, shard, local rows) per shard holding some of face_ids."""
        rows = self.store.rows_of(face_ids).reshape(-1)
        if self.erased is not None:
            rows[self.erased(rows)] = -1
        valid = np.flatnonzero(rows >= 0)
        if not len(valid):
            return
        shard, local = self.store.locate(rows[valid])
        for s in np.unique(shard):
            mine = shard == s
            yield valid[mine], int(s), local[mine]

    def __call__(self, face_ids: np.ndarray) -> np.ndarray:
        face_ids = np.asarray(face_ids, np.int64)
        out = np.full(face_ids.size, -1, np.int64)
        for pos, s, local in self._groups(face_ids):
            codes = np.asarray(self.store.shards[s].codes[local], np.int64)
            keys = self._shard(s)[0]
            out[pos] = np.where(codes >= 0, keys[np.maximum(codes, 0)], -1)
        return out.reshape(face_ids.shape)

    def lookup(self, face_ids: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """(identities, sources) object arrays shaped like face_ids; None where unknown."""
        face_ids = np.asarray(face_ids, np.int64)
        names = np.full(face_ids.size, None, object)
        sources = np.full(face_ids.size, None, object)
        for pos, s, local in self._groups(face_ids):
            shard = self.store.shards[s]
            codes = np.asarray(shard.codes[local], np.int64)
            _, by_code, blob = self._shard(s)
            names[pos] = np.where(codes >= 0, by_code[np.maximum(codes, 0)], None)
            off = np.asarray(shard.sources.offsets)
            a, b = off[local], off[local + 1]
            sources[pos] = [blob[x:y].decode() or None if blob is not None and y > x else None
                            for x, y in zip(a.tolist(), b.tolist(), strict=True)]
        return names.reshape(face_ids.shape), sources.reshape(face_ids.shape)


def _map(path):
    """A read-only mmap of a file (None when it is empty)."""
    import mmap

    if path.stat().st_size == 0:
        return None
    with open(path, "rb") as fh:
        return mmap.mmap(fh.fileno(), 0, prot=mmap.PROT_READ)


def _signature(shard) -> tuple:
    """What identifies a shard's names: its folder, rows and names file (size, mtime)."""
    st = (shard.folder / "identity_offsets.npy").stat()
    return (str(shard.folder), shard.rows, st.st_size, st.st_mtime_ns)


def shard_names(shard) -> list[str]:
    """A shard's identity names by code, decoded in one pass over its names blob."""
    return shard.names.all()


def _erased_mask(reader, shard) -> np.ndarray | None:
    erased = getattr(reader, "erased", np.empty(0, np.int64))
    lo, hi = np.searchsorted(erased, [shard.row_offset, shard.row_offset + shard.rows])
    if lo == hi:
        return None
    mask = np.zeros(shard.rows, bool)
    mask[erased[lo:hi] - shard.row_offset] = True
    return mask


def identity_counts(index) -> Counter:
    """{identity: faces} over the index's row store (erased rows left out) and its delta."""
    base = getattr(index, "base", index)
    counts: Counter = Counter()
    for shard in base.store.shards:
        codes = np.asarray(shard.codes)
        erased = _erased_mask(base, shard)
        if erased is not None:
            codes = codes[~erased]
        codes = codes[codes >= 0]
        if not len(codes):
            continue
        names = shard_names(shard)
        for code, n in zip(*np.unique(codes, return_counts=True), strict=True):
            counts[names[code]] += int(n)
    delta = getattr(index, "delta", None)
    if delta is not None:
        counts.update(n for n in delta.identities if n is not None)
    return counts


def identity_faces(index, identity: str) -> tuple[np.ndarray, list[str | None]]:
    """(face ids, sources) of one identity's faces in the index and its delta."""
    base = getattr(index, "base", index)
    keys = getattr(index, "keys", None)
    ids, sources = [], []
    for s, shard in enumerate(base.store.shards):
        code = keys.code_of(s, identity) if keys is not None and keys.store is not None else \
            _code_in(shard_names(shard), identity)
        if code < 0:
            continue
        local = np.flatnonzero(np.asarray(shard.codes) == code)
        erased = _erased_mask(base, shard)
        if erased is not None:
            local = local[~erased[local]]
        ids.append(np.asarray(shard.face_ids)[local])
        sources += [shard.source(int(r)) for r in local]
    delta = getattr(index, "delta", None)
    if delta is not None and len(delta):
        mine = np.flatnonzero(delta.identities == identity)
        ids.append(delta.face_ids[mine])
        sources += list(delta.sources[mine])
    return (np.concatenate(ids) if ids else np.empty(0, np.int64)), sources


def _code_in(names: list[str], identity: str) -> int:
    try:
        return names.index(identity)
    except ValueError:
        return -1


def has_faces(index, face_ids) -> np.ndarray:
    """Which face ids the index (erased rows excluded) or its delta holds."""
    face_ids = np.asarray(list(face_ids), np.int64)
    base = getattr(index, "base", index)
    rows = base.store.rows_of(face_ids)
    live = rows >= 0
    erased = getattr(base, "erased", np.empty(0, np.int64))
    if live.any() and len(erased):
        live[live] = ~np.isin(rows[live], erased)
    delta = getattr(index, "delta", None)
    if delta is not None:
        live |= delta.rows_of(face_ids) >= 0
    return live


def check_known(index, counts, face_ids=(), identities=()) -> None:
    """NotFoundError naming the first face id or identity the gallery does not hold."""
    from faceidx.errors import NotFoundError

    for name in identities:
        if name not in counts:
            raise NotFoundError(f"identity {name!r} is not in the gallery", index.path)
    face_ids = list(face_ids)
    if face_ids:
        live = has_faces(index, face_ids)
        if not live.all():
            raise NotFoundError(f"face id {face_ids[int(np.argmin(live))]} is not in the gallery",
                                index.path)
