"""Verification (1:1) and open-set identification (1:N) metrics. numpy only.

Scores are cosine similarities: higher means more alike. A comparison is ACCEPTED when
``score >= threshold`` (ties accept); every function here uses that one rule, so a
threshold returned by one function means the same thing in all the others.

1:1 verification (genuine = same-person pairs, impostor = different-person pairs):

    FAR(t) = share of impostor scores >= t      TAR(t) = share of genuine scores >= t

1:N open-set identification (NIST IR 8271 terms), from search results:

    FPIR(t) = share of NON-MATED searches (person not enrolled) whose top score >= t
    FNIR(t) = share of MATED searches (person enrolled) whose mate is not ranked
              first with a score >= t;            TPIR(t) = 1 - FNIR(t)
    CMC(r)  = share of mated searches whose mate is within the first r identities
"""

from __future__ import annotations

import numpy as np


def _scores(x, name: str) -> np.ndarray:
    a = np.asarray(x, dtype=np.float64).ravel()
    if not np.all(np.isfinite(a)):
        raise ValueError(f"{name} scores contain NaN or inf")
    return a


def _rate(x, name: str) -> float:
    rate = float(x)
    if not 0.0 <= rate <= 1.0:
        raise ValueError(f"{name} must be in [0, 1], got {x}")
    return rate


def accept_rate(scores, thresholds) -> np.ndarray:
    """Share of `scores` >= each threshold (the FAR of impostors, the TAR of genuines).

    `thresholds` is a scalar or an array; the result has its shape. O((n + m) log n).
    """
    s = np.sort(_scores(scores, "input"))
    t = np.asarray(thresholds, dtype=np.float64)
    if not len(s):
        return np.full(t.shape, np.nan)
    below = np.searchsorted(s, t, side="left")  # count of scores < t
    return (len(s) - below) / len(s)


def roc_curve(genuine, impostor) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """The full ROC: (far, tar, thresholds), thresholds strictly descending.

    thresholds[0] is +inf (nothing accepted: far = tar = 0); then every distinct score of
    either set, highest first, down to the lowest score (everything accepted: far = tar = 1).
    far[i] = FAR(thresholds[i]), tar[i] = TAR(thresholds[i]).
    """
    g, i = _scores(genuine, "genuine"), _scores(impostor, "impostor")
    if not len(g) or not len(i):
        raise ValueError("roc_curve needs at least one genuine and one impostor score")
    thr = np.concatenate([[np.inf], np.unique(np.concatenate([g, i]))[::-1]])
    return accept_rate(i, thr), accept_rate(g, thr), thr


def threshold_at_far(impostor, far: float) -> float:
    """The LOWEST threshold whose FAR on `impostor` is <= `far`.

    With n impostor scores, at most m = floor(far * n) may be accepted; the threshold
    sits just above the (m+1)-th highest impostor score (np.nextafter), so scores tied
    with it are rejected. far >= 1 accepts everything (returns the lowest score).
    When far * n < 1 the result only says "above every impostor seen": the caller should
    check that n >= ~10 / far before trusting it (see calibrate).
    """
    s = np.sort(_scores(impostor, "impostor"))[::-1]
    far = _rate(far, "far")
    if not len(s):
        raise ValueError("threshold_at_far needs at least one impostor score")
    m = int(np.floor(far * len(s) + 1e-9))
    if m >= len(s):
        return float(s[-1])
    return float(np.nextafter(s[m], np.inf))


def tar_at_far(genuine, impostor, far: float) -> tuple[float, float]:
    """(TAR, threshold) at the lowest threshold whose FAR is <= `far`."""
    thr = threshold_at_far(impostor, far)
    g = _scores(genuine, "genuine")
    if not len(g):
        raise ValueError("tar_at_far needs at least one genuine score")
    return float(accept_rate(g, thr)), thr


def eer(genuine, impostor) -> tuple[float, float]:
    """(equal error rate, threshold).

    Walks the ROC from the highest threshold down; at the first point where FAR >= FRR
    (FRR = 1 - TAR), the EER is interpolated linearly between that point and the one
    before (where FAR < FRR), and the threshold returned is that first point's.
    """
    far, tar, thr = roc_curve(genuine, impostor)
    frr = 1.0 - tar
    diff = far - frr  # starts at -1 (thr = +inf), ends at +1 (all accepted)
    i = int(np.argmax(diff >= 0))
    d0, d1 = diff[i - 1], diff[i]
    a = d0 / (d0 - d1) if d1 != d0 else 0.0
    value = far[i - 1] + a * (far[i] - far[i - 1])
    return float(value), float(thr[i])


