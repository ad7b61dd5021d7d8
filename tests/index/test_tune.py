"""The tuner's nprobe search: powers of two, then one step at 3/4 of the first hit."""

from __future__ import annotations

import pytest

from faceidx.index import BuildOptions, build_index
from faceidx.index import tune as tune_mod
from faceidx.index.manifest import IndexManifest
from tests.index.helpers import write_collection


@pytest.fixture(scope="module")
def index_dir(tmp_path_factory):
    root = tmp_path_factory.mktemp("tune")
    write_collection(root / "c", n_ids=200, per_id=6)
    build_index(root / "c", root / "idx", BuildOptions(index_spec="IVF64,PQ8x4fs", tune_queries=50))
    return root / "idx"


@pytest.mark.parametrize("needed,expected", [(24, 24), (30, 32), (6, 6), (3, 4), (1, 1)])
def test_smallest_probe_count_reaching_the_target(index_dir, monkeypatch, needed, expected):
    seen = []

    def fake_measure(reader, unit, query_rows, truth, nprobe, k_factors=tune_mod.K_FACTORS):
        seen.append(nprobe)
        return {kf: (1.0 if nprobe >= needed and kf >= 4 else 0.5, 1e-3) for kf in k_factors}

    monkeypatch.setattr(tune_mod, "measure", fake_measure)
    manifest = IndexManifest.load(index_dir)
    chosen = tune_mod.tune_search(index_dir, manifest, target=0.99, queries=50, force=True)
    assert chosen == {"nprobe": expected, "k_factor": 4}
    assert manifest.tuning["reached"] and manifest.tuning["agreement"] == 1.0
    assert seen[:3] == [1, 2, 4][:len(seen[:3])]


def test_unreachable_target_keeps_the_best_setting(index_dir, monkeypatch):
    def fake_measure(reader, unit, query_rows, truth, nprobe, k_factors=tune_mod.K_FACTORS):
        return {kf: (min(0.9, 0.5 + nprobe / 100), 1e-3 * nprobe) for kf in k_factors}

    monkeypatch.setattr(tune_mod, "measure", fake_measure)
    manifest = IndexManifest.load(index_dir)
    chosen = tune_mod.tune_search(index_dir, manifest, target=0.99, queries=50, force=True)
    nlist = manifest.params["nlist"]  # lowered from 64 to what 1200 vectors can train
    assert chosen == {"nprobe": nlist, "k_factor": 1}  # best agreement, then fastest
    assert manifest.tuning["reached"] is False
    assert manifest.tuning["agreement"] == pytest.approx(min(0.9, 0.5 + nlist / 100))
