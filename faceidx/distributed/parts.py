"""An index's parts spread over groups: the group side, and a reader that fans out to them.

    groups = [PartGroup("faces.index", g, 2) for g in range(2)]      # each on its own machine
    reader = FannedReader.open("faces.index", LocalCalls(groups))     # the router's reader
    identify(reader, probes, k=5)                                     # what a reader answers

A part is what one process searches: the merged index, then each shard added after the
merge (faceidx.index.search). Part i and shard row store j belong to group i % G and
j % G; a group memory-maps only its own. The router computes the coarse assignment
once (from trained.index, whose centroids every part shares), sends the probe block to
every group, and gets back each part's candidate list; from there it runs the very code
of one process (IndexReader.candidates / rerank / search / lookup / exact_scores), with
the row store's gathers and look-ups routed to the groups owning the rows. So answers
equal one process's on the same index, ties included. Transport is a `calls` object
(submit(group, method, *args) -> future; result(future)): LocalCalls here, Ray Serve
handles in faceidx.distributed.serve.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from faceidx.errors import DataError
from faceidx.index.coarse import CoarseAssigner, Part
from faceidx.index.faissio import read_index, search_preassigned, search_with_nprobe
from faceidx.index.manifest import SHARD_INDEX, TRAINED_NAME, IndexManifest
from faceidx.index.search import IndexReader
from faceidx.index.store import ShardStore


def part_files(manifest: IndexManifest) -> list[tuple[str, bool, bool, int]]:
    """(file relative to the index dir, mmap, ondisk, vectors) of each part, in search order."""
    out, first = [], 0
    merged = manifest.merged
    if merged:
        out.append((merged["file"], bool(merged.get("mmap")), bool(merged.get("ondisk")),
                    sum(s.live for s in manifest.shards[:merged["shards"]])))
        first = merged["shards"]
    out += [(f"{s.dir}/{SHARD_INDEX}", False, False, s.live) for s in manifest.shards[first:]]
    return out


class PartGroup:
    """Group `group` of `groups`: its parts (FAISS) and shard row stores, memory-mapped."""

    def __init__(self, index_dir: str, group: int, groups: int, generation: int | None = None):
        path = Path(index_dir)
        self.manifest = IndexManifest.load(path)
        if generation is not None and self.manifest.generation != generation:
            raise DataError(f"index is at generation {self.manifest.generation}, the router "
                            f"asked for {generation}; reopen the router", path)
        self.group, self.groups = group, groups
        self.parts: dict[int, Part] = {}
        for i, (file, mmap, ondisk, rows) in enumerate(part_files(self.manifest)):
            if i % groups == group:
                index = read_index(path / file, mmap=mmap, ondisk=ondisk)
                if index.ntotal != rows:
                    raise DataError(f"index holds {index.ntotal} vectors, manifest says {rows}",
                                    path / file)
                self.parts[i] = Part.of(index)
        self.stores = {j: ShardStore(path / s.dir, s.row_offset, s.rows, self.manifest.dim)
                       for j, s in enumerate(self.manifest.shards) if j % groups == group}

    def search(self, x: np.ndarray, xt: np.ndarray, assigned, n: int,
               nprobe: int) -> dict[int, tuple[np.ndarray, np.ndarray]]:
        """Each own part's top-n (squared L2, global rows), as IndexReader._search_parts does."""
        out = {}
        for i, part in self.parts.items():
            kk = min(n, max(part.ntotal, 1))
            if part.ivf is None or assigned is None:
                out[i] = search_with_nprobe(part.index, x, kk, nprobe)
            else:
                out[i] = search_preassigned(part.ivf, xt, kk, assigned[1], assigned[0])
        return out

    def gather(self, wanted: dict[int, np.ndarray], what: str) -> dict[int, np.ndarray]:
        """{shard: local rows} -> {shard: face_ids or vectors of those rows}."""
        return {j: np.asarray(getattr(self.stores[j], what)[rows]) for j, rows in wanted.items()}

    def find(self, face_ids: np.ndarray) -> np.ndarray:
        """Global rows of face_ids in own shards (-1 elsewhere); only shards whose
        face-id range (from the manifest) holds an id are opened."""
        out = np.full(len(face_ids), -1, np.int64)
        for j, store in self.stores.items():
            info = self.manifest.shards[j]
            near = np.flatnonzero((face_ids >= info.face_id_min) & (face_ids <= info.face_id_max))
            if len(near):
                local = store.find(face_ids[near])
                hit = local >= 0
                out[near[hit]] = local[hit] + store.row_offset
        return out

    def labels(self, wanted: dict[int, np.ndarray]) -> dict[int, tuple[list, list]]:
        """{shard: local rows} -> {shard: (identities, sources)}."""
        return {j: ([self.stores[j].identity(int(r)) for r in rows],
                    [self.stores[j].source(int(r)) for r in rows]) for j, rows in wanted.items()}

    def describe(self) -> dict:
        from faceidx.distributed.cluster import node_id

        try:
            node = node_id()
        except Exception:  # not inside Ray (LocalCalls)
            node = None
        return {"group": self.group, "parts": sorted(self.parts), "shards": sorted(self.stores),
                "generation": self.manifest.generation, "node": node}


