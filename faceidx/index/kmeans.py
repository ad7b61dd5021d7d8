"""Coarse k-means in torch, for GPUs that the installed FAISS cannot use.

faiss-cpu has no GPU k-means, and the GPU build of FAISS needs CUDA 12 wheels that are
not always installable where the GPU is (docs/INDEX.md, GPU). Training the coarse
quantizer is the one stage of a build whose cost grows with nlist x sample size
(16384 lists on a 500k sample: ~5 min on 2 CPU cores), so it is the part worth moving:
this module runs the same Lloyd iterations as FAISS's `Clustering` (random distinct
initial centroids, sample capped at 256 points per centroid, empty clusters split off
large ones) with torch on any device, and the centroids go into the IVF's quantizer
before FAISS trains the rest (PQ codebooks on residuals) on the CPU.
"""

from __future__ import annotations

import logging
import time

import numpy as np

log = logging.getLogger(__name__)

MAX_POINTS_PER_CENTROID = 256  # FAISS's ClusteringParameters default
IVF_ITERATIONS = 10  # FAISS's Level1Quantizer sets cp.niter = 10 for IVF coarse training
SCORE_BYTES = 1 << 30  # one assignment chunk's (rows x k) score matrix
SPLIT_EPS = 1.0 / 1024  # FAISS's EPS for splitting a cluster into an empty one


def kmeans(x: np.ndarray, k: int, device="cpu", iters: int = IVF_ITERATIONS, seed: int = 0,
           max_points_per_centroid: int = MAX_POINTS_PER_CENTROID) -> tuple[np.ndarray, dict]:
    """L2 k-means of float32 rows `x` into `k` centroids on torch `device`.

    Returns (centroids float32 (k, d), stats with the objective (sum of squared
    distances at the last assignment), iterations, points used and seconds).
    """
    import torch

    n, d = x.shape
    if n < k:
        raise ValueError(f"k-means needs at least k={k} points, got {n}")
    rng = np.random.default_rng(seed)
    if n > max_points_per_centroid * k:
        x = x[np.sort(rng.choice(n, size=max_points_per_centroid * k, replace=False))]
        n = len(x)
    t0 = time.perf_counter()
    dev = torch.device(device)
    xt = torch.from_numpy(np.ascontiguousarray(x, dtype=np.float32)).to(dev)
    centroids = xt[torch.from_numpy(rng.choice(n, size=k, replace=False)).to(dev)].clone()
    x_sq = (xt * xt).sum(1)
    chunk = max(1, SCORE_BYTES // (4 * k))
    objective = float("nan")
    splits = 0
    for _ in range(iters):
        assign, partial = assign_chunks(xt, centroids, chunk)
        objective = float((x_sq + partial).clamp_min(0).sum())
        sums = torch.zeros_like(centroids).index_add_(0, assign, xt)
        counts = torch.bincount(assign, minlength=k)
        filled = counts > 0
        centroids[filled] = sums[filled] / counts[filled, None].to(sums.dtype)
        splits += split_empty(centroids, counts, rng)
    if dev.type == "cuda":
        torch.cuda.synchronize(dev)
    stats = {"kmeans": f"torch:{dev.type}", "points": n, "centroids": k, "iterations": iters,
             "objective": round(objective, 4), "empty_cluster_splits": splits,
             "seconds": round(time.perf_counter() - t0, 3)}
    log.info("k-means on %s: %d points -> %d centroids in %.2f s", dev, n, k, stats["seconds"])
    return centroids.cpu().numpy(), stats


def assign_chunks(xt, centroids, chunk: int):
    """Nearest centroid of each row, and |c|^2 - 2 x.c there (add |x|^2 for the distance)."""
    import torch

    c_sq = (centroids * centroids).sum(1)
    assign = torch.empty(len(xt), dtype=torch.int64, device=xt.device)
    partial = torch.empty(len(xt), dtype=xt.dtype, device=xt.device)
    for lo in range(0, len(xt), chunk):
        scores = torch.addmm(c_sq, xt[lo:lo + chunk], centroids.T, alpha=-2.0)
        partial[lo:lo + chunk], assign[lo:lo + chunk] = scores.min(1)
    return assign, partial


def split_empty(centroids, counts, rng: np.random.Generator) -> int:
    """Give each empty cluster half of a large one (as FAISS does); returns how many.

    The donor is drawn with probability proportional to its size among clusters of more
    than one point; both halves are nudged apart by SPLIT_EPS in alternating directions.
    """
    import torch

    counts = counts.cpu().numpy().astype(np.float64)
    empty = np.flatnonzero(counts == 0)
    if not len(empty):
        return 0
    sign = np.where(np.arange(centroids.shape[1]) % 2 == 0, 1.0, -1.0).astype(np.float32)
    nudge = torch.from_numpy(sign).to(centroids.device) * SPLIT_EPS
    for ci in empty:
        weights = np.where(counts > 1, counts - 1, 0)
        if weights.sum() == 0:
            break
        cj = int(rng.choice(len(counts), p=weights / weights.sum()))
        centroids[ci] = centroids[cj] * (1 + nudge)
        centroids[cj] = centroids[cj] * (1 - nudge)
        counts[ci] = counts[cj] / 2
        counts[cj] -= counts[ci]
    return len(empty)
