"""The synthetic face model: targets measured on real faces, and parameters solved from them.

A raw synthetic embedding of image j of identity k is

    x = mu + c_k + s_j * e_j,        c_k ~ N(0, rho V Lambda),  e_j ~ N(0, (1 - rho) V Lambda)

in a fixed random orthonormal basis U (Lambda diagonal, trace 1, in that basis), with a
per-image scale s_j = exp(sigma g - sigma^2), g ~ N(0, 1) (lognormal, E[s^2] = 1): most
images sit close to their identity's centre, a heavy tail of "hard" images (pose, blur)
far from it. Stored vectors are x / |x|.

Every parameter is solved from :class:`FaceTargets` (statistics of the pretrained 128-D
dlib model on LFW), not chosen by hand:

- the eigen-spectrum shape  lambda(u) = u^-alpha exp(-(u / tau)^beta),  u = (i + 1/2) / D,
  from three targets: the first principal direction's share, the share of the top D/2
  directions, and the different-person cosine spread, which for centred Gaussian vectors
  is the root of sum_i m_i^2 with m_i = E[x_i^2 / |x|^2] (computed exactly by a 1-D
  integral). The shape is a function of the relative index u, so another D keeps the same
  profile: half the directions hold 97% of the variance at every D.
- rho (identity share) and sigma (noise tail) from the same-person cosine mean and spread,
  on a fixed-seed Monte Carlo of pairs reduced to six dot products per pair, so each
  evaluation costs O(pairs) and nested bisection is cheap.
- V (total centred variance) from the average raw norm, given |mu|.

The basis U and the direction of mu depend only on D and the generator version (not on the
user's seed), so collections with different seeds live in the same embedding space, like two
photo sets embedded by one model; the seed chooses the people and their photos.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

GENERATOR_VERSION = "1.0"
MODEL_NAME = "synthetic-face-v1"
SPACE_SEED = 0x5EEDFACE  # with D, fixes the basis U and mu's direction for this version


@dataclass(frozen=True)
class FaceTargets:
    """Statistics of raw dlib-resnet 128-D embeddings on LFW (centred cosines)."""

    mean_norm: float = 1.31  # |mean vector|
    avg_norm: float = 1.43  # average |x|
    same_cos: float = 0.69  # same-person cosine after centering: mean
    same_cos_std: float = 0.13  # ... and standard deviation
    diff_cos_std: float = 0.17  # different-person cosine after centering (mean 0)
    pc1_share: float = 0.10  # variance share of the first principal direction
    top_half_share: float = 0.97  # share of the top 64 of 128 directions
    reference_dim: int = 128  # D at which the spectrum targets hold exactly


@dataclass(frozen=True)
class SynthModel:
    """Solved parameters plus the fixed space (basis and mean) for one D."""

    dim: int
    spectrum: np.ndarray  # (D,) float64, sums to 1, descending
    alpha: float
    tau: float
    beta: float
    rho: float
    sigma: float
    total_var: float
    basis: np.ndarray  # (D, D) float32, orthonormal columns (principal directions)
    mean: np.ndarray  # (D,) float32, the common offset mu
    targets: FaceTargets

    @property
    def centre_scale(self) -> np.ndarray:
        """Per-direction std of identity centres, float32 (D,)."""
        return np.sqrt(self.rho * self.total_var * self.spectrum).astype(np.float32)

    @property
    def noise_scale(self) -> np.ndarray:
        """Per-direction std of per-image noise before the image's scale s, float32 (D,)."""
        return np.sqrt((1 - self.rho) * self.total_var * self.spectrum).astype(np.float32)

    def describe(self) -> dict:
        return {
            "dim": self.dim, "alpha": self.alpha, "tau": self.tau, "beta": self.beta,
            "rho": self.rho, "sigma": self.sigma, "total_var": self.total_var,
            "mean_norm": float(np.linalg.norm(self.mean)),
            "generator_version": GENERATOR_VERSION,
        }


