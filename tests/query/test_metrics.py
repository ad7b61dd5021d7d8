"""Metric functions against hand-computed small cases and naive references."""

from __future__ import annotations

import numpy as np
import pytest

from faceidx.query import metrics as M

G = [0.9, 0.8, 0.7, 0.4]
IMP = [0.6, 0.5, 0.3, 0.2]


def test_roc_hand_computed():
    far, tar, thr = M.roc_curve(G, IMP)
    assert thr[0] == np.inf
    np.testing.assert_allclose(thr[1:], [0.9, 0.8, 0.7, 0.6, 0.5, 0.4, 0.3, 0.2])
    np.testing.assert_allclose(far, [0, 0, 0, 0, .25, .5, .5, .75, 1])
    np.testing.assert_allclose(tar, [0, .25, .5, .75, .75, .75, 1, 1, 1])


def test_roc_ties_accept():
    far, tar, thr = M.roc_curve([0.5, 0.5], [0.5, 0.1])
    np.testing.assert_allclose(thr, [np.inf, 0.5, 0.1])
    np.testing.assert_allclose(far, [0, 0.5, 1])
    np.testing.assert_allclose(tar, [0, 1, 1])


def test_eer_hand_computed():
    value, thr = M.eer(G, IMP)
    assert value == pytest.approx(0.25)
    assert thr == pytest.approx(0.6)


def test_eer_interpolates():
    # thr .9: far 0, frr .5; thr .2: far .5, frr 0 -> crossing at 0.25 halfway
    value, thr = M.eer([0.9, 0.2], [0.2, 0.1])
    assert value == pytest.approx(0.25)
    assert thr == pytest.approx(0.2)


def test_eer_perfect_separation():
    value, _ = M.eer([0.9, 0.8], [0.1, 0.2])
    assert value == 0.0


def test_threshold_at_far_and_ties():
    imp = [0.9, 0.8, 0.8, 0.1]
    t = M.threshold_at_far(imp, 0.25)          # one false accept allowed: above 0.8
    assert 0.8 < t < 0.8 + 1e-12
    assert M.accept_rate(imp, t) == 0.25
    t2 = M.threshold_at_far(imp, 0.5)          # two allowed, but 0.8 is tied twice -> still 1
    assert t2 == t
    t3 = M.threshold_at_far(imp, 0.75)         # three: above 0.1
    assert M.accept_rate(imp, t3) == 0.75
    assert M.threshold_at_far(imp, 1.0) == 0.1
    t0 = M.threshold_at_far(imp, 0.0)
    assert t0 > 0.9 and M.accept_rate(imp, t0) == 0


def test_threshold_is_lowest_with_far_below_target():
    rng = np.random.default_rng(1)
    imp = rng.normal(size=1000).round(2)      # many ties
    for far in (0.001, 0.01, 0.1, 0.37):
        t = M.threshold_at_far(imp, far)
        assert np.mean(imp >= t) <= far
        lower = np.max(imp[imp < t])
        assert np.mean(imp >= lower) > far


def test_tar_at_far():
    tar, thr = M.tar_at_far(G, IMP, 0.25)
    assert tar == 0.75 and 0.5 < thr < 0.5001


def test_best_accuracy_threshold_and_kfold():
    s = np.array([0.9, 0.8, 0.7, 0.4, 0.6, 0.5, 0.3, 0.2])
    same = np.array([1, 1, 1, 1, 0, 0, 0, 0], bool)
    t, acc = M.best_accuracy_threshold(s, same)
    # accepting >= .7 gives 3 tp + 4 tn = 7/8; midpoint of (.6, .7]
    assert acc == pytest.approx(7 / 8) and t == pytest.approx(0.65)
    mean, std, thrs = M.kfold_accuracy(np.r_[s, s], np.r_[same, same], folds=2, seed=None)
    assert mean == pytest.approx(7 / 8) and std == 0 and thrs == pytest.approx([0.65, 0.65])


def test_kfold_matches_naive_loop():
    rng = np.random.default_rng(0)
    same = rng.random(200) < 0.5
    s = np.where(same, rng.normal(0.6, 0.15, 200), rng.normal(0.2, 0.15, 200))
    mean, _, thrs = M.kfold_accuracy(s, same, folds=5, seed=3)
    order = np.random.default_rng(3).permutation(200)
    accs = []
    for k, test in enumerate(np.array_split(order, 5)):
        train = np.setdiff1d(order, test)
        grid = np.unique(s[train])
        best = max(grid, key=lambda t: (np.mean((s[train] >= t) == same[train]), t))
        assert np.mean((s[train] >= thrs[k]) == same[train]) == pytest.approx(
            np.mean((s[train] >= best) == same[train]))
        accs.append(np.mean((s[test] >= thrs[k]) == same[test]))
    assert mean == pytest.approx(np.mean(accs))


def test_fpir_fnir_cmc_hand_computed():
    nonmated_top = [0.7, 0.5, 0.3, 0.1]
    np.testing.assert_allclose(M.fpir_curve(nonmated_top, [0.8, 0.5, 0.1]), [0, 0.5, 1])
    assert 0.5 < M.threshold_at_fpir(nonmated_top, 0.25) < 0.5001
    rank = [1, 1, 2, 0]
    score = [0.9, 0.4, 0.8, 0.0]
    # t=.5: only search 0 is a rank-1 hit above t -> FNIR .75; t=.4: 2 hits -> .5
    np.testing.assert_allclose(M.fnir_curve(rank, score, [0.5, 0.4, -1.0]), [0.75, 0.5, 0.5])
    np.testing.assert_allclose(M.cmc(rank, 3), [0.5, 0.75, 0.75])


def test_bad_inputs():
    with pytest.raises(ValueError):
        M.roc_curve([], [0.1])
    with pytest.raises(ValueError):
        M.threshold_at_far([0.1], 1.5)
    with pytest.raises(ValueError):
        M.eer([np.nan], [0.1])
    with pytest.raises(ValueError):
        M.kfold_accuracy([0.1, 0.2], [True, False], folds=10)
