"""IndexReader: search an index directory (its shards, or the merged index) for query code.

    reader = open_index("faces.index")
    scores, face_ids = reader.search(queries, k=10)        # cosine, descending, -1 padded
    identities, sources = reader.lookup(face_ids[:, 0])
    exact = reader.exact_scores(queries, face_ids)         # exact cosines for decisions

Every part (the merged index, then shards added after the merge) is searched for
k * k_factor candidates with the stored nprobe; the lists to probe are computed once per
query for all parts (faceidx/index/coarse.py). Candidates are merged globally and
re-ranked with the exact unit vectors kept in each shard's row store, so returned
scores are exact cosine similarities.

Reentrant: a search changes no state of the reader, of its FAISS indexes or of the
process (nprobe / efSearch are per-call SearchParameters; FAISS's OpenMP thread count is
set once at start-up with `faissio.set_threads`), so any number of threads may search
one open reader at once and get the answers one thread gets.
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np

from faceidx.errors import DataError
from faceidx.index.coarse import CoarseAssigner, Part
from faceidx.index.faissio import prepare, read_index, search_preassigned, search_with_nprobe
from faceidx.index.manifest import SHARD_INDEX, IndexManifest, load_mean
from faceidx.index.store import RowStore, ShardStore
from faceidx.io import CollectionMeta


class IndexReader:
    """Read-only view of an index directory. Use :func:`open_index`."""

    def __init__(self, path: Path, manifest: IndexManifest, parts: list[Part], store: RowStore,
                 mean: np.ndarray | None, erased: np.ndarray | None = None,
                 coarse: CoarseAssigner | None = None):
        self.path = path
        self._manifest = manifest
        self.parts = parts
        self.coarse = coarse
        self.store = store
        self.mean = mean
        self.erased = np.empty(0, np.int64) if erased is None else erased

    def _is_erased(self, rows: np.ndarray) -> np.ndarray:
        if not len(self.erased):
            return np.zeros(rows.shape, bool)
        pos = np.minimum(np.searchsorted(self.erased, rows), len(self.erased) - 1)
        return self.erased[pos] == rows

    @property
    def meta(self) -> CollectionMeta:
        return self._manifest.meta

    @property
    def generation(self) -> int:
        """The manifest generation this reader answers from."""
        return self._manifest.generation

    @property
    def manifest(self) -> dict:
        return self._manifest.to_json()

    @property
    def ntotal(self) -> int:
        return self._manifest.live_rows - len(self.erased)

    @property
    def num_identities(self) -> int:
        return self._manifest.num_identities

    @property
    def dim(self) -> int:
        return self._manifest.dim

    def _check(self, queries: np.ndarray) -> np.ndarray:
        q = np.asarray(queries, dtype=np.float32)
        if q.ndim == 1:
            q = q[None, :]
        if q.ndim != 2 or q.shape[1] != self.dim:
            raise ValueError(f"queries must have shape (q, {self.dim}), got {np.shape(queries)}")
        if not np.isfinite(q).all():
            raise ValueError("queries hold NaN or inf")
        return prepare(q)

    def candidates(self, unit: np.ndarray, n: int, nprobe: int) -> tuple[np.ndarray, np.ndarray]:
        """Approximate top-n (squared L2, global rows) over all parts, merged; -1 padded."""
        q = len(unit)
        x = unit if self.mean is None else prepare(unit, self.mean)
        wanted = n
        n += min(len(self.erased), n)  # over-fetch what erased rows may take
        residual = any(p.ivf is None or p.ivf.by_residual for p in self.parts)
        step = query_block(nprobe, x.shape[1], residual)
        got = [self._search_parts(x[a:a + step], n, nprobe) for a in range(0, q, step)]
        d = np.concatenate([g[0] for g in got])
        r = np.concatenate([g[1] for g in got])
        r[self._is_erased(r)] = -1
        d[r < 0] = np.inf
        n = wanted
        if d.shape[1] > n:
            part = np.argpartition(d, n - 1, axis=1)[:, :n]
            d = np.take_along_axis(d, part, axis=1)
            r = np.take_along_axis(r, part, axis=1)
        order = np.argsort(d, axis=1, kind="stable")
        return np.take_along_axis(d, order, axis=1), np.take_along_axis(r, order, axis=1)

    def _search_parts(self, x: np.ndarray, n: int, nprobe: int) -> tuple[np.ndarray, np.ndarray]:
        """Top-n of every part for a block of queries, side by side (not yet merged)."""
        assigned = None
        dists, rows = [], []
        for part in self.parts:
            kk = min(n, max(part.ntotal, 1))
            if part.ivf is None or self.coarse is None:
                d, r = search_with_nprobe(part.index, x, kk, nprobe)
            else:
                xt = part.transform(x)
                if assigned is None:
                    assigned = self.coarse.assign(xt, nprobe)
                d, r = search_preassigned(part.ivf, xt, kk, assigned[1], assigned[0])
            dists.append(d)
            rows.append(r)
        return np.concatenate(dists, axis=1), np.concatenate(rows, axis=1)

    def rerank(self, unit: np.ndarray, rows: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
        """Exact cosine of candidate rows; top-k (scores desc, rows), -1/-inf padded."""
        q, c = rows.shape
        scores = np.full((q, c), -np.inf, np.float32)
        valid = rows >= 0
        if valid.all():
            vecs = self.store.gather(rows.reshape(-1), "vectors").reshape(q, c, -1)
            scores = np.einsum("qcd,qd->qc", vecs, unit)
        elif valid.any():
            vecs = self.store.gather(rows[valid], "vectors")
            qi = np.nonzero(valid)[0]
            scores[valid] = np.einsum("nd,nd->n", vecs, unit[qi])
        kk = min(k, c)
        if c > 2 * kk:  # keep the best kk first (ties at the cut: any of them)
            keep = np.sort(np.argpartition(-scores, kk - 1, axis=1)[:, :kk], axis=1)
            scores = np.take_along_axis(scores, keep, axis=1)
            rows = np.take_along_axis(rows, keep, axis=1)
        order = np.argsort(-scores, axis=1, kind="stable")[:, :kk]
        s = np.take_along_axis(scores, order, axis=1)
        r = np.take_along_axis(rows, order, axis=1)
        r[~np.isfinite(s)] = -1
        return _pad(s, r, k)

    def search_rows(self, unit: np.ndarray, k: int, nprobe: int, n_cand: int,
                    early: dict | None = None, own_rows: np.ndarray | None = None):
        """(scores, rows) of the top-k for unit queries with n_cand re-ranked candidates.

        early, {"nprobe": p, "candidates": c, "accept": s} (query-adaptive probing, tuned
        by tune.py): every query first probes p lists and re-ranks c candidates (at least
        k; n_cand when the rule has none); those whose rank-1 exact score reaches s keep
        that answer, the others are searched again with `nprobe` lists and n_cand
        candidates, so their answer is the one-stage answer. own_rows (benchmarks and tuning): each query's own row,
        not counted as its rank-1 when deciding.
        """
        small = int(early["nprobe"]) if early else 0
        if not 0 < small < nprobe:
            return self._search_rows(unit, k, nprobe, n_cand)
        scores, rows = self._search_rows(unit, k, small, max(int(early.get("candidates", n_cand)), k))
        top = scores[:, 0]
        if own_rows is not None and k > 1:
            top = np.where(rows[:, 0] == own_rows, scores[:, 1], top)
        again = np.flatnonzero(~(top >= float(early["accept"])))
        if len(again):
            scores[again], rows[again] = self._search_rows(unit[again], k, nprobe, n_cand)
        return scores, rows

    def _search_rows(self, unit: np.ndarray, k: int, nprobe: int, n_cand: int):
        """One-stage search_rows. Queries go in blocks so that the gathered candidate
        vectors stay within RERANK_BUDGET bytes, whatever q * n_cand is."""
        n_cand = max(n_cand, k)
        step = max(1, RERANK_BUDGET // (n_cand * unit.shape[1] * 4))
        scores, rows = [], []
        for a in range(0, max(len(unit), 1), step):
            _, cand = self.candidates(unit[a:a + step], n_cand, nprobe)
            s, r = self.rerank(unit[a:a + step], cand, k)
            scores.append(s)
            rows.append(r)
        return np.concatenate(scores), np.concatenate(rows)

    def search(self, queries: np.ndarray, k: int, nprobe: int | None = None,
               k_factor: int | None = None) -> tuple[np.ndarray, np.ndarray]:
        """Top-k faces of each query: (scores (q,k) float32 cosine descending, face_ids int64).

        Rows with fewer than k results are padded with score -inf and face id -1.
        nprobe / k_factor default to the values tuned at build time; at least the tuned
        `candidates` (manifest search defaults) are re-ranked whatever k and k_factor.
        With the tuned nprobe, the tuned early stop (if any) applies too; an explicit
        nprobe is searched as given.
        """
        if k < 1:
            raise ValueError("k must be >= 1")
        unit = self._check(queries)
        defaults = self._manifest.search
        early = defaults.get("early") if nprobe is None else None
        nprobe = int(nprobe or defaults.get("nprobe", 1))
        k_factor = int(k_factor or defaults.get("k_factor", 1))
        n_cand = max(k * k_factor, int(defaults.get("candidates", 0)))
        scores, rows = self.search_rows(unit, k, nprobe, n_cand, early)
        return scores, self.face_ids_of(rows)

    def face_ids_of(self, rows: np.ndarray) -> np.ndarray:
        out = np.full(rows.shape, -1, np.int64)
        valid = rows >= 0
        if valid.any():
            out[valid] = self.store.gather(rows[valid], "face_ids")
        return out

    def lookup(self, face_ids: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """(identities, sources) object arrays shaped like face_ids; None where unknown."""
        face_ids = np.asarray(face_ids, np.int64)
        rows = self.store.rows_of(face_ids)
        rows[self._is_erased(rows)] = -1
        ids, srcs = self.store.identities_sources(rows)
        return ids.reshape(face_ids.shape), srcs.reshape(face_ids.shape)

    def exact_scores(self, queries: np.ndarray, face_ids: np.ndarray) -> np.ndarray:
        """Exact cosine between each query and its face_ids (q, k); NaN where id unknown."""
        unit = self._check(queries)
        face_ids = np.asarray(face_ids, np.int64)
        if face_ids.ndim == 1:
            face_ids = face_ids[:, None]
        if len(face_ids) != len(unit):
            raise ValueError("face_ids must have one row per query")
        rows = self.store.rows_of(face_ids)
        rows[self._is_erased(rows)] = -1
        out = np.full(rows.shape, np.nan, np.float32)
        valid = rows >= 0
        if valid.any():
            vecs = self.store.gather(rows[valid], "vectors")
            out[valid] = np.einsum("nd,nd->n", vecs, unit[np.nonzero(valid)[0]])
        return out


LUT_BUDGET = 64 << 20
RERANK_BUDGET = 256 << 20


def query_block(nprobe: int, dim: int, residual: bool = True) -> int:
    """Queries per FAISS call so that IVF look-up tables stay within LUT_BUDGET bytes.

    Residual PQ searches build a table per (query, probed list) of up to D*16 floats;
    1000 queries at nprobe 256 would otherwise ask for 2 GB at once. Non-residual codes
    need one table per query, so blocks can be large (batching queries per list is
    what makes fast-scan fast: 16-query blocks ran 1.6x slower at nprobe 512).
    """
    per_query = max(nprobe if residual else 1, 1) * dim * 16 * 4
    return int(max(8, min(4096, LUT_BUDGET // per_query)))


def _pad(s: np.ndarray, r: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
    if s.shape[1] >= k:
        return s.astype(np.float32), r
    q = len(s)
    ps = np.full((q, k), -np.inf, np.float32)
    pr = np.full((q, k), -1, np.int64)
    ps[:, :s.shape[1]] = s
    pr[:, :r.shape[1]] = r
    return ps, pr


def open_index(index_dir: str | os.PathLike, allow_incomplete: bool = False,
               verify: bool = False) -> IndexReader:
    """Open one generation of an index directory for search, eagerly: the FAISS parts,
    row-store mappings and erased list are all opened here, so the reader keeps that
    consistent snapshot while writers publish newer ones (`reader.generation`; compare
    with faceidx.index.writer.current_generation to know when to reopen). Damaged
    files raise DataError naming them.

    allow_incomplete: open an unfinished build (the tuner does, between stages).
    verify: check the SHA-256 of every shard's index file against the manifest.
    """
    path = Path(index_dir)
    for attempt in range(3):
        manifest = IndexManifest.load(path)
        try:
            return _open_generation(path, manifest, allow_incomplete, verify)
        except DataError:
            # a writer published (and deleted this generation's replaced files) meanwhile
            if attempt == 2 or IndexManifest.load(path).generation == manifest.generation:
                raise
    raise AssertionError("unreachable")


def _open_generation(path: Path, manifest: IndexManifest, allow_incomplete: bool,
                     verify: bool) -> IndexReader:
    if not manifest.complete and not allow_incomplete:
        raise DataError("index build is unfinished; rerun `faceidx build` to resume it", path)
    if not manifest.shards:
        raise DataError("index holds no shards", path)
    stores = [ShardStore(path / s.dir, s.row_offset, s.rows, manifest.dim) for s in manifest.shards]
    parts, files = [], []
    first = 0
    merged = manifest.merged
    if merged:
        if any(p.is_symlink() for p in (path / merged["file"], (path / merged["file"]).parent)):
            raise DataError("is a symbolic link; an index's files must lie inside it",
                            path / merged["file"])
        index = read_index(path / merged["file"], mmap=merged.get("mmap", False),
                           ondisk=merged.get("ondisk", False))
        _check_count(index, sum(s.live for s in manifest.shards[:merged["shards"]]),
                     path / merged["file"])
        parts.append(Part.of(index))
        files.append(str(path / merged["file"]))
        first = merged["shards"]
    for s in manifest.shards[first:]:
        file = path / s.dir / SHARD_INDEX
        if verify and s.sha256.get(SHARD_INDEX):
            from faceidx.io.atomic import sha256_file

            if sha256_file(file) != s.sha256[SHARD_INDEX]:
                raise DataError("checksum does not match manifest.json (changed or damaged)", file)
        index = read_index(file)
        _check_count(index, s.live, file)
        parts.append(Part.of(index))
        files.append(str(file))
    coarse = CoarseAssigner.for_parts(parts, files)
    mean = None
    if manifest.center:
        mean = load_mean(path, manifest.dim)
    from faceidx.index.store import load_erased

    return IndexReader(path, manifest, parts, RowStore(stores), mean, load_erased(path), coarse)


def _check_count(index, rows: int, file: Path) -> None:
    if index.ntotal != rows:
        raise DataError(f"index holds {index.ntotal} vectors, manifest says {rows}", file)
