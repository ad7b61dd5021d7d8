"""P identities x K images batch sampler for online triplet mining.

Every batch holds exactly P distinct identities with K images each (P*K indices), so each
anchor has K-1 positives and (P-1)*K negatives. Identities with fewer than K images (but at
least 2) are either sampled with replacement (`small="replace"`) or left out
(`small="skip"`). Identities with a single image can give no positive and are never drawn.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence

import numpy as np

SMALL_POLICIES = ("replace", "skip")


class BatchSizeError(ValueError):
    """P x K asks for more identities than the data has."""


def group_by_label(labels: Sequence) -> dict:
    """{label: int64 array of the indices holding it}, in first-seen order."""
    groups: dict = {}
    for i, lab in enumerate(labels):
        groups.setdefault(lab, []).append(i)
    return {lab: np.asarray(idx, dtype=np.int64) for lab, idx in groups.items()}


class PKSampler:
    """Yields lists of P*K dataset indices; `len()` batches per epoch, seeded per epoch.

    An epoch has `batches` batches (default: enough to show each eligible image about
    once, at least 1). Identities are drawn without replacement from a shuffled order that
    is reshuffled when used up; inside an identity, images are drawn without replacement
    when it has K or more, otherwise all of its images plus random repeats.
    """

    def __init__(self, labels: Sequence, p: int, k: int, seed: int = 0, small: str = "replace",
                 batches: int | None = None):
        if p < 2:
            raise BatchSizeError(f"P must be >= 2 identities per batch (negatives need another identity), got {p}")
        if k < 2:
            raise BatchSizeError(f"K must be >= 2 images per identity (positives need a pair), got {k}")
        if small not in SMALL_POLICIES:
            raise ValueError(f"small must be one of {SMALL_POLICIES}, got {small!r}")
        minimum = k if small == "skip" else 2
        groups = group_by_label(labels)
        self.groups = [idx for idx in groups.values() if idx.size >= minimum]
        if len(self.groups) < p:
            raise BatchSizeError(
                f"P x K = {p} x {k} needs {p} identities with >= {minimum} images, "
                f"the data has {len(self.groups)}")
        self.p, self.k, self.seed = p, k, seed
        eligible = sum(idx.size for idx in self.groups)
        self.batches = batches if batches is not None else max(1, eligible // (p * k))
        self.epoch = 0

    def set_epoch(self, epoch: int) -> None:
        """Choose the epoch whose (seeded) batches the next iteration yields."""
        self.epoch = epoch

    def __len__(self) -> int:
        return self.batches

    def __iter__(self) -> Iterator[list[int]]:
        rng = np.random.default_rng([self.seed, self.epoch])
        draw = self.random_identities(rng)
        for _ in range(self.batches):
            yield self.images_of(next(draw), rng)

    def random_identities(self, rng: np.random.Generator) -> Iterator[np.ndarray]:
        """Endless P-sized draws of group numbers: a shuffled order, reshuffled when used up."""
        order = rng.permutation(len(self.groups))
        pos = 0
        while True:
            if pos + self.p > order.size:
                rest = order[pos:]
                fresh = rng.permutation(np.setdiff1d(np.arange(len(self.groups)), rest))
                order, pos = np.concatenate([rest, fresh]), 0
            yield order[pos:pos + self.p]
            pos += self.p

    def images_of(self, chosen: np.ndarray, rng: np.random.Generator) -> list[int]:
        """K dataset indices for each group number in `chosen`, concatenated."""
        batch: list[int] = []
        for g in chosen:
            idx = self.groups[g]
            if idx.size >= self.k:
                pick = rng.choice(idx, size=self.k, replace=False)
            else:
                extra = rng.choice(idx, size=self.k - idx.size, replace=True)
                pick = np.concatenate([rng.permutation(idx), extra])
            batch.extend(int(i) for i in pick)
        return batch
