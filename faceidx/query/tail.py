"""How open-set false positives grow with the gallery: a fitted impostor tail.

The model. A non-mated search (the probe's person is not enrolled) compares the probe
with N enrolled identities; identity n scores s_n = the best cosine of its faces. The
search is a false positive at threshold t when max_n s_n >= t. If each identity exceeds
t independently with probability p(t), then

    FPIR_N(t) = 1 - (1 - p(t))^N  ~=  1 - exp(-lambda_N(t)),   lambda_N(t) = N p(t)

where lambda_N(t) is the expected number of enrolled identities scoring >= t per search.
Growing the gallery to N' identities (of the same population) scales lambda by N'/N:

    FPIR_N'(t) = 1 - exp(-(N'/N) lambda_N(t))

lambda_N(t) is measured directly from the candidate lists of non-mated searches (each
list holds that search's top-K impostor identities, so every exceedance of a level u
is observed as long as u is above the K-th score). Above a high level u the per-search
exceedances are fitted with an exponential tail (the generalised Pareto with shape 0):

    lambda_N(t) = lambda_N(u) * exp(-(t - u) / sigma),  sigma = mean(s - u | s > u)  (MLE)

Cosine scores are bounded by 1, so the true tail is lighter than exponential: the
extrapolated FPIR at 10x and 100x N is an upper estimate (conservative), and the
threshold it asks for at N' is a little higher than strictly needed. Solving the model
for a target FPIR f gives the threshold the bigger gallery needs:

    t_N'(f) = u + sigma * ln((N'/N) lambda_N(u) / -ln(1 - f))
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import asdict, dataclass

import numpy as np

MIN_EXCEEDANCES = 20


@dataclass(frozen=True)
class ImpostorTail:
    """Fitted lambda_N(t) for t >= u (see the module docstring)."""

    n_identities: int   # N, the gallery the searches ran against
    searches: int       # non-mated searches behind the fit
    u: float            # tail level
    rate_u: float       # lambda_N(u): mean exceedances of u per search
    sigma: float        # exponential scale of the excess over u
    exceedances: int

    def expected_matches(self, t: float, n_identities: int | None = None) -> float:
        """lambda_{N'}(t): expected enrolled identities scoring >= t, gallery of N'."""
        scale = (n_identities or self.n_identities) / self.n_identities
        return scale * self.rate_u * math.exp(-(t - self.u) / self.sigma)

    def fpir(self, t: float, n_identities: int | None = None) -> float:
        """Modelled FPIR at threshold t for a gallery of n_identities (default N)."""
        return -math.expm1(-self.expected_matches(t, n_identities))

    def threshold_for(self, fpir: float, n_identities: int | None = None) -> float:
        """The threshold giving FPIR `fpir` for a gallery of n_identities (default N).

        Capped at 1.0 (the top of the cosine range): 1.0 means no threshold can.
        """
        scale = (n_identities or self.n_identities) / self.n_identities
        need = -math.log1p(-fpir)
        return min(1.0, self.u + self.sigma * math.log(scale * self.rate_u / need))

    def to_json(self) -> dict:
        return asdict(self)


def fit_impostor_tail(impostor_lists: Sequence[np.ndarray], n_identities: int,
                      level_rate: float = 0.5, complete_quantile: float = 0.9
                      ) -> ImpostorTail | None:
    """Fit the tail from non-mated candidate lists (one array of identity scores each).

    The level u is where lambda_N(u) ~= `level_rate` exceedances per search (the region
    just below where thresholds for FPIR of 1e-1..1e-3 lie), raised if needed to the
    `complete_quantile` quantile of the lists' last (K-th) scores so that in most
    searches every identity above u was listed. Returns None when fewer than
    MIN_EXCEEDANCES scores lie above u (too few searches to fit).
    """
    lists = [np.asarray(x, dtype=np.float64) for x in impostor_lists if len(x)]
    if not lists:
        return None
    pooled = np.sort(np.concatenate(lists))[::-1]
    m = max(MIN_EXCEEDANCES, int(level_rate * len(lists)))
    if m >= len(pooled):
        return None
    last = np.array([x.min() for x in lists])
    u = max(float(pooled[m]), float(np.quantile(last, complete_quantile)))
    above = pooled[pooled > u] - u
    if len(above) < MIN_EXCEEDANCES:
        return None
    sigma = float(above.mean())
    if sigma <= 0:
        return None
    return ImpostorTail(n_identities=int(n_identities), searches=len(lists), u=u,
                        rate_u=len(above) / len(lists), sigma=sigma, exceedances=len(above))


def growth_table(tail: ImpostorTail, threshold: float, target_fpir: float,
                 factors: Sequence[int] = (1, 10, 100)) -> list[dict]:
    """For each gallery growth factor: modelled FPIR at `threshold`, and the threshold
    that would keep FPIR at `target_fpir`."""
    rows = []
    for f in factors:
        n = tail.n_identities * f
        rows.append({"factor": f, "identities": n,
                     "fpir_at_threshold": tail.fpir(threshold, n),
                     "threshold_for_target": tail.threshold_for(target_fpir, n)})
    return rows
