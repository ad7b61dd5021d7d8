"""Cohort score normalisation for open-set decisions (adaptive symmetric normalisation).

    cohort = Cohort(impostor_vectors, top_k=100)         # faces of nobody enrolled
    p_mu, p_sd = cohort.stats(probe_vectors)              # per probe
    g_mu, g_sd = cohort.stats(gallery_vectors)            # per gallery face (store once)
    z = as_norm(scores, p_mu[:, None], p_sd[:, None], g_mu[cand], g_sd[cand])

A raw cosine means different things for different faces: a probe or a gallery face in a
crowded region of the face space scores high against everyone. AS-norm (Matejka et al.
2017; Cumani et al.) centres and scales each score twice, by the statistics of the
probe's and of the gallery face's `top_k` highest scores against a cohort of impostor
faces, and averages the two:

    z = ((s - mu_probe) / sd_probe + (s - mu_gallery) / sd_gallery) / 2

The cohort must hold no enrolled person (and, when calibrating, no holdout person that
is scored against it). Normalised scores are not cosines: a threshold for them is set
by calibrating on normalised scores (see docs/QUERY.md for the measured effect).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

SD_FLOOR = 1e-4


@dataclass
class Cohort:
    """Unit vectors of impostor faces (n, D) and how many of their top scores to use."""

    vectors: np.ndarray
    top_k: int = 100

    def __post_init__(self) -> None:
        v = np.ascontiguousarray(self.vectors, np.float32)
        if v.ndim != 2 or len(v) < 2:
            raise ValueError(f"a cohort needs at least 2 vectors, got shape {v.shape}")
        if not 1 <= self.top_k <= len(v):
            raise ValueError(f"top_k must be in [1, {len(v)}], got {self.top_k}")
        self.vectors = v

    def stats(self, x: np.ndarray, exclude_self: bool = False, block: int = 4096
              ) -> tuple[np.ndarray, np.ndarray]:
        """(mean, std) of each row's top_k cosine scores against the cohort.

        exclude_self: x is the cohort itself; a row's score with itself is left out.
        """
        x = np.ascontiguousarray(x, np.float32)
        k = self.top_k
        mu = np.empty(len(x), np.float64)
        sd = np.empty(len(x), np.float64)
        for lo in range(0, len(x), block):
            s = x[lo:lo + block] @ self.vectors.T
            if exclude_self:
                rows = np.arange(len(s))
                s[rows, lo + rows] = -np.inf
            top = np.partition(s, s.shape[1] - k, axis=1)[:, -k:].astype(np.float64)
            mu[lo:lo + block] = top.mean(axis=1)
            sd[lo:lo + block] = np.maximum(top.std(axis=1), SD_FLOOR)
        return mu, sd


def as_norm(scores, probe_mu, probe_sd, gallery_mu, gallery_sd) -> np.ndarray:
    """Adaptive symmetric normalisation of raw scores (all arguments broadcast together)."""
    s = np.asarray(scores, np.float64)
    return 0.5 * ((s - probe_mu) / probe_sd + (s - gallery_mu) / gallery_sd)
