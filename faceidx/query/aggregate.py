"""Several photos per person: how a person's faces combine into one score for a probe.

    names, scores = identity_scores(probe_vectors, gallery_vectors, gallery_ids, rule="template")
    # (n_probes, n_identities) in the order of `names`

Rules (``RULES``):

    best      the best of the person's faces (faceidx's default search answer)
    mean_top  the mean of the person's `top` best faces (fewer if they have fewer)
    template  the cosine to the person's template: the normalised mean of their faces
    knn       a k-nearest-neighbour vote over the `k` best faces of the whole gallery
              (seed 001's k-NN classifier): a person's score is their best face's score
              when they hold the most of the k votes (ties: best score), else their
              best score minus 1 (ranks them below every voted person, keeps order)

Exact and dense (numpy): meant for evaluating the rules (benchmarks/openset.py) and for
galleries that fit in memory; the FAISS search answers with ``best``.
"""

from __future__ import annotations

import numpy as np

RULES = ("best", "mean_top", "template", "knn")


def identity_scores(probes: np.ndarray, gallery: np.ndarray, gallery_ids, rule: str = "best",
                    top: int = 2, k: int = 5) -> tuple[np.ndarray, np.ndarray]:
    """(names (m,), scores (n, m)): each probe's score for each gallery identity."""
    if rule not in RULES:
        raise ValueError(f"rule must be one of {RULES}, got {rule!r}")
    names, inverse = np.unique(np.asarray(gallery_ids, dtype=str), return_inverse=True)
    p = np.asarray(probes, np.float32)
    g = np.asarray(gallery, np.float32)
    m = len(names)
    if rule == "template":
        t = np.zeros((m, g.shape[1]), np.float64)
        np.add.at(t, inverse, g)
        t /= np.linalg.norm(t, axis=1, keepdims=True)
        return names, p @ t.T.astype(np.float32)
    s = p @ g.T
    by_id = np.argsort(inverse, kind="stable")
    starts = np.concatenate([[0], np.cumsum(np.bincount(inverse, minlength=m))])
    best = np.full((len(p), m), -np.inf, np.float32)
    out = np.empty((len(p), m), np.float32)
    for j in range(m):
        cols = s[:, by_id[starts[j]:starts[j + 1]]]
        best[:, j] = cols.max(axis=1)
        if rule == "mean_top":
            n_top = min(top, cols.shape[1])
            out[:, j] = np.sort(cols, axis=1)[:, -n_top:].mean(axis=1)
    if rule == "best":
        return names, best
    if rule == "mean_top":
        return names, out
    kk = min(k, s.shape[1])
    nearest = np.argpartition(-s, kk - 1, axis=1)[:, :kk]
    votes = np.zeros((len(p), m), np.int64)
    np.add.at(votes, (np.repeat(np.arange(len(p)), kk), inverse[nearest].ravel()), 1)
    most = votes.max(axis=1, keepdims=True)
    return names, np.where(votes == most, best, best - 1.0)
