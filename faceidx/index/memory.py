"""What an index costs in RAM: a pure model of search-time and build-time memory.

    est = estimate(params, n=10_000_000, dim=128)
    est.search      # {"codes": ..., "ids": ..., "list_padding": ..., "centroids": ..., ...}
    est.build       # the larger of the train phase and the add phase
    est.peak        # what --max-memory must hold: max(search, build)

Search keeps resident: PQ codes and 8-byte ids in the inverted lists, the padding of
fast-scan lists (codes are packed in blocks of 32 vectors, so each list wastes half a
block on average), the coarse centroids (twice with an HNSW quantizer: search assigns
with an exact flat copy, faceidx/index/coarse.py), the HNSW graph (2*M neighbours of 4 B
per centroid on level 0), the PQ and PCA/OPQ tables, and two transient budgets: the
look-up tables of one block of queries and the exact vectors gathered for re-ranking
(LUT_BUDGET and RERANK_BUDGET in faceidx/index/search.py). The exact vectors themselves
stay on disk, memory-mapped (page cache, not counted).

A build holds, in its train phase, the training sample (read, then normalised: two
copies) and k-means' assignment arrays and centroids; in its add phase one shard's
codes, ids, face ids and identity codes, the batches in flight (prefetch depth 2, the
batch being added and its normalised copy), and the trained quantizer.
"""

from __future__ import annotations

from dataclasses import dataclass

ID_BYTES = 8                # FAISS stores one int64 id per vector in the inverted lists
FASTSCAN_BLOCK = 32         # vectors per fast-scan block (FAISS bbs)
HNSW_M = 32                 # IVFn_HNSW32: level-0 neighbours 2*M, 4 B each
HNSW_NODE_EXTRA = 16        # levels, offsets per node
SHARD_ROWS = 1_000_000
BATCH_ROWS = 65_536
BATCHES_IN_FLIGHT = 4
ROW_STORE_BYTES = 8 + 4     # face id (int64) + identity code (int32) per row while adding
KMEANS_ROW_BYTES = 12       # assignment (int64) + distance (float32) per training point
LUT_BLOCK = 4096            # queries per FAISS call (faceidx/index/search.py query_block)


@dataclass(frozen=True)
class MemoryEstimate:
    """Bytes by component, at search time and during the build (the larger phase)."""

    search: dict[str, int]
    build: dict[str, int]

    @property
    def search_bytes(self) -> int:
        return sum(self.search.values())

    @property
    def build_bytes(self) -> int:
        return sum(self.build.values())

    @property
    def peak(self) -> int:
        return max(self.search_bytes, self.build_bytes)

    def to_json(self) -> dict:
        return {"search": dict(self.search), "build": dict(self.build),
                "search_bytes": self.search_bytes, "build_bytes": self.build_bytes,
                "peak_bytes": self.peak}

    def summary(self) -> str:
        def part(d: dict[str, int]) -> str:
            return ", ".join(f"{k.replace('_', ' ')} {fmt_bytes(v)}" for k, v in d.items() if v)

        return (f"search {fmt_bytes(self.search_bytes)} ({part(self.search)}); "
                f"build {fmt_bytes(self.build_bytes)} ({part(self.build)})")


def fmt_bytes(b: float) -> str:
    """1536 -> '1.5K', as --max-memory takes it (binary units)."""
    for unit in ("", "K", "M", "G", "T"):
        if abs(b) < 1024 or unit == "T":
            return f"{b:.0f}{unit}" if unit == "" else f"{b:.1f}{unit}"
        b /= 1024
    raise AssertionError("unreachable")


def estimate(params, n: int, dim: int, shard_rows: int = SHARD_ROWS,
             batch_rows: int = BATCH_ROWS) -> MemoryEstimate:
    """The memory model of `params` (an IndexParams) for n vectors of dimension dim."""
    from faceidx.index.search import LUT_BUDGET, RERANK_BUDGET

    d = params.pca_dim or dim
    nlist = params.nlist
    code = params.code_bytes or (_code_bytes(params.pq_m, params.pq_bits) if params.pq_m else 4 * d)
    fast_scan = params.pq_bits == 4
    residual = "fsr" in params.factory or params.pq_bits == 8
    padding = nlist * (FASTSCAN_BLOCK // 2) * _code_bytes(params.pq_m, 4) if fast_scan else 0
    centroids = nlist * d * 4 * (2 if params.hnsw_quantizer else 1)
    graph = nlist * (2 * HNSW_M * 4 + HNSW_NODE_EXTRA) if params.hnsw_quantizer else 0
    tables = (2 ** params.pq_bits) * d * 4 if params.pq_m else 0
    if params.pca_dim or params.opq:
        tables += dim * d * 4 + dim * 4
    lut_per_query = d * 16 * 4
    search = {"codes": int(n * code), "ids": n * ID_BYTES, "list_padding": padding,
              "centroids": centroids, "hnsw_graph": graph, "tables": tables,
              "lut_budget": (LUT_BUDGET if residual else min(LUT_BUDGET, LUT_BLOCK * lut_per_query))
              if nlist else 0,
              "rerank_budget": RERANK_BUDGET if params.keep_vectors else 0}
    shard = min(n, shard_rows)
    trained = centroids // (2 if params.hnsw_quantizer else 1) + graph + tables
    train_phase = {"training_sample": 2 * params.train_size * dim * 4,
                   "kmeans": params.train_size * KMEANS_ROW_BYTES + nlist * d * 4 * 2,
                   "trained_index": trained}
    add_phase = {"shard_codes": int(shard * (code + ID_BYTES)) + padding,
                 "shard_rows": shard * ROW_STORE_BYTES,
                 "batches": BATCHES_IN_FLIGHT * min(batch_rows, n) * dim * 4,
                 "trained_index": trained}
    build = max(train_phase, add_phase, key=lambda p: sum(p.values()))
    return MemoryEstimate(search=search, build=build)


def _code_bytes(m: int, bits: int) -> int:
    if bits == 4:
        return (m + 1) // 2
    return (m * bits + 7) // 8
