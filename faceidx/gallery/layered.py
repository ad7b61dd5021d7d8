"""A published index plus faces enrolled since, searched together as one gallery.

    delta = Delta.empty(128).add(vectors, ["ann", "ann"], [None, None], face_ids)
    view = LayeredIndex(open_index("faces.index"), delta)
    identify(view, probes, k=5, threshold=0.9)        # the delta is searched exactly

The delta holds faces acknowledged but not yet written into the index (a service's
enrolments between flushes). It is immutable: adding or dropping faces makes a new one,
so a request holding a view sees one consistent gallery. Its faces are scored exactly
(a matrix product), beside the index's exactly re-ranked results.

Catalog functions (identity counts, an identity's faces) read an index's row store and
skip erased rows.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass

import numpy as np


@dataclass(frozen=True)
class Delta:
    """Faces outside the index: unit vectors (n, D), face ids, identities, sources."""

    vectors: np.ndarray
    face_ids: np.ndarray
    identities: np.ndarray
    sources: np.ndarray

    @classmethod
    def empty(cls, dim: int) -> Delta:
        return cls(np.empty((0, dim), np.float32), np.empty(0, np.int64),
                   np.empty(0, object), np.empty(0, object))

    def __len__(self) -> int:
        return len(self.face_ids)

    def add(self, vectors: np.ndarray, identities, sources, face_ids: np.ndarray) -> Delta:
        x = np.asarray(vectors, np.float32).reshape(-1, self.vectors.shape[1])
        x = x / np.maximum(np.linalg.norm(x, axis=1, keepdims=True), 1e-12)
        return Delta(np.concatenate([self.vectors, x]),
                     np.concatenate([self.face_ids, np.asarray(face_ids, np.int64)]),
                     np.concatenate([self.identities, np.asarray(list(identities), object)]),
                     np.concatenate([self.sources, np.asarray(list(sources), object)]))

    def keep(self, mask: np.ndarray) -> Delta:
        return Delta(self.vectors[mask], self.face_ids[mask], self.identities[mask],
                     self.sources[mask])

    def without(self, face_ids=(), identities=()) -> tuple[Delta, np.ndarray]:
        """(the delta without these faces / identities, the face ids dropped)."""
        drop = np.isin(self.face_ids, np.asarray(list(face_ids), np.int64))
        names = set(identities)
        if names:
            drop |= np.array([n in names for n in self.identities], bool)
        return self.keep(~drop), self.face_ids[drop]

    def rows_of(self, face_ids: np.ndarray) -> np.ndarray:
        """Delta rows of face ids (-1 where absent)."""
        face_ids = np.asarray(face_ids, np.int64)
        if not len(self):
            return np.full(face_ids.shape, -1, np.int64)
        order = np.argsort(self.face_ids)
        pos = np.minimum(np.searchsorted(self.face_ids[order], face_ids), len(order) - 1)
        return np.where(self.face_ids[order][pos] == face_ids, order[pos], -1)


class LayeredIndex:
    """An IndexReader and a Delta behind the reader's search interface (see identify)."""

    def __init__(self, base, delta: Delta):
        self.base = base
        self.delta = delta
        self.path = base.path

    @property
    def ntotal(self) -> int:
        return int(self.base.ntotal) + len(self.delta)

    @property
    def manifest(self) -> dict:
        return self.base.manifest

    @property
    def meta(self):
        return self.base.meta

    @property
    def dim(self) -> int:
        return self.base.dim

    @property
    def generation(self) -> int:
        return int(self.base.manifest.get("generation", 0))

    def search(self, queries: np.ndarray, k: int, nprobe: int | None = None,
               k_factor: int | None = None) -> tuple[np.ndarray, np.ndarray]:
        """The index's top-k and the delta's exact top-k, merged (scores desc, -1 pads)."""
        scores, ids = self.base.search(queries, k, nprobe=nprobe, k_factor=k_factor)
        if not len(self.delta):
            return scores, ids
        q = _unit(queries)
        ds = q @ self.delta.vectors.T
        kd = min(k, len(self.delta))
        top = np.argsort(-ds, axis=1, kind="stable")[:, :kd]
        s = np.concatenate([scores, np.take_along_axis(ds, top, axis=1)], axis=1)
        i = np.concatenate([ids, self.delta.face_ids[top]], axis=1)
        order = np.argsort(-s, axis=1, kind="stable")[:, :k]
        return np.take_along_axis(s, order, axis=1).astype(np.float32), np.take_along_axis(i, order, axis=1)

    def lookup(self, face_ids: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        face_ids = np.asarray(face_ids, np.int64)
        names, sources = self.base.lookup(face_ids)
        rows = self.delta.rows_of(face_ids)
        hit = rows >= 0
        if hit.any():
            names, sources = names.copy(), sources.copy()
            names[hit] = self.delta.identities[rows[hit]]
            sources[hit] = self.delta.sources[rows[hit]]
        return names, sources

    def exact_scores(self, queries: np.ndarray, face_ids: np.ndarray) -> np.ndarray:
        out = self.base.exact_scores(queries, face_ids)
        face_ids = np.asarray(face_ids, np.int64)
        if face_ids.ndim == 1:
            face_ids = face_ids[:, None]
        rows = self.delta.rows_of(face_ids)
        hit = rows >= 0
        if hit.any():
            q = _unit(queries)
            out[hit] = np.einsum("nd,nd->n", self.delta.vectors[rows[hit]], q[np.nonzero(hit)[0]])
        return out

    def identity_set(self) -> set[str]:
        return set(identity_counts(self))


def _unit(q: np.ndarray) -> np.ndarray:
    q = np.asarray(q, np.float32)
    q = q[None, :] if q.ndim == 1 else q
    return q / np.maximum(np.linalg.norm(q, axis=1, keepdims=True), 1e-12)


def _erased_mask(reader, shard) -> np.ndarray | None:
    erased = reader.erased
    lo, hi = np.searchsorted(erased, [shard.row_offset, shard.row_offset + shard.rows])
    if lo == hi:
        return None
    mask = np.zeros(shard.rows, bool)
    mask[erased[lo:hi] - shard.row_offset] = True
    return mask


def identity_counts(index) -> Counter:
    """{identity: faces} over the index's row store (erased rows left out) and its delta."""
    from faceidx.index.store import identity_names_of

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
        names = identity_names_of(shard.folder)
        for code, n in zip(*np.unique(codes, return_counts=True), strict=True):
            counts[names[code]] += int(n)
    delta = getattr(index, "delta", None)
    if delta is not None:
        counts.update(n for n in delta.identities if n is not None)
    return counts


def identity_faces(index, identity: str) -> tuple[np.ndarray, list[str | None]]:
    """(face ids, sources) of one identity's faces in the index and its delta."""
    from faceidx.index.store import identity_names_of

    base = getattr(index, "base", index)
    ids, sources = [], []
    for shard in base.store.shards:
        names = identity_names_of(shard.folder)
        if identity not in names:
            continue
        local = np.flatnonzero(np.asarray(shard.codes) == names.index(identity))
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


def has_faces(index, face_ids) -> np.ndarray:
    """Which face ids the index (erased rows excluded) or its delta holds."""
    face_ids = np.asarray(list(face_ids), np.int64)
    base = getattr(index, "base", index)
    rows = base.store.rows_of(face_ids)
    live = rows >= 0
    if live.any() and len(base.erased):
        live[live] = ~np.isin(rows[live], base.erased)
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