class LocalCalls:
    """In-process transport to PartGroup objects (tests, one machine)."""

    def __init__(self, groups: list[PartGroup]):
        self.groups = groups

    def __len__(self) -> int:
        return len(self.groups)

    def submit(self, group: int, method: str, *args):
        return getattr(self.groups[group], method)(*args)

    def result(self, future):
        return future


class FannedRowStore:
    """The RowStore interface (gather, rows_of, identities_sources) over part groups."""

    def __init__(self, manifest: IndexManifest, calls):
        self.calls = calls
        self.groups = len(calls)
        self.starts = np.asarray([s.row_offset for s in manifest.shards] + [manifest.rows],
                                 np.int64)

    @property
    def rows(self) -> int:
        return int(self.starts[-1])

    def _by_group(self, rows: np.ndarray) -> list[dict[int, np.ndarray]]:
        shard = np.searchsorted(self.starts, rows, side="right") - 1
        asks: list[dict[int, np.ndarray]] = [{} for _ in range(self.groups)]
        for j in np.unique(shard):
            asks[int(j) % self.groups][int(j)] = rows[shard == j] - self.starts[j]
        return asks

    def _fan(self, method: str, asks: list[dict], *args) -> dict:
        futures = [self.calls.submit(g, method, ask, *args)
                   for g, ask in enumerate(asks) if ask]
        got: dict = {}
        for f in futures:
            got.update(self.calls.result(f))
        return got

    def gather(self, rows: np.ndarray, what: str) -> np.ndarray:
        rows = np.asarray(rows, np.int64).reshape(-1)
        shard = np.searchsorted(self.starts, rows, side="right") - 1
        got = self._fan("gather", self._by_group(rows), what)
        first = next(iter(got.values()))
        out = np.empty((len(rows),) + first.shape[1:], first.dtype)
        for j, values in got.items():
            out[shard == j] = values
        return out

    def rows_of(self, face_ids: np.ndarray) -> np.ndarray:
        face_ids = np.asarray(face_ids, np.int64)
        flat = face_ids.reshape(-1)
        futures = [self.calls.submit(g, "find", flat) for g in range(self.groups)]
        out = np.full(len(flat), -1, np.int64)
        for f in futures:
            out = np.maximum(out, self.calls.result(f))
        return out.reshape(face_ids.shape)

    def identities_sources(self, rows: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        rows = np.asarray(rows, np.int64).reshape(-1)
        ids = np.full(len(rows), None, object)
        srcs = np.full(len(rows), None, object)
        valid = np.flatnonzero(rows >= 0)
        if len(valid):
            shard = np.searchsorted(self.starts, rows[valid], side="right") - 1
            for j, (names, sources) in self._fan("labels", self._by_group(rows[valid])).items():
                at = valid[shard == j]
                ids[at], srcs[at] = names, sources
        return ids, srcs

    def release(self) -> None:
        """Nothing is mapped here: the groups own their row stores."""


class FannedCore(IndexReader):
    """IndexReader whose parts and row stores live in part groups (see the module doc)."""

    def __init__(self, path: Path, manifest: IndexManifest, trained: Part, calls,
                 mean: np.ndarray | None, erased: np.ndarray | None):
        coarse = CoarseAssigner.for_parts([trained], [str(path / TRAINED_NAME)])
        super().__init__(path, manifest, [trained], FannedRowStore(manifest, calls), mean,
                         erased, coarse)
        self.trained, self.calls, self.nparts = trained, calls, len(part_files(manifest))

    @classmethod
    def open(cls, index_dir: str | Path, calls) -> FannedCore:
        from faceidx.index.erase import load_erased

        path = Path(index_dir)
        manifest = IndexManifest.load(path)
        if not manifest.complete:
            raise DataError("index build is unfinished; rerun `faceidx build` to resume it", path)
        mean = np.load(path / "mean.npy") if manifest.center else None
        return cls(path, manifest, Part.of(read_index(path / TRAINED_NAME)), calls, mean,
                   load_erased(path))

    def _search_parts(self, x: np.ndarray, n: int, nprobe: int) -> tuple[np.ndarray, np.ndarray]:
        assigned, xt = None, x
        if self.trained.ivf is not None and self.coarse is not None:
            xt = self.trained.transform(x)
            assigned = self.coarse.assign(xt, nprobe)
        futures = [self.calls.submit(g, "search", x, xt, assigned, n, nprobe)
                   for g in range(len(self.calls))]
        got: dict = {}
        for f in futures:
            got.update(self.calls.result(f))
        if len(got) != self.nparts:
            raise DataError(f"part groups answered for {len(got)} of {self.nparts} parts",
                            self.path)
        return (np.concatenate([got[i][0] for i in range(self.nparts)], axis=1),
                np.concatenate([got[i][1] for i in range(self.nparts)], axis=1))


class FannedReader:
    """The router's reader: what one process's reader answers (search, lookup,
    exact_scores, manifest, generation, ...), from part groups. It has no `store`: the
    row stores are the groups' (so callers that read names from a local store, such as
    faceidx.gallery's identity keys, go through `lookup`)."""

    def __init__(self, core: FannedCore):
        self._core = core

    @classmethod
    def open(cls, index_dir: str | Path, calls) -> FannedReader:
        return cls(FannedCore.open(index_dir, calls))

    def __getattr__(self, name: str):
        if name == "store" or name.startswith("_"):
            raise AttributeError(name)
        return getattr(self._core, name)
