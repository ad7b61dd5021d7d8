"""Held-out evaluation: the open-set split and TPIR at FPIR against a brute-force loop."""

from __future__ import annotations

import numpy as np
import pytest

from faceidx.errors import DataError
from faceidx.train.evaluate import (
    cosine_scores,
    openset,
    openset_split,
    verification,
    verification_pairs,
)
from tests.conftest import make_clusters


def test_openset_split_is_disjoint_and_seeded():
    _, labels = make_clusters(10, 4, 8)
    split = openset_split(labels, seed=1)
    rows = np.concatenate([split.gallery, split.mated, split.nonmated])
    assert sorted(rows.tolist()) == list(range(40))
    enrolled = set(labels[split.gallery])
    assert len(enrolled) == len(split.gallery) == 5
    assert set(labels[split.mated]) == enrolled and not set(labels[split.nonmated]) & enrolled
    again = openset_split(labels, seed=1)
    assert np.array_equal(again.gallery, split.gallery)
    with pytest.raises(DataError, match="at least 2 identities"):
        openset_split(["a", "a"])


def test_openset_matches_a_loop():
    x, labels = make_clusters(30, 4, 16, seed=2, noise=1.2)  # noisy: some misses and false alarms
    split = openset_split(labels, seed=0)
    got = openset(x, labels, split, fpir=0.1)
    top_non = sorted((max(float(x[q] @ x[g]) for g in split.gallery) for q in split.nonmated), reverse=True)
    allowed = int(0.1 * len(top_non))  # searches that may score >= the threshold
    hits = 0
    for q in split.mated:
        scores = [float(x[q] @ x[g]) for g in split.gallery]
        best = int(np.argmax(scores))
        if labels[split.gallery[best]] == labels[q] and scores[best] >= got["threshold"]:
            hits += 1
    assert sum(s >= got["threshold"] for s in top_non) <= allowed
    assert got["tpir"] == pytest.approx(hits / len(split.mated))
    assert 0 < got["tpir"] < 1 and got["mated"] == 45 and got["nonmated"] == 60


def test_verification_on_a_pool():
    x, labels = make_clusters(6, 5, 16, seed=3)
    pairs = verification_pairs(list(labels), seed=0)
    assert pairs.kfold_seed == 0 and pairs.same.sum() == (~pairs.same).sum()
    v = verification(cosine_scores(x, pairs), pairs)
    assert v["accuracy"] > 0.9 and v["pairs"] == len(pairs.same)
