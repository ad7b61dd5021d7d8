"""Query-adaptive probing: the two-stage search, and the tuner's choice of its rule."""

from __future__ import annotations

import numpy as np

from faceidx.index import open_index
from faceidx.index.early import ACCEPT_MARGIN, choose_early, stage_one_nprobes
from faceidx.index.tune import Truth, decisions
from tests.index.test_build_search import built, opts  # noqa: F401  (module fixture)


def test_two_stages_equal_the_small_or_the_full_search_at_the_extremes(built):  # noqa: F811
    root, x, _ = built
    reader = open_index(root / "idx")
    unit = reader._check(x[::9])
    small = reader.search_rows(unit, 5, 2, 40)
    full = reader.search_rows(unit, 5, 16, 40)
    never = reader.search_rows(unit, 5, 16, 40, early={"nprobe": 2, "accept": -2.0})
    always = reader.search_rows(unit, 5, 16, 40, early={"nprobe": 2, "accept": 2.0})
    for got, want in ((never, small), (always, full)):
        np.testing.assert_array_equal(got[1], want[1])
        np.testing.assert_allclose(got[0], want[0])


def test_only_queries_below_the_accept_score_are_searched_again(built):  # noqa: F811
    root, x, _ = built
    reader = open_index(root / "idx")
    unit = reader._check(x[::9] + 0.3)  # held-out-like probes: scores spread below 1
    small = reader.search_rows(unit, 5, 1, 8)
    full = reader.search_rows(unit, 5, 32, 40)
    accept = float(np.median(small[0][:, 0]))
    got = reader.search_rows(unit, 5, 32, 40, early={"nprobe": 1, "candidates": 8, "accept": accept})
    kept = small[0][:, 0] >= accept
    assert 0 < kept.sum() < len(kept)
    np.testing.assert_array_equal(got[1][kept], small[1][kept])
    np.testing.assert_array_equal(got[1][~kept], full[1][~kept])


def test_own_rows_do_not_count_as_a_settled_answer(built):  # noqa: F811
    root, x, _ = built
    reader = open_index(root / "idx")
    rows = np.arange(0, len(x), 9)
    unit = reader.store.gather(rows, "vectors")
    full = reader.search_rows(unit, 3, 32, 40)
    # every query finds itself (score 1) first: excluded, the next best decides
    got = reader.search_rows(unit, 3, 32, 40, early={"nprobe": 1, "accept": 0.9999}, own_rows=rows)
    np.testing.assert_array_equal(got[1], full[1])


def _truth(n: int, rng) -> Truth:
    keys = np.asarray([f"id{i}" for i in range(n)], object)
    return Truth(keys, np.full(n, 0.9, np.float32), threshold=0.5)


def test_the_rule_escalates_the_low_scores_that_stage_one_gets_wrong():
    rng = np.random.default_rng(0)
    n = 2000
    truth = _truth(n, rng)
    top = rng.uniform(0.5, 1.0, n).astype(np.float32)
    wrong = top < 0.7  # stage 1 errs only below 0.7 (40% of queries)
    keys_s = np.where(wrong, "other", truth.keys)
    full = (truth.keys.copy(), np.full(n, 0.9, np.float32))
    rule = choose_early(truth, 0.995, full, 100.0, {(8, 16): (keys_s, top)}, {(8, 16): 20.0},
                        lambda k, s: decisions(k, s, truth.threshold))
    assert rule is not None and (rule["nprobe"], rule["candidates"]) == (8, 16)
    assert rule["agreement"] >= 0.995 and rule["decision_agreement"] >= 0.995
    assert 0.69 <= rule["accept"] <= 0.72  # escalates what it must, plus the margin
    assert abs(rule["escalated"] - (np.mean(top < rule["accept"]))) < 1e-6
    assert rule["escalated"] >= np.mean(wrong) + ACCEPT_MARGIN - 0.011
    assert rule["cost_ratio"] == round((20 + rule["escalated"] * 100) / 100, 4)


def _case(seed: int, n: int = 1000):
    """(truth, stage-1 scores, full-setting outcomes that are always right, decide)."""
    rng = np.random.default_rng(seed)
    truth = _truth(n, rng)
    top = rng.uniform(0.5, 1.0, n).astype(np.float32)
    full = (truth.keys.copy(), np.full(n, 0.9, np.float32))
    return truth, top, full, lambda k, s: decisions(k, s, truth.threshold)


