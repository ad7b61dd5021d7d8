"""The tuner: fastest setting reaching the target (rank-1 and open-set decisions),
nprobe bisection, the latency cap, and the exact pass it is measured against."""

from __future__ import annotations

import numpy as np
import pytest

from faceidx.index import BuildOptions, build_index, open_index
from faceidx.index import tune as tune_mod
from faceidx.index.manifest import IndexManifest
from tests.index.helpers import write_collection


@pytest.fixture(scope="module")
def index_dir(tmp_path_factory):
    root = tmp_path_factory.mktemp("tune")
    write_collection(root / "c", n_ids=200, per_id=6)
    build_index(root / "c", root / "idx", BuildOptions(index_spec="IVF64,PQ8x4fs", tune_queries=50))
    return root / "idx"


def fake(needed_nprobe: int, needed_cand: int, decisions_lag: int = 0):
    """measure(): agreement 1.0 from needed_nprobe/needed_cand on, time ~ nprobe + cand/64."""
    seen = []

    def measure(reader, unit, query_rows, truth, nprobe, counts=tune_mod.CANDIDATES):
        seen.append(nprobe)
        out = {}
        for c in counts:
            agree = 1.0 if nprobe >= needed_nprobe and c >= needed_cand else 0.5
            dec = 1.0 if nprobe >= needed_nprobe + decisions_lag and c >= needed_cand else 0.9
            out[c] = (agree, dec, 1e-3 * (nprobe + c / 64))
        return out

    return measure, seen


