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
from faceidx.train.data import ChipSet, to_input

log = logging.getLogger(__name__)

FAR = 1e-3
MIN_PAIRS = 20


def embed_chips(net: torch.nn.Module, chips: ChipSet, batch_size: int = 64,
                device: str = "cpu") -> np.ndarray:
    """L2-normalised float32 embeddings (N, D) of every chip in `chips`, in order."""
    out = []
    with torch.no_grad():
        for start in range(0, len(chips), batch_size):
            x = to_input(chips.take(np.arange(start, min(start + batch_size, len(chips)))), device)
            out.append(torch.nn.functional.normalize(net(x), dim=1).float().cpu().numpy())
    return np.concatenate(out) if out else np.zeros((0, 0), np.float32)


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


def make_validator(val_set: ChipSet, batch_size: int = 64, device: str = "cpu",
                   seed: int = 0) -> Callable[[torch.nn.Module], dict]:
    """validate(net) -> {"val_accuracy", "val_accuracy_std", "val_tar_at_far_1e-3", "val_pairs"}."""
    from faceidx.query.metrics import kfold_accuracy, tar_at_far

    a, b, same, kfold_seed = validation_pairs(list(val_set.labels), seed)
    log.info("validation: %d identities, %d images, %d pairs", len(set(val_set.labels)),
             len(val_set), len(a))

    def validate(net: torch.nn.Module) -> dict:
        emb = embed_chips(net, val_set, batch_size, device)
        scores = np.einsum("ij,ij->i", emb[a], emb[b])
        acc, std, _ = kfold_accuracy(scores, same, folds=10, seed=kfold_seed)
        tar, _ = tar_at_far(scores[same], scores[~same], FAR)
        return {"val_accuracy": acc, "val_accuracy_std": std, "val_tar_at_far_1e-3": tar,
                "val_pairs": int(len(a))}

    return validate
