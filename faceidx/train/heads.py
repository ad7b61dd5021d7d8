"""The Siamese verification head: one neuron on a per-dimension distance of two embeddings.

    head = SiameseHead(128, distance="abs")
    p_same = torch.sigmoid(head(f_i, f_j))       # f_* L2-normalised (m, 128)

DeepFace's head (Taigman et al. 2014): logit = sum_k w_k d_k(f_i, f_j) + b, with
  - "abs":  d_k = |f_ik - f_jk|
  - "chi2": d_k = (f_ik - f_jk)^2 / (|f_ik| + |f_jk| + eps)
DeepFace's features were non-negative (after a ReLU), where |f_ik| + |f_jk| = f_ik + f_jk
and this is the chi-squared similarity itself; with signed features (ours, on the unit
sphere) the absolute values keep every d_k >= 0 and the denominator away from 0.

The weights start at -4/sqrt(D) and the bias at 2: for D-dimensional unit vectors both
distances sum to about sqrt(D) over random pairs (E|u - v| = 2/sqrt(pi) and
E(u - v)^2/(|u| + |v|) ~ 1 per standard-normal coordinate), so random pairs start near
logit -2 and identical ones at +2, and the head learns from its first step.

The gallery side can be precomputed (its embeddings); the head is symmetric in its
two arguments. It is NOT an inner product, so a trained head scores pairs (1:1) and can
re-rank a short list, but cannot be what an IVF-PQ index searches by (docs/TRAIN.md).
"""

from __future__ import annotations

import math

import torch
from torch import nn

DISTANCES = ("abs", "chi2")


def pair_features(a: torch.Tensor, b: torch.Tensor, distance: str, eps: float = 1e-6) -> torch.Tensor:
    """(m, D) per-dimension distances of rows of `a` and `b` (both (m, D))."""
    if distance == "abs":
        return (a - b).abs()
    if distance == "chi2":
        return (a - b) ** 2 / (a.abs() + b.abs() + eps)
    raise ValueError(f"distance must be one of {DISTANCES}, got {distance!r}")


class SiameseHead(nn.Module):
    """`head(a (m, D), b (m, D)) -> logits (m,)`; sigmoid(logit) is P(same person)."""

    def __init__(self, dim: int, distance: str = "abs", eps: float = 1e-6):
        super().__init__()
        if dim < 1:
            raise ValueError(f"dim must be >= 1, got {dim}")
        if distance not in DISTANCES:
            raise ValueError(f"distance must be one of {DISTANCES}, got {distance!r}")
        self.dim, self.distance, self.eps = dim, distance, eps
        self.weight = nn.Parameter(torch.full((dim,), -4.0 / math.sqrt(dim)))
        self.bias = nn.Parameter(torch.tensor(2.0))

    def forward(self, a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
        if a.shape != b.shape or a.ndim != 2 or a.shape[1] != self.dim:
            raise ValueError(f"head inputs must both be (m, {self.dim}), got {tuple(a.shape)} "
                             f"and {tuple(b.shape)}")
        return pair_features(a, b, self.distance, self.eps) @ self.weight + self.bias

    def score(self, a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
        """P(same) in (0, 1) for each row pair: a 1:1 score (higher means more alike)."""
        return torch.sigmoid(self(a, b))

    def extra_repr(self) -> str:
        return f"dim={self.dim}, distance={self.distance!r}"
