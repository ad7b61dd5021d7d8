"""report_stats against naive references, and its pair samplers."""

from __future__ import annotations

import math

import numpy as np
import pytest

from faceidx.synth import report_stats, report_table, target_stats
from faceidx.synth.stats import _diff_pairs, _same_pairs
from tests.conftest import make_clusters


def _naive(x: np.ndarray, labels: np.ndarray) -> dict:
    """Every pair, loops and all: exhaustive cosine statistics and an SVD-based PCA."""
    mean = x.mean(axis=0)
    c = x - mean
    same, diff = [], []
    for i in range(len(x)):
        for j in range(len(x)):
            if i == j:
                continue
            cos = c[i] @ c[j] / (np.linalg.norm(c[i]) * np.linalg.norm(c[j]))
            (same if labels[i] == labels[j] else diff).append(cos)
    sv = np.linalg.svd(c, compute_uv=False) ** 2
    return {
        "mean_norm": np.linalg.norm(mean), "avg_norm": np.linalg.norm(x, axis=1).mean(),
        "same_cos": np.mean(same), "same_cos_std": np.std(same),
        "diff_cos": np.mean(diff), "diff_cos_std": np.std(diff),
        "pc1_share": sv[0] / sv.sum(), "top_half_share": sv[: x.shape[1] // 2].sum() / sv.sum(),
        "participation_ratio": sv.sum() ** 2 / np.sum(sv**2),
    }


def test_report_stats_matches_exhaustive_reference():
    x, labels = make_clusters(12, 5, 8, seed=3, noise=2.0)
    x = x.astype(np.float64) + 0.5  # a common offset, like raw face vectors
    # uniform-size identities: row-weighted sampled pairs estimate the all-pairs means
    got = report_stats(x, labels, seed=0, max_pairs=200_000)
    ref = _naive(x, labels)
    for key in ("mean_norm", "avg_norm", "pc1_share", "top_half_share", "participation_ratio"):
        assert got[key] == pytest.approx(ref[key], rel=1e-6), key
    for key in ("same_cos", "same_cos_std", "diff_cos", "diff_cos_std"):
        assert got[key] == pytest.approx(ref[key], abs=0.01), key
    assert got["norm_ratio"] == pytest.approx(ref["mean_norm"] / ref["avg_norm"])
    assert got["rows"] == 60 and got["identities"] == 12 and got["dim"] == 8


def test_pair_samplers_give_valid_pairs():
    rng = np.random.default_rng(0)
    ids = np.array([0, 0, 0, 1, 2, 2, 3, 4, 4, 4, 4])
    i, j = _same_pairs(ids, rng, 5000)
    assert np.all(i != j) and np.all(ids[i] == ids[j])
    assert not np.isin(i, [3, 6]).any()  # singletons never pair
    # every ordered same-identity pair shows up
    assert len(set(zip(i.tolist(), j.tolist(), strict=True))) == 3 * 2 + 2 * 1 + 4 * 3
    i, j = _diff_pairs(ids, rng, 5000)
    assert len(i) == 5000 and np.all(ids[i] != ids[j])


def test_degenerate_samples_give_nan_not_errors():
    x = np.random.default_rng(0).standard_normal((6, 4))
    singles = report_stats(x, np.arange(6))
    assert math.isnan(singles["same_cos"]) and not math.isnan(singles["diff_cos"])
    one = report_stats(x, np.zeros(6, dtype=int))
    assert math.isnan(one["diff_cos"]) and not math.isnan(one["same_cos"])
    with pytest.raises(ValueError):
        report_stats(x, np.zeros(5))


def test_report_table_lists_targets_and_both_vector_kinds():
    x, labels = make_clusters(20, 3, 16, seed=0)
    s = report_stats(x, labels)
    table = report_table(s, s, target_stats())
    assert "target" in table and "stored" in table
    assert "same_cos" in table and "0.690" in table and "pc1_share" in table
