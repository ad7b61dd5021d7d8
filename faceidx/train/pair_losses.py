"""Pair losses beside the triplet loss: contrastive, and the Siamese head's same / not-same.

    loss = ContrastiveLoss(margin=1.0)            # miner: every pair of the batch
    loss = SiameseLoss(SiameseHead(128, "chi2"))  # binary cross-entropy through the head
    out = loss(embeddings (n, D), labels (n,))    # -> Reduced (loss, active, candidates)

Contrastive (Hadsell, Chopra, LeCun 2006), d = |f(x_i) - f(x_j)| on L2-normalised f:

    same:      d^2                   different:  max(0, margin - d)^2

averaged over the pairs with a positive loss (MeanNonZeroReducer: impostors already
beyond the margin do not dilute the mean). Siamese: BCE-with-logits of the head on each
pair, genuine and impostor means averaged (BalancedMeanReducer); its active pairs are
those the head gets wrong. Both reuse the triplet losses' contract: non-finite
embeddings give a NaN loss, never a silent 0.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F

from faceidx.train.heads import SiameseHead
from faceidx.train.reducers import BalancedMeanReducer, MeanNonZeroReducer, Reduced


@dataclass(frozen=True)
class Pairs:
    """Mined pairs: index tensors `a`, `b` (int64) and `same` (bool), all of one length."""

    a: torch.Tensor
    b: torch.Tensor
    same: torch.Tensor

    def __len__(self) -> int:
        return int(self.a.numel())


class PairMiner:
    """Base pair miner: `miner(embeddings (n, D), labels (n,)) -> Pairs`; subclasses `_mine`."""

    name = "base"

    def __call__(self, embeddings: torch.Tensor, labels: torch.Tensor) -> Pairs:
        if embeddings.ndim != 2:
            raise ValueError(f"embeddings must be (n, D), got shape {tuple(embeddings.shape)}")
        if labels.ndim != 1 or labels.numel() != embeddings.shape[0]:
            raise ValueError(f"labels must be ({embeddings.shape[0]},), got shape {tuple(labels.shape)}")
        with torch.no_grad():
            x = F.normalize(embeddings.detach().float(), dim=1)
            return self._mine(x, labels.to(embeddings.device))

    def _mine(self, x: torch.Tensor, labels: torch.Tensor) -> Pairs:
        raise NotImplementedError


class AllPairsMiner(PairMiner):
    """Every unordered pair i < j of the batch: P K (P K - 1) / 2 pairs."""

    name = "all-pairs"

    def _mine(self, x: torch.Tensor, labels: torch.Tensor) -> Pairs:
        a, b = torch.triu_indices(len(labels), len(labels), offset=1, device=labels.device)
        return Pairs(a, b, labels[a] == labels[b])


class PairLoss(torch.nn.Module):
    """Base: `loss(embeddings (n, D), labels (n,)) -> Reduced`; subclasses implement `_loss`.

    Non-finite embeddings give a NaN loss (compared, NaN would hide from every miner);
    otherwise the miner's pairs go to `_loss(embeddings, pairs)`.
    """

    def __init__(self, miner: PairMiner | None = None):
        super().__init__()
        self.miner = miner if miner is not None else AllPairsMiner()

    def forward(self, embeddings: torch.Tensor, labels: torch.Tensor) -> Reduced:
        if not bool(torch.isfinite(embeddings.detach()).all()):
            return Reduced(torch.full((), float("nan"), device=embeddings.device), 0, 0)
        return self._loss(embeddings, self.miner(embeddings, labels))

    def _loss(self, embeddings: torch.Tensor, pairs: Pairs) -> Reduced:
        raise NotImplementedError


def contrastive_losses(embeddings: torch.Tensor, pairs: Pairs, margin: float) -> torch.Tensor:
    """Per-pair contrastive losses (m,) over `embeddings` (n, D), normalised here."""
    x = F.normalize(embeddings, dim=1)
    d2 = ((x[pairs.a] - x[pairs.b]) ** 2).sum(dim=1)
    # sqrt's gradient is infinite at 0: a genuine pair's loss is d^2 itself, no sqrt needed
    d = (d2 + 1e-12).sqrt()
    return torch.where(pairs.same, d2, torch.relu(margin - d) ** 2)


class ContrastiveLoss(PairLoss):
    """`loss(embeddings, labels) -> Reduced`: mine pairs, contrastive loss, mean over active."""

    def __init__(self, margin: float = 1.0, miner: PairMiner | None = None,
                 reducer: MeanNonZeroReducer | None = None):
        super().__init__(miner)
        if not 0 < margin <= 2:
            raise ValueError(f"margin must be in (0, 2] (distances of unit vectors), got {margin}")
        self.margin = float(margin)
        self.reducer = reducer if reducer is not None else MeanNonZeroReducer()

    def _loss(self, embeddings: torch.Tensor, pairs: Pairs) -> Reduced:
        return self.reducer(contrastive_losses(embeddings, pairs, self.margin), len(pairs))


class SiameseLoss(PairLoss):
    """`loss(embeddings, labels) -> Reduced`: BCE of `head` on mined pairs, balanced.

    The head is a submodule: its parameters train with the network's.
    """

    def __init__(self, head: SiameseHead, miner: PairMiner | None = None,
                 reducer: BalancedMeanReducer | None = None):
        super().__init__(miner)
        self.head = head
        self.reducer = reducer if reducer is not None else BalancedMeanReducer()

    def _loss(self, embeddings: torch.Tensor, pairs: Pairs) -> Reduced:
        x = F.normalize(embeddings, dim=1)
        logits = self.head(x[pairs.a], x[pairs.b])
        target = pairs.same.to(logits.dtype)
        losses = F.binary_cross_entropy_with_logits(logits, target, reduction="none")
        wrong = int(((logits.detach() > 0) != pairs.same).sum())
        return self.reducer(losses, pairs.same, wrong)
