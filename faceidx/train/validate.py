"""Per-epoch evaluation on held-out identities: 10-fold accuracy, TAR@FAR=1e-3, TPIR@FPIR=1%.

Pairs (faceidx.train.evaluate.verification_pairs) and the open-set split are drawn once
(seeded) and fixed for the whole run, so epochs are compared on the same pairs. The LFW
protocol (10 identity-disjoint folds of 300 genuine + 300 impostor pairs) is used when the
held-out set can supply it; a smaller set gets one pool of as many distinct pairs as it
allows (both kinds equally many), split into 10 shuffled folds for the threshold choice.
"""

from __future__ import annotations

import logging
from collections.abc import Callable

import numpy as np
import torch

from faceidx.errors import DataError
from faceidx.train.data import ChipSet
from faceidx.train.evaluate import (
    cosine_scores,
    openset,
    openset_split,
    verification,
    verification_pairs,
)

log = logging.getLogger(__name__)

CHUNK = 256
FPIR = 0.01


def embed_chips(net: torch.nn.Module, chips: ChipSet, batch_size: int = 64,
                rows: np.ndarray | None = None) -> np.ndarray:
    """L2-normalised float32 (N, D) embeddings of `chips` (or of its `rows`), in order.

    The embedder's own path (FaceModel.embed_chips) runs `net` where its weights are;
    chips are read `CHUNK` at a time, so memory stays bounded. Call it in eval mode.
    """
    from faceidx.embedder.registry import FaceModel

    model = FaceModel(net, "in-training", "0", int(net.embedding_dim))
    rows = np.arange(len(chips)) if rows is None else np.asarray(rows, dtype=np.int64)
    out = np.empty((rows.size, model.dim), dtype=np.float32)
    for start in range(0, rows.size, CHUNK):
        part = rows[start:start + CHUNK]
        out[start:start + part.size] = model.embed_chips(chips.take(part), batch_size)
    return out


def make_validator(val_set: ChipSet, batch_size: int = 64, seed: int = 0) -> Callable[[torch.nn.Module], dict]:
    """validate(net) -> {"val_accuracy", "val_accuracy_std", "val_tar_at_far_1e-3", "val_pairs",
    and when the held-out identities allow an open-set split, "val_tpir_at_fpir_1e-2"}."""
    labels = list(val_set.labels)
    pairs = verification_pairs(labels, seed)
    try:
        split = openset_split(labels, seed)
        if not len(split.mated) or not len(split.nonmated):
            split = None
    except DataError:
        split = None
    log.info("validation: %d identities, %d images, %d pairs", len(set(labels)), len(val_set),
             len(pairs.same))

    def validate(net: torch.nn.Module) -> dict:
        emb = embed_chips(net, val_set, batch_size)
        v = verification(cosine_scores(emb, pairs), pairs)
        out = {"val_accuracy": v["accuracy"], "val_accuracy_std": v["accuracy_std"],
               "val_tar_at_far_1e-3": v["tar_at_far"], "val_pairs": v["pairs"]}
        if split is not None:
            out["val_tpir_at_fpir_1e-2"] = openset(emb, labels, split, FPIR)["tpir"]
        return out

    return validate
