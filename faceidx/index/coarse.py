"""One coarse assignment per query, shared by every IVF part of an index.

    coarse = CoarseAssigner.for_parts(parts)      # parts: FAISS indexes of one index dir
    dist, lists = coarse.assign(x, nprobe)        # then ivf.search_preassigned(x, k, lists, dist)

Every shard (and the merged index) of an index directory was trained once, so they
share one quantizer. Searching each shard on its own repeats the coarse search once per
shard; with 10 shards at 10M vectors that was most of the search time. Here the lists
to probe are computed once and each part is searched with ``search_preassigned``.
(The parts keep their own copies of the quantizer, ~1.4 B per vector each at 16384
lists; `faceidx merge` leaves one. Re-pointing FAISS indexes at a shared quantizer and
freeing the copies from Python corrupted SWIG's type table in faiss 1.15.1.)

The assignment is exact (BLAS over the centroids) up to EXACT_MAX_NLIST lists. An HNSW
coarse quantizer searched with FAISS's default efSearch of 16 returned only 58% of the
256 nearest lists on 10M synthetic faces and cut recall@1 to 0.82 whatever nprobe was;
exact assignment costs 4 MFLOP per query at 16384 lists, less than the HNSW search at
an efSearch that fixes it. Above EXACT_MAX_NLIST the HNSW quantizer is kept and searched
with efSearch >= 2 * nprobe, given per call (SearchParametersHNSW): any number of threads
may assign at once.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from faceidx.errors import DataError
from faceidx.index.faissio import faiss, hnsw_params

EXACT_MAX_NLIST = 65_536


@dataclass
class Part:
    """A searchable FAISS index; `ivf` and `chain` are set when it is a (pre-transformed) IVF."""

    index: object
    ivf: object = None
    chain: list = field(default_factory=list)

    @classmethod
    def of(cls, index) -> Part:
        f = faiss()
        inner = f.downcast_index(index)
        chain = []
        if isinstance(inner, f.IndexPreTransform):
            chain = [inner.chain.at(i) for i in range(inner.chain.size())]
            inner = f.downcast_index(inner.index)
        if isinstance(inner, f.IndexIVF):
            return cls(index, inner, chain)
        return cls(index)

    @property
    def ntotal(self) -> int:
        return int(self.index.ntotal)

    def transform(self, x: np.ndarray) -> np.ndarray:
        for vt in self.chain:
            x = vt.apply(x)
        return x


class CoarseAssigner:
    """The lists to probe for each query, computed once for all IVF parts."""

    def __init__(self, index, nlist: int, owner=None):
        self.index = index
        self._owner = owner  # keeps the part alive whose quantizer `index` may be
        self.nlist = nlist
        self.hnsw = isinstance(index, faiss().IndexHNSW)

    @classmethod
    def for_parts(cls, parts: list[Part], names: list[str] | None = None) -> CoarseAssigner | None:
        """The assigner for the IVF parts of one index; None if none is IVF.

        names: a file per part, for the error when a part was trained with other centroids.
        """
        ivfs = [(i, p.ivf) for i, p in enumerate(parts) if p.ivf is not None]
        if not ivfs:
            return None
        f = faiss()
        first = ivfs[0][1]
        reference = _centroids(first)
        for i, ivf in ivfs[1:]:
            mine = _centroids(ivf)
            if reference is not None and (mine is None or not np.array_equal(mine, reference)):
                where = names[i] if names else f"part {i}"
                raise DataError("this shard was trained with other centroids than the index's "
                                "first shard; rebuild it with `faceidx add`", where)
        quantizer = f.downcast_index(first.quantizer)
        if reference is not None and first.nlist <= EXACT_MAX_NLIST \
                and not isinstance(quantizer, f.IndexFlat):
            flat = (f.IndexFlatIP if first.metric_type == f.METRIC_INNER_PRODUCT else f.IndexFlatL2)(first.d)
            flat.add(reference)
            quantizer = flat
        return cls(quantizer, first.nlist, owner=parts[ivfs[0][0]])

    def assign(self, x: np.ndarray, nprobe: int) -> tuple[np.ndarray, np.ndarray]:
        """(distances, list numbers) of the nprobe lists nearest each row of x."""
        nprobe = int(min(max(nprobe, 1), self.nlist))
        if self.hnsw:  # efSearch per call: the shared quantizer is never modified
            return self.index.search(x, nprobe, params=hnsw_params(nprobe))
        return self.index.search(x, nprobe)


def _centroids(ivf) -> np.ndarray | None:
    try:
        return ivf.quantizer.reconstruct_n(0, ivf.nlist)
    except RuntimeError:
        return None  # a quantizer that cannot reconstruct: kept as it is