def build_model(dim: int = 128, targets: FaceTargets | None = None) -> SynthModel:
    """Solve every parameter for `dim` from `targets` (default: dlib on LFW). ~0.1 s."""
    if dim < 2:
        raise ValueError(f"dim must be at least 2, got {dim}")
    t = targets or FaceTargets()
    alpha, tau, beta = solve_spectrum(t.pc1_share, t.top_half_share, t.diff_cos_std,
                                      t.reference_dim)
    lam = spectrum(alpha, tau, beta, dim)
    space = np.random.default_rng([SPACE_SEED, dim])
    q, r = np.linalg.qr(space.standard_normal((dim, dim)))
    basis = q * np.sign(np.diag(r))  # a Haar-random orthonormal basis
    mean_dir = space.standard_normal(dim)
    mean_dir /= np.linalg.norm(mean_dir)
    pairs = _PairMoments(lam, basis.T @ mean_dir, n=20_000, seed=1)
    rho, sigma = pairs.solve_noise(t.same_cos, t.same_cos_std)
    total_var = _round(pairs.solve_total_var(rho, sigma, t.mean_norm, t.avg_norm))
    return SynthModel(
        dim=dim, spectrum=lam, alpha=alpha, tau=tau, beta=beta, rho=rho, sigma=sigma,
        total_var=total_var, basis=basis.astype(np.float32),
        mean=(t.mean_norm * mean_dir).astype(np.float32), targets=t,
    )


# -- the spectrum -------------------------------------------------------------------------


def spectrum(alpha: float, tau: float, beta: float, dim: int) -> np.ndarray:
    """lambda_i proportional to u^-alpha exp(-(u/tau)^beta), u = (i+1/2)/D; sums to 1."""
    u = (np.arange(dim) + 0.5) / dim
    log_lam = -alpha * np.log(u) - (u / tau) ** beta
    lam = np.exp(log_lam - log_lam.max())
    return lam / lam.sum()


def angular_second_moments(lam: np.ndarray) -> np.ndarray:
    """m_i = E[x_i^2 / |x|^2] for x ~ N(0, diag(lam)), by the exact 1-D integral.

    1/Q = int_0^inf exp(-tQ) dt gives m_i = int lam_i / (1 + 2 t lam_i)
    prod_j (1 + 2 t lam_j)^(-1/2) dt, integrated over log t. The cosine of two independent
    such vectors has mean 0 and variance sum_i m_i^2.
    """
    lam = np.asarray(lam, dtype=np.float64)
    lam = lam / lam.sum()
    log_t = np.linspace(-30.0, 40.0, 3501)  # wide enough for D = 2's 1/t tail
    t = np.exp(log_t)[:, None]
    one = 1.0 + 2.0 * t * lam[None, :]
    log_prod = -0.5 * np.log(one).sum(axis=1, keepdims=True)
    integrand = lam[None, :] / one * np.exp(log_prod) * t  # dt = t d(log t)
    return np.trapezoid(integrand, log_t, axis=0)


def diff_cos_std(lam: np.ndarray) -> float:
    """Std of the cosine between two independent N(0, diag(lam)) vectors."""
    return float(np.sqrt(np.sum(angular_second_moments(lam) ** 2)))


def solve_spectrum(pc1: float, top_half: float, cos_std: float, dim: int = 128
                   ) -> tuple[float, float, float]:
    """(alpha, tau, beta) whose spectrum at `dim` has these three statistics.

    Nested bisection: tau for the top-half share, alpha for the first share, beta for the
    different-person cosine spread (a sharper cut-off spreads variance over more directions
    and lowers it). Targets out of reach give the nearest end of the search range.
    """
    half = dim // 2

    def tau_for(alpha: float, beta: float) -> float:
        # a later cut-off (larger tau) moves variance into the bottom half
        return _bisect(lambda tau: spectrum(alpha, tau, beta, dim)[:half].sum() - top_half,
                       0.02, 10.0, increasing=False)

    def alpha_for(beta: float) -> float:
        return _bisect(lambda a: spectrum(a, tau_for(a, beta), beta, dim)[0] - pc1,
                       0.0, 3.0, increasing=True)

    def cos_gap(beta: float) -> float:
        a = alpha_for(beta)
        return diff_cos_std(spectrum(a, tau_for(a, beta), beta, dim)) - cos_std

    beta = _round(_bisect(cos_gap, 0.5, 12.0, increasing=False))
    alpha = _round(alpha_for(beta))
    tau = _round(tau_for(alpha, beta))
    return alpha, tau, beta


# -- noise: identity share and heavy tail ---------------------------------------------------


