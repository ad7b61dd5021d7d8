"""Cluster-aware P x K batches: look-alike identities in the same batch, so negatives are hard.

"Pick preferentially from closer faces, e.g. using k-means clusters and picking negative
cases within own cluster." Random P x K batches rarely hold two look-alikes; here

1. each identity's centroid (mean of a few of its images' embeddings under the CURRENT
   model, L2-normalised) is clustered by spherical k-means into C clusters;
2. a share `share` of the batches is drawn from one cluster: a cluster is picked (in
   proportion to its identities), and when it has fewer than P identities the nearest
   clusters (by centre cosine) join it until P can be drawn; P identities are drawn from
   that union and K images from each, as PKSampler does;
3. the other batches are plain random P x K batches (`share=0` is PKSampler, `1` all
   cluster batches);
4. clusters are computed again at the start of every epoch and every `refresh_every`
   steps, from `embed_rows(rows) -> (len(rows), D)` (the loop passes the model being
   trained), so they follow the model.

Everything random is seeded by (seed, epoch[, step]); with the same embeddings the batches
repeat exactly.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator, Sequence

import numpy as np

from faceidx.train.sampler import BatchSizeError, PKSampler

EmbedRows = Callable[[np.ndarray], np.ndarray]


def spherical_kmeans(x: np.ndarray, c: int, rng: np.random.Generator, iters: int = 25,
                     restarts: int = 4) -> tuple[np.ndarray, np.ndarray]:
    """(assignment (n,) int64, centres (c, D) unit rows) of unit rows `x` (n, D) by cosine.

    k-means++ seeding on 1 - cosine, `restarts` times; the run with the highest total
    cosine to its centres wins. An emptied cluster takes the point farthest from its own
    centre. A run stops early when no assignment changes.
    """
    n = len(x)
    if not 1 <= c <= n:
        raise ValueError(f"need 1 <= clusters <= points, got {c} clusters for {n} points")
    best = None
    for _ in range(max(1, restarts)):
        assign, centres = _kmeans_once(x, c, rng, iters)
        fit = float(np.einsum("ij,ij->", x, centres[assign]))
        if best is None or fit > best[0]:
            best = (fit, assign, centres)
    return best[1], best[2]


def _kmeans_once(x: np.ndarray, c: int, rng: np.random.Generator, iters: int
                 ) -> tuple[np.ndarray, np.ndarray]:
    n = len(x)
    centres = np.empty((c, x.shape[1]), dtype=np.float64)
    centres[0] = x[rng.integers(n)]
    gap = 1.0 - x @ centres[0]
    for j in range(1, c):
        weights = np.clip(gap, 0, None)
        total = weights.sum()
        pick = rng.choice(n, p=weights / total) if total > 0 else rng.integers(n)
        centres[j] = x[pick]
        gap = np.minimum(gap, 1.0 - x @ centres[j])
    assign = np.full(n, -1, dtype=np.int64)
    for _ in range(iters):
        sims = x @ centres.T
        new = sims.argmax(axis=1)
        for j in np.setdiff1d(np.arange(c), new):  # empty cluster: take the worst-fitting point
            worst = int(np.argmin(sims[np.arange(n), new]))
            new[worst] = j
            sims[worst] = np.inf
        if np.array_equal(new, assign):
            break
        assign = new
        for j in range(c):
            members = x[assign == j]
            if len(members):  # (a cluster emptied by the fix-up above keeps its centre)
                m = members.sum(axis=0)
                norm = np.linalg.norm(m)
                centres[j] = m / norm if norm > 0 else members[0]
    return assign, centres


class ClusterPKSampler(PKSampler):
    """PKSampler whose batches come, for a share of them, from clusters of look-alike identities.

    `clusters` defaults to one per 2P identities (so a cluster batch draws P of about 2P
    look-alikes). `refresh_images` images per identity (at most) are embedded per refresh.
    Without `embed_rows`, call `refresh(group_embeddings)` yourself before iterating.
    """

    def __init__(self, labels: Sequence, p: int, k: int, seed: int = 0, small: str = "replace",
                 batches: int | None = None, clusters: int | None = None, share: float = 0.5,
                 refresh_every: int | None = None, refresh_images: int = 2,
                 embed_rows: EmbedRows | None = None):
        super().__init__(labels, p, k, seed=seed, small=small, batches=batches)
        if not 0.0 <= share <= 1.0:
            raise ValueError(f"share of cluster batches must be in [0, 1], got {share}")
        g = len(self.groups)
        self.clusters = clusters if clusters is not None else max(1, round(g / (2 * p)))
        if not 1 <= self.clusters <= g:
            raise BatchSizeError(f"{self.clusters} clusters for {g} identities: need 1..{g}")
        if refresh_every is not None and refresh_every < 1:
            raise ValueError(f"refresh_every must be >= 1 step, got {refresh_every}")
        if refresh_images < 1:
            raise ValueError(f"refresh_images must be >= 1, got {refresh_images}")
        self.share, self.refresh_every, self.refresh_images = share, refresh_every, refresh_images
        self.embed_rows = embed_rows
        self.assignment: np.ndarray | None = None  # group number -> cluster
        self.centres: np.ndarray | None = None
        self.refreshes = 0
        self.refresh_seconds = 0.0  # spent embedding and clustering (a cost of this sampler)

    def refresh_rows(self, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
        """(dataset rows to embed, the group number of each): up to `refresh_images` per group."""
        rows, owner = [], []
        for g, idx in enumerate(self.groups):
            pick = rng.choice(idx, size=min(idx.size, self.refresh_images), replace=False)
            rows.append(pick)
            owner.append(np.full(pick.size, g))
        return np.concatenate(rows), np.concatenate(owner)

    def refresh(self, embeddings: np.ndarray, owner: np.ndarray | None = None,
                rng: np.random.Generator | None = None) -> None:
        """Cluster the groups again from `embeddings` (m, D) of rows owned by group `owner`.

        Without `owner`, `embeddings` holds one row per group (its centroid, any scale).
        """
        e = np.asarray(embeddings, dtype=np.float64)
        owner = np.arange(len(self.groups)) if owner is None else np.asarray(owner)
        if e.ndim != 2 or len(e) != len(owner):
            raise ValueError(f"embeddings must be ({len(owner)}, D), got {e.shape}")
        e = e / np.maximum(np.linalg.norm(e, axis=1, keepdims=True), 1e-12)
        cent = np.zeros((len(self.groups), e.shape[1]))
        np.add.at(cent, owner, e)
        cent /= np.maximum(np.linalg.norm(cent, axis=1, keepdims=True), 1e-12)
        rng = rng if rng is not None else np.random.default_rng([self.seed, self.epoch, self.refreshes])
        self.assignment, self.centres = spherical_kmeans(cent, self.clusters, rng)
        self.refreshes += 1

    def _refresh_from_model(self, epoch: int, step: int) -> None:
        t0 = time.perf_counter()
        rng = np.random.default_rng([self.seed, epoch, step, 1])
        rows, owner = self.refresh_rows(rng)
        self.refresh(self.embed_rows(rows), owner, rng)
        self.refresh_seconds += time.perf_counter() - t0

    def cluster_groups(self, rng: np.random.Generator) -> tuple[np.ndarray, tuple[int, ...]]:
        """(P group numbers, the clusters they were drawn from) for one cluster batch."""
        sizes = np.bincount(self.assignment, minlength=self.clusters)
        first = int(rng.choice(self.clusters, p=sizes / sizes.sum()))
        order = np.argsort(-(self.centres @ self.centres[first]), kind="stable")
        chosen, have = [first], int(sizes[first])
        for c in order:
            if have >= self.p:
                break
            if c != first:
                chosen.append(int(c))
                have += int(sizes[c])
        pool = np.flatnonzero(np.isin(self.assignment, chosen))
        return rng.choice(pool, size=self.p, replace=False), tuple(chosen)

    def batches_with_clusters(self) -> Iterator[tuple[list[int], tuple[int, ...]]]:
        """(P*K dataset indices, clusters drawn from; () for a random batch) per batch."""
        rng = np.random.default_rng([self.seed, self.epoch])
        draw = self.random_identities(rng)
        for step in range(self.batches):
            due = step == 0 or (self.refresh_every is not None and step % self.refresh_every == 0)
            if self.embed_rows is not None and due and self.share > 0:
                self._refresh_from_model(self.epoch, step)
            if self.share >= 1 or (self.share > 0 and rng.random() < self.share):
                if self.assignment is None:
                    raise RuntimeError("no clusters yet: pass embed_rows or call refresh() first")
                groups, clusters = self.cluster_groups(rng)
            else:
                groups, clusters = next(draw), ()
            yield self.images_of(groups, rng), clusters

    def __iter__(self) -> Iterator[list[int]]:
        for batch, _ in self.batches_with_clusters():
            yield batch