def test_no_rule_when_it_saves_too_little_or_cannot_reach_the_target():
    truth, top, full, decide = _case(1)
    n = len(top)
    all_wrong = np.full(n, "other", object)
    assert choose_early(truth, 0.995, full, 100.0, {(8, 4): (all_wrong, top)}, {(8, 4): 95.0},
                        decide) is None
    mostly_wrong = np.where(top < 0.99, "other", truth.keys)  # must escalate ~98%: no saving
    assert choose_early(truth, 0.995, full, 100.0, {(8, 4): (mostly_wrong, top)}, {(8, 4): 20.0},
                        decide) is None


def test_the_cheaper_of_two_passing_stage_one_settings_wins():
    truth, top, full, decide = _case(2)
    right = (truth.keys.copy(), top)
    rule = choose_early(truth, 0.995, full, 100.0, {(8, 64): right, (8, 16): right},
                        {(8, 64): 30.0, (8, 16): 10.0}, decide)
    assert (rule["nprobe"], rule["candidates"]) == (8, 16)
    assert rule["escalated"] <= ACCEPT_MARGIN + 0.011  # stage 1 is always right here


def test_stage_one_candidates_are_the_small_depths_and_the_full_one():
    from faceidx.index.early import stage_one_candidates

    assert stage_one_candidates(128) == [16, 32, 64, 128]
    assert stage_one_candidates(20) == [16, 20]
    assert stage_one_candidates(8) == [8]


def test_stage_one_nprobes_are_the_largest_measured_below_half():
    assert stage_one_nprobes([1, 2, 4, 8, 16, 32, 64, 48, 40], 64) == [4, 8, 16, 32]
    assert stage_one_nprobes([1, 2], 2) == [1]
    assert stage_one_nprobes([1], 1) == []


def test_tune_early_finds_a_rule_when_the_full_setting_is_generous(built):  # noqa: F811
    """Told to stop early from a search of all 32 lists (4 candidates; 0.97 agreement on
    this small coarse index, so the target is 0.96), the tuner finds that a few lists
    settle most queries."""
    from faceidx.index.tune import (
        Grid,
        Truth,
        exact_top1_other,
        fpir_threshold,
        identity_keys,
        search_cost,
        tune_early,
    )

    root, _, _ = built
    reader = open_index(root / "idx")
    rows = np.sort(np.random.default_rng(0).choice(reader.ntotal, 300, replace=False))
    unit = reader.store.gather(rows, "vectors")
    arg, best, impostor = exact_top1_other(unit, rows, reader.store)
    truth = Truth(identity_keys(reader.store, arg), best, fpir_threshold(impostor))
    grid = Grid(0.96, search_cost(reader))
    grid.rows = [{"nprobe": p} for p in (1, 2, 4, 8, 16, 32)]
    rule = tune_early(reader, unit, rows, truth, grid, {"nprobe": 32, "candidates": 4}, 0.96)
    assert rule is not None and rule["nprobe"] <= 16 and rule["cost_ratio"] <= 0.9
    assert rule["agreement"] >= 0.96 and rule["decision_agreement"] >= 0.96
    got = reader.search_rows(unit, 2, 32, 5, early=rule, own_rows=rows)
    full = reader.search_rows(unit, 2, 32, 5)
    own = got[1][:, 0] == rows
    first = np.where(own, got[1][:, 1], got[1][:, 0])
    own_f = full[1][:, 0] == rows
    first_f = np.where(own_f, full[1][:, 1], full[1][:, 0])
    keys = identity_keys(reader.store, first)
    assert np.mean(keys == truth.keys) >= 0.96
    assert np.mean(keys == identity_keys(reader.store, first_f)) >= 0.95


def test_a_stored_rule_is_used_by_default_and_an_explicit_nprobe_bypasses_it(built):  # noqa: F811
    root, x, _ = built
    reader = open_index(root / "idx")
    nprobe = int(reader.manifest["search"]["nprobe"])
    reader._manifest.search = dict(reader._manifest.search, early={"nprobe": 1, "accept": -2.0})
    got = reader.search(x[:50] + 0.3, k=3)  # every query stops after one list
    one_list = reader.search(x[:50] + 0.3, k=3, nprobe=1)
    explicit = reader.search(x[:50] + 0.3, k=3, nprobe=nprobe)
    np.testing.assert_array_equal(got[1], one_list[1])
    assert not np.array_equal(explicit[1], one_list[1])
