"""A published index plus faces enrolled since, searched together as one gallery.

    delta = Delta.empty(128).add(vectors, ["ann", "ann"], [None, None], face_ids)
    view = LayeredIndex(open_index("faces.index"), delta)
    identify(view, probes, k=5, threshold=0.9)        # the delta is searched exactly

The delta holds faces acknowledged but not yet written into the index (a service's
enrolments between flushes). It is immutable: adding or dropping faces makes a new one,
so a request holding a view sees one consistent gallery. Its faces are scored exactly
(a matrix product), beside the index's exactly re-ranked results.

Identity keys, names and the catalog (counts, an identity's faces) are in catalog.py.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from faceidx.gallery.catalog import IdentityKeys, identity_counts


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

    def __init__(self, base, delta: Delta, keys: IdentityKeys | None = None):
        self.base = base
        self.delta = delta
        self.path = base.path
        self.keys = keys if keys is not None else IdentityKeys(base)

    def identity_keys(self, face_ids: np.ndarray) -> np.ndarray:
        """int64 identity key of each face id (-1: no identity, or not found)."""
        face_ids = np.asarray(face_ids, np.int64)
        out = self.keys(face_ids) if self.keys.store is not None else \
            _keys_by_lookup(self.base, face_ids)
        rows = self.delta.rows_of(face_ids)
        hit = rows >= 0
        if hit.any():
            names = self.delta.identities[rows[hit]]
            out[hit] = [-1 if n is None else hash(n) for n in names]
        return out

    @property
    def ntotal(self) -> int:
        return int(self.base.ntotal) + len(self.delta)

    @property
    def manifest(self) -> dict:
        """The base's manifest (read once: a reader's snapshot does not change)."""
        m = self.__dict__.get("_manifest")
        if m is None:
            m = self._manifest = self.base.manifest
        return m

    @property
    def meta(self):
        return self.base.meta

    @property
    def dim(self) -> int:
        return self.base.dim

    @property
    def generation(self) -> int:
        gen = getattr(self.base, "generation", None)
        return int(self.base.manifest.get("generation", 0) if gen is None else gen)

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
        names, sources = (self.keys.lookup(face_ids) if self.keys.store is not None
                          else self.base.lookup(face_ids))
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


def _keys_by_lookup(index, face_ids: np.ndarray) -> np.ndarray:
    names, _ = index.lookup(face_ids)
    return np.asarray([-1 if n is None else hash(n) for n in names.reshape(-1)],
                      np.int64).reshape(face_ids.shape)
