"""Reducers: turn per-triplet losses into one scalar and a statistic to log."""

from __future__ import annotations

from dataclasses import dataclass

import torch


@dataclass(frozen=True)
class Reduced:
    """The scalar loss to back-propagate and what to log about it.

    `active` counts triplets with a positive loss; `active_fraction` is `active` over the
    miner's candidate count (0 when there were no candidates).
    """

    loss: torch.Tensor
    active: int
    candidates: int

    @property
    def active_fraction(self) -> float:
        return self.active / self.candidates if self.candidates else 0.0


class MeanNonZeroReducer:
    """Mean over the triplets with a positive loss; easy triplets do not dilute the mean.

    With no active triplet the loss is an exact 0 that still belongs to the graph, so
    `backward()` works and changes nothing.
    """

    def __call__(self, losses: torch.Tensor, candidates: int) -> Reduced:
        if losses.ndim != 1:
            raise ValueError(f"losses must be 1-D, got shape {tuple(losses.shape)}")
        active_mask = losses > 0
        active = int(active_mask.sum())
        if active == 0:
            return Reduced(losses.sum() * 0.0, 0, candidates)
        return Reduced(losses[active_mask].mean(), active, max(candidates, active))


class BalancedMeanReducer:
    """Mean of the genuine pairs' losses and mean of the impostor pairs' losses, averaged.

    A P x K batch has (K - 1) / (P K - 1) genuine pairs per impostor one (3 in 31 for
    8 x 4); without balancing, "always different" would already be a low loss. A batch
    with only one kind uses that kind's mean; no pair at all gives an exact 0 in the graph.
    `active` is given by the caller (for a classifier head: the pairs it gets wrong).
    """

    def __call__(self, losses: torch.Tensor, same: torch.Tensor, active: int) -> Reduced:
        if losses.ndim != 1 or same.shape != losses.shape:
            raise ValueError(f"losses and same must be 1-D of one length, got {tuple(losses.shape)} "
                             f"and {tuple(same.shape)}")
        if losses.numel() == 0:
            return Reduced(losses.sum() * 0.0, 0, 0)
        parts = [losses[mask].mean() for mask in (same, ~same) if bool(mask.any())]
        return Reduced(torch.stack(parts).mean(), active, int(losses.numel()))
