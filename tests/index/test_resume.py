"""Each build stage resumes after a crash and ends with the same index as a clean build."""

from __future__ import annotations

import numpy as np
import pytest

from faceidx.errors import DataError
from faceidx.index import BuildOptions, add_collection, build_index, open_index
from faceidx.index import build as build_mod
from faceidx.index import merge as merge_mod
from faceidx.index import tune as tune_mod
from faceidx.io.atomic import sha256_file
from tests.index.helpers import write_collection

SPEC = "IVF32,PQ8x4fsr"


class Crash(RuntimeError):
    pass


def opts(**kw):
    base = dict(index_spec=SPEC, shard_rows=700, tune_queries=150)
    base.update(kw)
    return BuildOptions(**base)


@pytest.fixture(scope="module")
def clean(tmp_path_factory):
    root = tmp_path_factory.mktemp("clean")
    x, _ = write_collection(root / "c", n_ids=300, per_id=8)
    build_index(root / "c", root / "idx", opts())
    return root, x


def shard_hashes(idx):
    return sorted((p.parent.name, sha256_file(p)) for p in idx.glob("shard-*/index.faiss"))


def same_as_clean(idx, clean):
    root, x = clean
    assert shard_hashes(idx) == shard_hashes(root / "idx")
    assert sha256_file(idx / "trained.index") == sha256_file(root / "idx" / "trained.index")
    a = open_index(idx).search(x[:50], k=5)
    b = open_index(root / "idx").search(x[:50], k=5)
    np.testing.assert_array_equal(a[1], b[1])


@pytest.mark.parametrize("crash_after", [1, 2])
def test_crash_after_shard_i_then_rerun(tmp_path, monkeypatch, clean, crash_after):
    root, _ = clean
    real = build_mod._finish_shard
    calls = []

    def flaky(*args, **kw):
        calls.append(1)
        out = real(*args, **kw)
        if len(calls) == crash_after:
            raise Crash("killed")
        return out

    monkeypatch.setattr(build_mod, "_finish_shard", flaky)
    with pytest.raises(Crash):
        build_index(root / "c", tmp_path / "idx", opts())
    # the shard renamed in place but not yet in the manifest is dropped and rebuilt
    with pytest.raises(DataError, match="unfinished"):
        open_index(tmp_path / "idx")
    trained = sha256_file(tmp_path / "idx" / "trained.index")
    monkeypatch.setattr(build_mod, "_finish_shard", real)
    build_index(root / "c", tmp_path / "idx", opts())
    assert sha256_file(tmp_path / "idx" / "trained.index") == trained  # not retrained
    same_as_clean(tmp_path / "idx", clean)


def test_crash_in_tuning_keeps_shards(tmp_path, monkeypatch, clean):
    root, _ = clean
    real = tune_mod.tune_search

    def boom(*a, **k):
        raise Crash("killed while tuning")

    monkeypatch.setattr(tune_mod, "tune_search", boom)
    with pytest.raises(Crash):
        build_index(root / "c", tmp_path / "idx", opts())
    stamps = {p: p.stat().st_mtime_ns for p in (tmp_path / "idx").glob("shard-*/index.faiss")}
    monkeypatch.setattr(tune_mod, "tune_search", real)
    m = build_index(root / "c", tmp_path / "idx", opts())
    assert m.complete and m.tuning["agreement"] > 0
    assert stamps == {p: p.stat().st_mtime_ns for p in stamps}
    same_as_clean(tmp_path / "idx", clean)


def test_crash_in_merge_then_rerun(tmp_path, monkeypatch, clean):
    root, x = clean
    real = merge_mod._merge_in_memory

    def boom(*a, **k):
        raise Crash("killed while merging")

    monkeypatch.setattr(merge_mod, "_merge_in_memory", boom)
    with pytest.raises(Crash):
        build_index(root / "c", tmp_path / "idx", opts(merge=True))
    assert not (tmp_path / "idx" / "merged").exists()
    monkeypatch.setattr(merge_mod, "_merge_in_memory", real)
    m = build_index(root / "c", tmp_path / "idx", opts(merge=True))
    assert m.complete and m.merged and (tmp_path / "idx" / "merged" / "merged.index").exists()
    a = open_index(tmp_path / "idx").search(x[:50], k=5)
    b = open_index(root / "idx").search(x[:50], k=5)
    np.testing.assert_array_equal(a[1], b[1])


def test_interrupted_add_resumes(tmp_path, monkeypatch, clean):
    import shutil

    root, _ = clean
    shutil.copytree(root / "idx", tmp_path / "idx")
    x2, _ = write_collection(tmp_path / "new", n_ids=100, per_id=8, seed=5)
    real = build_mod._finish_shard
    calls = []

    def flaky(*args, **kw):
        calls.append(1)
        out = real(*args, **kw)
        if len(calls) == 1:
            raise Crash("killed")
        return out

    monkeypatch.setattr(build_mod, "_finish_shard", flaky)
    with pytest.raises(Crash):
        add_collection(tmp_path / "idx", tmp_path / "new", BuildOptions(shard_rows=500))
    monkeypatch.setattr(build_mod, "_finish_shard", real)
    m = add_collection(tmp_path / "idx", tmp_path / "new", BuildOptions(shard_rows=500))
    assert m.complete and m.rows == len(clean[1]) + len(x2)
    fids = [s.face_id_min for s in m.shards[-2:]]
    assert fids == [len(clean[1]), len(clean[1]) + 500]


def test_finished_index_is_not_rebuilt_over(tmp_path, clean):
    root, _ = clean
    import shutil

    shutil.copytree(root / "idx", tmp_path / "idx")
    with pytest.raises(DataError, match="faceidx add"):
        build_index(root / "c", tmp_path / "idx", opts())