def best_accuracy_threshold(scores, same) -> tuple[float, float]:
    """(threshold, accuracy) maximising accuracy of `scores >= t` as a same-person test.

    Among equally good thresholds the highest plateau wins; the threshold is the middle
    of the gap between the lowest accepted score and the next lower score.
    """
    s = _scores(scores, "pair")
    y = np.asarray(same, dtype=bool).ravel()
    if len(s) != len(y) or not len(s):
        raise ValueError("scores and same must be non-empty and of equal length")
    u = np.unique(s)[::-1]  # candidate lowest-accepted score, descending
    tp = len(y[y]) * accept_rate(s[y], u) if y.any() else np.zeros(len(u))
    fp = len(y[~y]) * accept_rate(s[~y], u) if (~y).any() else np.zeros(len(u))
    tn = (~y).sum() - fp
    acc = np.concatenate([[(~y).sum() / len(y)], (tp + tn) / len(y)])  # [accept none, ...]
    j = int(np.argmax(acc))
    if j == 0:
        return float(np.nextafter(u[0], np.inf)), float(acc[0])
    lo = u[j - 1]
    if j == len(u):
        return float(lo), float(acc[j])
    mid = (lo + u[j]) / 2.0
    return float(mid if u[j] < mid <= lo else lo), float(acc[j])


def kfold_accuracy(scores, same, folds: int = 10, seed: int | None = 0
                   ) -> tuple[float, float, np.ndarray]:
    """LFW-style k-fold accuracy: (mean, std, thresholds (folds,)).

    For each fold the best-accuracy threshold is chosen on the other k-1 folds and
    accuracy is measured on the held-out one. `seed` shuffles pairs into folds;
    seed=None keeps file order (contiguous folds, as LFW's pairs.txt lists them).
    """
    s = _scores(scores, "pair")
    y = np.asarray(same, dtype=bool).ravel()
    if len(s) != len(y):
        raise ValueError("scores and same must have equal length")
    if folds < 2 or len(s) < folds:
        raise ValueError(f"need folds >= 2 and at least {folds} pairs, got {len(s)} pairs")
    order = np.arange(len(s)) if seed is None else np.random.default_rng(seed).permutation(len(s))
    parts = np.array_split(order, folds)
    accs, thrs = [], []
    for k in range(folds):
        test = parts[k]
        train = np.concatenate([parts[j] for j in range(folds) if j != k])
        t, _ = best_accuracy_threshold(s[train], y[train])
        accs.append(np.mean((s[test] >= t) == y[test]))
        thrs.append(t)
    return float(np.mean(accs)), float(np.std(accs)), np.asarray(thrs)


# -- open-set identification --------------------------------------------------------------


def fpir_curve(nonmated_top, thresholds) -> np.ndarray:
    """FPIR at each threshold: share of non-mated searches whose top score >= t."""
    return accept_rate(nonmated_top, thresholds)


def fnir_curve(mate_rank, mate_score, thresholds) -> np.ndarray:
    """FNIR at each threshold for mated searches.

    mate_rank: 1-based rank of the mate identity in each search's candidate list
    (0 or any value != 1 when it is not first or not found); mate_score: the mate's
    score (anything when not found). FNIR(t) = 1 - share(rank == 1 and score >= t).
    """
    rank = np.asarray(mate_rank).ravel()
    score = np.asarray(mate_score, dtype=np.float64).ravel()
    if len(rank) != len(score) or not len(rank):
        raise ValueError("mate_rank and mate_score must be non-empty and of equal length")
    first = score[rank == 1]
    hits = accept_rate(first, thresholds) * len(first) if len(first) else np.zeros(np.shape(thresholds))
    return 1.0 - hits / len(rank)


def threshold_at_fpir(nonmated_top, fpir: float) -> float:
    """The lowest threshold whose FPIR on `nonmated_top` is <= `fpir` (see threshold_at_far)."""
    return threshold_at_far(nonmated_top, fpir)


def cmc(mate_rank, max_rank: int = 10) -> np.ndarray:
    """Cumulative match characteristic: out[r-1] = share of mated searches with rank <= r.

    Ranks are 1-based; 0 (or negative) means the mate was not in the list.
    """
    rank = np.asarray(mate_rank).ravel()
    if not len(rank):
        raise ValueError("cmc needs at least one mated search")
    found = rank[rank >= 1]
    r = np.arange(1, max_rank + 1)
    return np.searchsorted(np.sort(found), r, side="right") / len(rank)
