"""Exact k-nearest-neighbour ground truth, streamed over the base vectors (numpy only).

    ids, dist = exact_knn(queries, blocks, k=100, metric="angular")

`blocks` yields float32 (b, d) arrays of the base set in order; only the current block
and the running top-k are held: memory is about q * (k + block_rows) * 8 bytes, with
block_rows chosen so one q x block score matrix stays near `budget_bytes` (16 MB: with
the merge buffers about 8x that at the peak).

Distances follow ann-benchmarks: `angular` = 1 - cosine, `euclidean` = L2 distance.
Within the k kept, equal distances are ordered by base row.
"""

from __future__ import annotations

from collections.abc import Iterable

import numpy as np

METRICS = ("angular", "euclidean")


def block_rows_for(num_queries: int, budget_bytes: int = 16 << 20) -> int:
    """Base rows per block so that a float32 (num_queries x rows) matrix fits the budget."""
    return max(1024, budget_bytes // (4 * max(1, num_queries)))


def exact_knn(queries: np.ndarray, blocks: Iterable[np.ndarray], k: int,
              metric: str = "angular") -> tuple[np.ndarray, np.ndarray]:
    """(ids int32 (q, k), distances float32 (q, k)), nearest first; -1 / inf pad short bases."""
    if metric not in METRICS:
        raise ValueError(f"metric must be one of {METRICS}, got {metric!r}")
    q = np.asarray(queries, np.float32)
    if metric == "angular":
        q = q / np.maximum(np.linalg.norm(q, axis=1, keepdims=True), 1e-30)
    nq = len(q)
    best_d = np.full((nq, k), np.inf, np.float32)
    best_i = np.full((nq, k), -1, np.int64)
    q_sq = np.einsum("ij,ij->i", q, q)[:, None]
    offset = 0
    for block in blocks:
        x = np.asarray(block, np.float32)
        if metric == "angular":
            x = x / np.maximum(np.linalg.norm(x, axis=1, keepdims=True), 1e-30)
            d = 1.0 - q @ x.T
        else:
            d = np.maximum(q_sq + np.einsum("ij,ij->i", x, x)[None, :] - 2.0 * (q @ x.T), 0.0)
        ids = np.broadcast_to(np.arange(offset, offset + len(x)), d.shape)
        best_d, best_i = _merge(best_d, best_i, d.astype(np.float32), ids, k)
        offset += len(x)
    if metric == "euclidean":
        best_d = np.sqrt(best_d)
    return best_i.astype(np.int32), best_d


def _merge(d0: np.ndarray, i0: np.ndarray, d1: np.ndarray, i1: np.ndarray, k: int):
    """Keep the k smallest (distance, id) pairs per row of two candidate sets."""
    d = np.concatenate([d0, d1], axis=1)
    i = np.concatenate([i0, i1], axis=1)
    if d.shape[1] > k:
        part = np.argpartition(d, k - 1, axis=1)[:, :k]
        d, i = np.take_along_axis(d, part, 1), np.take_along_axis(i, part, 1)
    # sort by distance, then id (ids of padding, -1, sort last via their inf distance)
    order = np.lexsort((np.where(i < 0, np.iinfo(np.int64).max, i), d), axis=1)
    return np.take_along_axis(d, order, 1), np.take_along_axis(i, order, 1)
