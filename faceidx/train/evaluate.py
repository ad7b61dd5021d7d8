"""Held-out evaluation of a trained model: 1:1 verification and 1:N open-set identification.

    pairs = verification_pairs(labels, seed=0)              # fixed for a whole run
    verification(scores_of(pairs), pairs)                   # 10-fold accuracy, TAR@FAR=1e-3
    split = openset_split(labels, seed=0)                   # gallery / mated / non-mated rows
    openset(embeddings, labels, split, fpir=0.01)           # TPIR at FPIR 1%

The one place the training package uses faceidx.query's metric and pair functions
(numpy only: the 1:1 and 1:N definitions the calibrate command uses too, so numbers mean
the same thing); validation and the benchmarks go through here.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from faceidx.errors import DataError

FAR = 1e-3
MIN_PAIRS = 20


@dataclass(frozen=True)
class VerificationPairs:
    """Row pairs (a, b, same) over a labelled set and how to fold them.

    `kfold_seed` None: LFW-style contiguous identity-disjoint folds; 0: one pool of pairs
    shuffled into folds.
    """

    a: np.ndarray
    b: np.ndarray
    same: np.ndarray
    kfold_seed: int | None


def verification_pairs(labels: Sequence[str], seed: int = 0) -> VerificationPairs:
    """LFW's protocol (10 identity-disjoint folds x 300 + 300) when `labels` allow, else a pool.

    The pool holds as many distinct pairs as the set has (both kinds equally many, at
    most 3,000 each); DataError when that is fewer than MIN_PAIRS / 2 of a kind.
    """
    from faceidx.query.pairs import generate_pairs, pairs_to_indices

    labels = list(labels)
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
    return VerificationPairs(a, b, same, kfold_seed)


def cosine_scores(embeddings: np.ndarray, pairs: VerificationPairs) -> np.ndarray:
    """Cosine of each pair's rows (embeddings are unit rows)."""
    return np.einsum("ij,ij->i", embeddings[pairs.a], embeddings[pairs.b])


def verification(scores: np.ndarray, pairs: VerificationPairs, far: float = FAR) -> dict:
    """{"accuracy", "accuracy_std", "tar_at_far", "far", "pairs"} of 1:1 `scores` (higher: same)."""
    from faceidx.query.metrics import kfold_accuracy, tar_at_far

    acc, std, _ = kfold_accuracy(scores, pairs.same, folds=10, seed=pairs.kfold_seed)
    tar, _ = tar_at_far(scores[pairs.same], scores[~pairs.same], far)
    return {"accuracy": acc, "accuracy_std": std, "tar_at_far": tar, "far": far,
            "pairs": int(len(pairs.same))}


@dataclass(frozen=True)
class OpenSetSplit:
    """Rows of a labelled set: one gallery image per enrolled identity, mated and non-mated probes."""

    gallery: np.ndarray
    mated: np.ndarray
    nonmated: np.ndarray


def openset_split(labels: Sequence[str], seed: int = 0, enrolled: float = 0.5) -> OpenSetSplit:
    """A seeded `enrolled` share of the identities is enrolled with one (random) image each;
    their other images are mated probes, every image of the others a non-mated probe."""
    labels = np.asarray(list(labels))
    ids = np.unique(labels)
    if len(ids) < 2:
        raise DataError(f"open-set evaluation needs at least 2 identities, got {len(ids)}")
    rng = np.random.default_rng(seed)
    n_in = min(len(ids) - 1, max(1, round(enrolled * len(ids))))
    chosen = set(rng.choice(ids, size=n_in, replace=False).tolist())
    gallery, mated, nonmated = [], [], []
    for ident in ids:
        rows = np.flatnonzero(labels == ident)
        if ident in chosen:
            first = int(rng.integers(rows.size))
            gallery.append(rows[first])
            mated.extend(np.delete(rows, first).tolist())
        else:
            nonmated.extend(rows.tolist())
    return OpenSetSplit(np.asarray(gallery), np.asarray(mated, dtype=np.int64),
                        np.asarray(nonmated, dtype=np.int64))


def openset(embeddings: np.ndarray, labels: Sequence[str], split: OpenSetSplit, fpir: float = 0.01) -> dict:
    """{"tpir", "fpir", "threshold", "rank1", "mated", "nonmated", "gallery"} by exact cosine search.

    The threshold is the lowest with FPIR <= `fpir` over the non-mated searches' top
    scores; TPIR is the share of mated searches whose mate is first with a score >= it.
    """
    from faceidx.query.metrics import fnir_curve, threshold_at_fpir

    labels = np.asarray(list(labels))
    if not len(split.mated) or not len(split.nonmated):
        raise DataError("open-set evaluation needs mated and non-mated probes")
    g = embeddings[split.gallery]
    gallery_ids = labels[split.gallery]
    top_nonmated = (embeddings[split.nonmated] @ g.T).max(axis=1)
    s = embeddings[split.mated] @ g.T
    best = s.argmax(axis=1)
    first = gallery_ids[best] == labels[split.mated]
    rank = np.where(first, 1, 0)
    thr = threshold_at_fpir(top_nonmated, fpir)
    tpir = 1.0 - float(fnir_curve(rank, s.max(axis=1), np.array([thr]))[0])
    return {"tpir": tpir, "fpir": fpir, "threshold": float(thr), "rank1": float(first.mean()),
            "mated": int(len(split.mated)), "nonmated": int(len(split.nonmated)),
            "gallery": int(len(split.gallery))}
