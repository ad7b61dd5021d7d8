"""What a run optimises and how its batches are drawn, from the names the CLI takes.

    loss_fn = make_loss("siamese", dim=128, siamese_distance="chi2")
    sampler = make_sampler("cluster", labels, p=8, k=4, embed_rows=embed)

Every loss maps (embeddings (n, D), labels (n,)) to a `Reduced` (loss, active,
candidates), so the loop treats them alike; a loss with parameters (the Siamese head)
trains them with the network and is saved beside it.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch

from faceidx.train.heads import SiameseHead
from faceidx.train.losses import TripletMarginLoss
from faceidx.train.miners import make_miner
from faceidx.train.pair_losses import ContrastiveLoss, SiameseLoss
from faceidx.train.sampler import PKSampler
from faceidx.train.sampler_cluster import ClusterPKSampler, EmbedRows

LOSSES = ("triplet", "contrastive", "siamese")
SAMPLERS = ("random", "cluster")
DEFAULT_MARGIN = {"triplet": 0.2, "contrastive": 1.0}


def default_margin(loss: str) -> float | None:
    """The margin a loss uses when none is given (None: the loss has no margin)."""
    return DEFAULT_MARGIN.get(loss)


def make_loss(loss: str, dim: int, mining: str = "batch-all", margin: float | None = None,
              siamese_distance: str = "abs") -> torch.nn.Module:
    """The loss module for `loss` ('triplet', 'contrastive', 'siamese')."""
    if loss not in LOSSES:
        raise ValueError(f"unknown loss {loss!r}; expected one of {', '.join(LOSSES)}")
    m = margin if margin is not None else default_margin(loss)
    if loss == "triplet":
        return TripletMarginLoss(m, make_miner(mining, m))
    if loss == "contrastive":
        return ContrastiveLoss(m)
    return SiameseLoss(SiameseHead(dim, siamese_distance))


def make_sampler(kind: str, labels: Sequence, p: int, k: int, seed: int = 0, small: str = "replace",
                 batches: int | None = None, clusters: int | None = None, share: float = 0.5,
                 refresh_every: int | None = None, refresh_images: int = 2,
                 embed_rows: EmbedRows | None = None) -> PKSampler:
    """A random P x K sampler, or the cluster-aware one (BatchSizeError when P x K cannot be met)."""
    if kind not in SAMPLERS:
        raise ValueError(f"unknown sampler {kind!r}; expected one of {', '.join(SAMPLERS)}")
    if kind == "random":
        return PKSampler(labels, p, k, seed=seed, small=small, batches=batches)
    return ClusterPKSampler(labels, p, k, seed=seed, small=small, batches=batches, clusters=clusters,
                            share=share, refresh_every=refresh_every, refresh_images=refresh_images,
                            embed_rows=embed_rows)