class _PairMoments:
    """Fixed-seed same-person pairs in the eigenbasis, reduced to their dot products.

    With c ~ N(0, Lambda) (identity) and e1, e2 ~ N(0, Lambda) (two images' noise), the
    centred vectors are d_k = sqrt(rho) c + sqrt(1 - rho) s_k e_k; their cosine needs only
    c.c, c.e_k, e_k.e_k and e1.e2, so any (rho, sigma) is evaluated in O(pairs).
    """

    def __init__(self, lam: np.ndarray, mean_dir: np.ndarray, n: int, seed: int):
        rng = np.random.default_rng(seed)
        sd = np.sqrt(lam)
        parts = []
        for rows in np.diff(np.linspace(0, n, 5).astype(int)):  # slices bound the memory
            c, e1, e2 = (rng.standard_normal((rows, lam.size)) * sd for _ in range(3))
            parts.append([np.einsum("ij,ij->i", a, b) for a, b in
                          ((c, c), (c, e1), (c, e2), (e1, e1), (e2, e2), (e1, e2))]
                         + [c @ mean_dir, e1 @ mean_dir])
        (self.cc, self.ce1, self.ce2, self.e11, self.e22, self.e12,
         self.c_mu, self.e1_mu) = (np.concatenate(col) for col in zip(*parts, strict=True))
        self.g1, self.g2 = rng.standard_normal(n), rng.standard_normal(n)

    def same_cos(self, rho: float, sigma: float) -> np.ndarray:
        r, q = math.sqrt(rho), math.sqrt(1 - rho)
        s1 = np.exp(sigma * self.g1 - sigma**2)
        s2 = np.exp(sigma * self.g2 - sigma**2)
        dot = r * r * self.cc + r * q * (s1 * self.ce1 + s2 * self.ce2) + q * q * s1 * s2 * self.e12
        n1 = r * r * self.cc + 2 * r * q * s1 * self.ce1 + q * q * s1 * s1 * self.e11
        n2 = r * r * self.cc + 2 * r * q * s2 * self.ce2 + q * q * s2 * s2 * self.e22
        return dot / np.sqrt(n1 * n2)

    def solve_noise(self, mean: float, std: float) -> tuple[float, float]:
        """(rho, sigma) giving this same-person cosine mean and std (sigma >= 0).

        A heavier tail (larger sigma) widens the spread and, at fixed rho, raises the mean
        (most images get s < 1), so rho is re-solved inside the search over sigma.
        """
        def rho_for(sigma: float) -> float:
            return _bisect(lambda rho: self.same_cos(rho, sigma).mean() - mean,
                           0.001, 0.999, increasing=True)

        sigma = _round(_bisect(lambda s: self.same_cos(rho_for(s), s).std() - std,
                               0.0, 1.5, increasing=True))
        return _round(rho_for(sigma)), sigma

    def solve_total_var(self, rho: float, sigma: float, mean_norm: float, avg_norm: float
                        ) -> float:
        """V so that the average |mu + d| is `avg_norm`."""
        r, q = math.sqrt(rho), math.sqrt(1 - rho)
        s = np.exp(sigma * self.g1 - sigma**2)
        md = r * self.c_mu + q * s * self.e1_mu
        dd = r * r * self.cc + 2 * r * q * s * self.ce1 + q * q * s * s * self.e11

        def avg(v: float) -> float:
            return float(np.sqrt(mean_norm**2 + 2 * mean_norm * math.sqrt(v) * md + v * dd).mean())

        if avg_norm <= mean_norm:
            raise ValueError(f"avg_norm {avg_norm} must exceed mean_norm {mean_norm}")
        return _bisect(lambda v: avg(v) - avg_norm, 0.0, 4 * avg_norm**2, increasing=True)


# -- helpers ----------------------------------------------------------------------------------


def _bisect(f, lo: float, hi: float, increasing: bool, iters: int = 60,
            xtol: float = 1e-9) -> float:
    """Root of a monotone f on [lo, hi]; the nearer end when the sign does not change.

    Illinois false position: bracketing like bisection (never leaves [lo, hi]) but
    superlinear, so nested solves stay cheap.
    """
    sign = 1.0 if increasing else -1.0
    flo, fhi = sign * f(lo), sign * f(hi)
    if flo >= 0:
        return lo
    if fhi <= 0:
        return hi
    side = 0
    for _ in range(iters):
        mid = (lo * fhi - hi * flo) / (fhi - flo)
        fmid = sign * f(mid)
        if fmid == 0 or hi - lo < xtol * max(1.0, abs(mid)):
            return mid
        if fmid < 0:
            lo, flo = mid, fmid
            if side == -1:
                fhi *= 0.5
            side = -1
        else:
            hi, fhi = mid, fmid
            if side == 1:
                flo *= 0.5
            side = 1
    return mid


def _round(x: float) -> float:
    """Solved parameters are rounded to 5 significant digits so that last-bit differences
    between BLAS builds cannot change the generated vectors."""
    return float(f"{x:.5g}")
