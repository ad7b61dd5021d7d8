"""The FaceNet triplet margin loss on L2-normalised embeddings, composed with a miner and a reducer.

    loss(a, p, n) = max(0, |f(a) - f(p)|^2 - |f(a) - f(n)|^2 + margin)
"""

from __future__ import annotations

import torch

from faceidx.train.miners import TripletMiner, Triplets, make_miner
from faceidx.train.reducers import MeanNonZeroReducer, Reduced


def triplet_losses(embeddings: torch.Tensor, triplets: Triplets, margin: float) -> torch.Tensor:
    """Per-triplet losses (m,) for `triplets` over `embeddings` (n, D), normalised here."""
    x = torch.nn.functional.normalize(embeddings, dim=1)
    a, p, n = x[triplets.anchors], x[triplets.positives], x[triplets.negatives]
    d_ap = ((a - p) ** 2).sum(dim=1)
    d_an = ((a - n) ** 2).sum(dim=1)
    return torch.relu(d_ap - d_an + margin)


class TripletMarginLoss(torch.nn.Module):
    """`loss(embeddings (n, D), labels (n,)) -> Reduced`: mine, score each triplet, reduce.

    The miner defaults to batch-all and the reducer to the mean over active triplets.
    Non-finite embeddings give a NaN loss (for the caller to stop on), never a silent 0.
    """

    def __init__(self, margin: float = 0.2, miner: TripletMiner | None = None,
                 reducer: MeanNonZeroReducer | None = None):
        super().__init__()
        if not margin > 0:
            raise ValueError(f"margin must be > 0, got {margin}")
        self.margin = float(margin)
        self.miner = miner if miner is not None else make_miner("batch-all", margin)
        self.reducer = reducer if reducer is not None else MeanNonZeroReducer()

    def forward(self, embeddings: torch.Tensor, labels: torch.Tensor) -> Reduced:
        if not bool(torch.isfinite(embeddings.detach()).all()):
            # NaN/inf compare false everywhere, so mining would find nothing and hide them
            return Reduced(torch.full((), float("nan"), device=embeddings.device), 0, 0)
        triplets = self.miner(embeddings, labels)
        losses = triplet_losses(embeddings, triplets, self.margin)
        return self.reducer(losses, triplets.candidates)
