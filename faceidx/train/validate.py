"""Per-epoch verification on held-out identities: 10-fold accuracy and TAR@FAR=1e-3.

Pairs come from faceidx.query.pairs.generate_pairs over the held-out labels and are fixed
for the whole run (seeded), so epochs are compared on the same pairs. The LFW protocol
(10 identity-disjoint folds of 300 genuine + 300 impostor pairs) is used when the held-out
set can supply it; a smaller set gets one pool of as many distinct pairs as it allows
(both kinds equally many), split into 10 shuffled folds for the threshold choice.
"""

from __future__ import annotations

import logging
from collections import Counter
from collections.abc import Callable

import numpy as np
import torch

from faceidx.errors import DataError
from faceidx.train.data import ChipSet

log = logging.getLogger(__name__)

FAR = 1e-3
MIN_PAIRS = 20
CHUNK = 256


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


def validation_pairs(labels: list[str], seed: int = 0) -> tuple[np.ndarray, np.ndarray, np.ndarray, int | None]:
    """(a, b, same, kfold_seed): row pairs over `labels` and how to fold them.

    kfold_seed is None for LFW-style contiguous identity-disjoint folds, 0 for one pool
    shuffled into folds.
    """
    from faceidx.query.pairs import generate_pairs, pairs_to_indices

    try:
        pairs = generate_pairs(labels, folds=10, per_fold=300, seed=seed)
        kfold_seed = None
    except DataError:
        counts = Counter(labels)
        genuine = sum(c * (c - 1) // 2 for c in counts.values())
        total = sum(counts.values())
        impostor = (total * total - sum(c * c for c in counts.values())) // 2
        per_fold = min(3000, genuine, impostor)
        if per_fold < MIN_PAIRS // 2:
            raise DataError(f"the validation identities give only {genuine} genuine and {impostor} "
                            f"impostor pairs; at least {MIN_PAIRS // 2} of each are needed "
                            "(hold out more identities with --val)") from None
        pairs = generate_pairs(labels, folds=1, per_fold=per_fold, seed=seed)
        kfold_seed = 0
    a, b, same = pairs_to_indices(pairs, labels)
    return a, b, same, kfold_seed


def make_validator(val_set: ChipSet, batch_size: int = 64, seed: int = 0) -> Callable[[torch.nn.Module], dict]:
    """validate(net) -> {"val_accuracy", "val_accuracy_std", "val_tar_at_far_1e-3", "val_pairs"}."""
    from faceidx.query.metrics import kfold_accuracy, tar_at_far

    a, b, same, kfold_seed = validation_pairs(list(val_set.labels), seed)
    log.info("validation: %d identities, %d images, %d pairs", len(set(val_set.labels)),
             len(val_set), len(a))

    def validate(net: torch.nn.Module) -> dict:
        emb = embed_chips(net, val_set, batch_size)
        scores = np.einsum("ij,ij->i", emb[a], emb[b])
        acc, std, _ = kfold_accuracy(scores, same, folds=10, seed=kfold_seed)
        tar, _ = tar_at_far(scores[same], scores[~same], FAR)
        return {"val_accuracy": acc, "val_accuracy_std": std, "val_tar_at_far_1e-3": tar,
                "val_pairs": int(len(a))}

    return validate