@pytest.mark.parametrize("needed,expected", [(24, 24), (30, 30), (6, 6), (3, 3), (1, 1)])
def test_smallest_probe_count_by_bisection(index_dir, monkeypatch, needed, expected):
    measure, seen = fake(needed, 16)
    monkeypatch.setattr(tune_mod, "measure", measure)
    manifest = IndexManifest.load(index_dir)
    nlist = manifest.params["nlist"]
    chosen = tune_mod.tune_search(index_dir, manifest, target=0.99, queries=50, force=True)
    want = min(expected, nlist)
    # bisection: exact below 16, within an eighth of the power of two above
    assert want <= chosen["nprobe"] <= max(want, want + want // 8)
    assert chosen["candidates"] == 16 and chosen["k_factor"] == 1
    assert manifest.tuning["reached"] and manifest.tuning["agreement"] == 1.0
    assert seen[:3] == [1, 2, 4][:len(seen[:3])]
    assert len(seen) <= int(np.log2(nlist)) + 1 + tune_mod.BISECT_STEPS


def test_decisions_must_reach_the_target_too(index_dir, monkeypatch):
    measure, _ = fake(4, 8, decisions_lag=4)  # rank-1 agrees from 4, decisions from 8
    monkeypatch.setattr(tune_mod, "measure", measure)
    manifest = IndexManifest.load(index_dir)
    chosen = tune_mod.tune_search(index_dir, manifest, target=0.99, queries=50, force=True)
    assert chosen["nprobe"] == 8 and manifest.tuning["decision_agreement"] == 1.0


def test_fastest_setting_not_smallest_nprobe():
    grid = tune_mod.Grid(0.99)
    grid.add(8, {16: (0.98, 1.0, 1e-3), 256: (0.995, 0.995, 9e-3)})   # slow deep re-rank
    grid.add(12, {16: (0.995, 0.996, 2e-3), 256: (1.0, 1.0, 10e-3)})
    assert grid.fastest() == {"nprobe": 12, "candidates": 16, "agreement": 0.995,
                              "decision_agreement": 0.996, "ms_per_query": 2.0}
    short = tune_mod.Grid(0.999)
    short.add(8, {16: (0.98, 0.99, 1e-3), 32: (0.98, 0.99, 2e-3)})
    assert short.fastest()["candidates"] == 16  # none reaches: most accurate, then fastest


def test_unreachable_target_keeps_the_best_setting(index_dir, monkeypatch):
    def measure(reader, unit, query_rows, truth, nprobe, counts=tune_mod.CANDIDATES):
        return {c: (min(0.9, 0.5 + nprobe / 100), 0.95, 1e-3 * nprobe) for c in counts}

    monkeypatch.setattr(tune_mod, "measure", measure)
    manifest = IndexManifest.load(index_dir)
    chosen = tune_mod.tune_search(index_dir, manifest, target=0.99, queries=50, force=True)
    nlist = manifest.params["nlist"]  # lowered from 64 to what 1200 vectors can train
    assert chosen["nprobe"] == nlist and chosen["candidates"] == 1  # best, then fastest
    assert manifest.tuning["reached"] is False
    assert manifest.tuning["agreement"] == pytest.approx(min(0.9, 0.5 + nlist / 100))


def test_latency_cap_walks_down_nprobe(index_dir, monkeypatch):
    measure, _ = fake(16, 8)
    monkeypatch.setattr(tune_mod, "measure", measure)
    monkeypatch.setattr(tune_mod, "single_query_ms", lambda reader, unit, nprobe, cand: nprobe / 4)
    manifest = IndexManifest.load(index_dir)
    chosen = tune_mod.tune_search(index_dir, manifest, target=0.99, queries=50, force=True,
                                  max_latency_ms=2.5)
    assert chosen["nprobe"] == 8  # 16 reaches the target but takes 4 ms
    t = manifest.tuning
    assert t["reached"] is False and t["max_latency_ms"] == 2.5 and t["latency_ms"] == 2.0
    roomy = IndexManifest.load(index_dir)
    assert tune_mod.tune_search(index_dir, roomy, target=0.99, queries=50, force=True,
                                max_latency_ms=100)["nprobe"] == 16
    assert roomy.tuning["reached"] and roomy.tuning["latency_ms"] == 4.0


def test_exact_pass_rank1_and_impostor_scores(index_dir):
    reader = open_index(index_dir)
    rows = np.arange(0, reader.ntotal, 37)
    unit = reader.store.gather(rows, "vectors")
    arg, best, impostor = tune_mod.exact_top1_other(unit, rows, reader.store, chunk=100)
    every = reader.store.gather(np.arange(reader.ntotal), "vectors")
    keys = tune_mod.identity_keys(reader.store, np.arange(reader.ntotal))
    s = unit @ every.T
    s[np.arange(len(rows)), rows] = -np.inf
    assert np.array_equal(arg, s.argmax(1))
    np.testing.assert_allclose(best, s.max(1), rtol=1e-5)
    s[keys[None, :] == keys[rows][:, None]] = -np.inf
    np.testing.assert_allclose(impostor, s.max(1), rtol=1e-5)
    assert (impostor <= best).all()


def test_real_tuning_stores_candidates_that_search_uses(index_dir):
    manifest = IndexManifest.load(index_dir)
    t = manifest.tuning
    assert set(manifest.search) == {"nprobe", "k_factor", "candidates"}
    assert -1 <= t["decision_threshold"] <= 1 and 0 <= t["decision_agreement"] <= 1
    assert {"agreement", "decision_agreement", "candidates"} <= set(t["grid"][0])
    chosen = next(g for g in t["grid"] if g["nprobe"] == manifest.search["nprobe"]
                  and g["candidates"] == manifest.search["candidates"])
    assert chosen["agreement"] == t["agreement"]
    reader = open_index(index_dir)
    q = reader.store.gather(np.arange(20), "vectors")
    c = manifest.search["candidates"]
    got = reader.search(q, k=1)
    want = reader.search_rows(reader._check(q), 1, manifest.search["nprobe"], max(1, c))
    assert np.array_equal(got[1], reader.face_ids_of(want[1]))


def test_decisions_and_threshold():
    keys = np.asarray(["a", "b", "c"], object)
    assert list(tune_mod.decisions(keys, np.asarray([0.9, 0.2, 0.5]), 0.5)) == \
        ["a", tune_mod.UNKNOWN, "c"]
    assert tune_mod.fpir_threshold(np.linspace(0, 1, 101), 0.01) == pytest.approx(0.99)
    assert tune_mod.fpir_threshold(np.asarray([-np.inf])) == 1.0
