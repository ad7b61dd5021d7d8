"""Online triplet miners: choose (anchor, positive, negative) index triples inside a batch.

A miner sees a batch of embeddings and their identity labels and returns index tensors.
The base class validates shapes, L2-normalises, computes squared distances once (no
gradient) and hands them to one hook, `_mine`, that each strategy implements. The miner
also reports how many candidates it looked at, so a reducer can log the fraction of
candidates that were still active (positive loss).

Distances are squared Euclidean on the unit sphere (0..4), the quantity the FaceNet loss
max(0, |A-P|^2 - |A-N|^2 + margin) uses.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

MINING_STRATEGIES = ("batch-all", "batch-hard", "semi-hard")


@dataclass(frozen=True)
class Triplets:
    """Mined index triples (int64 tensors of equal length) and the candidate count.

    `candidates` is what the active fraction is measured against: every valid triplet
    (batch-all), every anchor with a positive and a negative (batch-hard), every
    anchor-positive pair with a negative (semi-hard).
    """

    anchors: torch.Tensor
    positives: torch.Tensor
    negatives: torch.Tensor
    candidates: int

    def __len__(self) -> int:
        return int(self.anchors.numel())


def squared_distances(x: torch.Tensor) -> torch.Tensor:
    """(n, n) squared Euclidean distances between rows of `x`, clamped at 0."""
    sq = (x * x).sum(dim=1)
    d = sq[:, None] + sq[None, :] - 2.0 * (x @ x.T)
    return d.clamp_min(0.0)


def label_masks(labels: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """(positive, negative) boolean (n, n) masks: same label excluding the diagonal, other label."""
    same = labels[:, None] == labels[None, :]
    eye = torch.eye(labels.numel(), dtype=torch.bool, device=labels.device)
    return same & ~eye, ~same


class TripletMiner:
    """Base miner: `miner(embeddings (n, D), labels (n,)) -> Triplets`.

    Subclasses implement `_mine(dist, labels)` on the (n, n) squared distance matrix of
    the L2-normalised embeddings and return `Triplets`.
    """

    name = "base"

    def __init__(self, margin: float = 0.2):
        if not margin >= 0:
            raise ValueError(f"margin must be >= 0, got {margin}")
        self.margin = float(margin)

    def __call__(self, embeddings: torch.Tensor, labels: torch.Tensor) -> Triplets:
        if embeddings.ndim != 2:
            raise ValueError(f"embeddings must be (n, D), got shape {tuple(embeddings.shape)}")
        if labels.ndim != 1 or labels.numel() != embeddings.shape[0]:
            raise ValueError(f"labels must be ({embeddings.shape[0]},), got shape {tuple(labels.shape)}")
        labels = labels.to(embeddings.device)
        with torch.no_grad():
            x = torch.nn.functional.normalize(embeddings.detach().float(), dim=1)
            out = self._mine(squared_distances(x), labels)
        n = embeddings.shape[0]
        if not (len(out.anchors) == out.positives.numel() == out.negatives.numel()):
            raise AssertionError(f"{self.name} miner returned triples of unequal length")
        if len(out) and (int(out.anchors.max()) >= n or int(out.negatives.max()) >= n):
            raise AssertionError(f"{self.name} miner returned an index outside the batch")
        return out

    def _mine(self, dist: torch.Tensor, labels: torch.Tensor) -> Triplets:
        raise NotImplementedError


def _empty(device: torch.device, candidates: int = 0) -> Triplets:
    e = torch.empty(0, dtype=torch.long, device=device)
    return Triplets(e, e, e, candidates)


class BatchAllMiner(TripletMiner):
    """Every valid triplet (a, p, n) whose loss d(a,p) - d(a,n) + margin is positive."""

    name = "batch-all"

    def _mine(self, dist: torch.Tensor, labels: torch.Tensor) -> Triplets:
        pos, neg = label_masks(labels)
        valid = pos[:, :, None] & neg[:, None, :]  # [a, p, n]
        active = valid & (dist[:, :, None] - dist[:, None, :] + self.margin > 0)
        a, p, n = torch.nonzero(active, as_tuple=True)
        return Triplets(a, p, n, int(valid.sum()))


class BatchHardMiner(TripletMiner):
    """Per anchor: its farthest positive and its closest negative (Hermans et al. 2017).

    Anchors without a positive or without a negative in the batch are skipped. Every
    other anchor gives one triplet, active or not; the reducer counts the active ones.
    """

    name = "batch-hard"

    def _mine(self, dist: torch.Tensor, labels: torch.Tensor) -> Triplets:
        pos, neg = label_masks(labels)
        ok = pos.any(dim=1) & neg.any(dim=1)
        anchors = torch.nonzero(ok, as_tuple=True)[0]
        if anchors.numel() == 0:
            return _empty(dist.device)
        inf = torch.tensor(float("inf"), device=dist.device)
        hardest_pos = torch.where(pos, dist, -inf).argmax(dim=1)
        hardest_neg = torch.where(neg, dist, inf).argmin(dim=1)
        return Triplets(anchors, hardest_pos[anchors], hardest_neg[anchors], int(anchors.numel()))


class SemiHardMiner(TripletMiner):
    """FaceNet's semi-hard negatives (Schroff et al. 2015).

    For each anchor-positive pair, among the negatives farther than the positive but
    within the margin, d(a,p) < d(a,n) < d(a,p) + margin, the closest one. Pairs with no
    such negative give no triplet (their loss would be 0 or come from a hard negative).
    """

    name = "semi-hard"

    def _mine(self, dist: torch.Tensor, labels: torch.Tensor) -> Triplets:
        pos, neg = label_masks(labels)
        pairs = pos & neg.any(dim=1, keepdim=True)
        a, p = torch.nonzero(pairs, as_tuple=True)
        if a.numel() == 0:
            return _empty(dist.device)
        d_ap = dist[a, p][:, None]  # (m, 1)
        d_an = dist[a]  # (m, n)
        semi = neg[a] & (d_an > d_ap) & (d_an < d_ap + self.margin)
        masked = torch.where(semi, d_an, torch.tensor(float("inf"), device=dist.device))
        best = masked.argmin(dim=1)
        keep = semi.any(dim=1)
        return Triplets(a[keep], p[keep], best[keep], int(a.numel()))


def make_miner(strategy: str, margin: float) -> TripletMiner:
    """The miner for `strategy` ('batch-all', 'batch-hard', 'semi-hard')."""
    miners = {"batch-all": BatchAllMiner, "batch-hard": BatchHardMiner, "semi-hard": SemiHardMiner}
    if strategy not in miners:
        raise ValueError(f"unknown mining strategy {strategy!r}; expected one of {', '.join(miners)}")
    return miners[strategy](margin=margin)
