"""Images per identity: a long tail like LFW's, with a chosen mean.

LFW has 13,233 images of 5,749 people: mean 2.3, 71% of people with one image, and a
tail up to 530 (George W Bush). A "rich get richer" law fits that shape: the Yule-Simon
distribution, P(n >= k) = Gamma(k) Gamma(r + 1) / Gamma(k + r), whose tail falls like
k^-r. It is clipped at CAP_RATIO times the mean (LFW: 530 / 2.3 = 230), and r is solved
so that the *clipped* mean is exactly the requested mean; for mean 2.3 that gives
P(n = 1) = r / (r + 1) of about 0.62, close to LFW's 0.71.

Sampling uses the mixture form: n | w ~ Geometric(exp(-w)), w ~ Exponential(rate r).
"""

from __future__ import annotations

import math

import numpy as np

LFW_MEAN, LFW_MAX = 13_233 / 5_749, 530
CAP_RATIO = LFW_MAX / LFW_MEAN


def count_cap(mean: float) -> int:
    """Largest number of images one identity gets for this mean."""
    return max(1, math.ceil(CAP_RATIO * mean))


def clipped_mean(r: float, cap: int) -> float:
    """E[min(n, cap)] for Yule-Simon(r): the sum of P(n >= k) for k = 1..cap."""
    k = np.arange(1, cap, dtype=np.float64)
    survival = np.concatenate([[1.0], np.cumprod(k / (k + r))])  # P(n >= k+1) / P(n >= k)
    return float(survival.sum())


def solve_shape(mean: float) -> float:
    """Yule-Simon r whose mean, clipped at count_cap(mean), equals `mean` (inf for mean 1)."""
    if mean < 1:
        raise ValueError(f"mean images per identity must be at least 1, got {mean}")
    if mean == 1:
        return math.inf
    cap = count_cap(mean)
    lo, hi = 1e-3, 1.0
    while clipped_mean(hi, cap) > mean:  # the mean falls as r grows
        lo, hi = hi, hi * 2
    for _ in range(60):
        mid = 0.5 * (lo + hi)
        if clipped_mean(mid, cap) > mean:
            lo = mid
        else:
            hi = mid
    return 0.5 * (lo + hi)


def draw_counts(rng: np.random.Generator, n: int, mean: float, shape: float | None = None,
                fixed: bool = False) -> np.ndarray:
    """Images for each of `n` identities, int64 >= 1.

    fixed=True gives every identity round(mean) images; otherwise the clipped Yule-Simon
    law above (pass `shape` from solve_shape(mean) to avoid re-solving per call).
    """
    if fixed or mean == 1:
        return np.full(n, max(1, round(mean)), dtype=np.int64)
    r = solve_shape(mean) if shape is None else shape
    w = rng.exponential(1.0 / r, size=n)
    p = np.maximum(np.exp(-w), 1e-12)
    return np.minimum(rng.geometric(p), count_cap(mean)).astype(np.int64)
