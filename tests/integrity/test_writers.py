"""One writer at a time; readers keep their snapshot; failed or repeated adds change nothing."""

from __future__ import annotations

import shutil

import numpy as np
import pytest
from click.testing import CliRunner

from faceidx.cli.main import cli
from faceidx.errors import DataError, IndexBusyError
from faceidx.index import BuildOptions, build_index, open_index
from faceidx.index import build as build_mod
from faceidx.index.writer import PENDING_NAME, current_generation, open_writer
from tests.index.helpers import write_collection

SPEC = "IVF16,PQ8x4fsr"


class Crash(RuntimeError):
    pass


@pytest.fixture(scope="module")
def base(tmp_path_factory):
    root = tmp_path_factory.mktemp("writers")
    x, labels = write_collection(root / "c", n_ids=120, per_id=6)
    x2, labels2 = write_collection(root / "new", n_ids=60, per_id=6, seed=3)
    build_index(root / "c", root / "idx", BuildOptions(index_spec=SPEC, shard_rows=400,
                                                       tune_queries=100))
    return root, x, labels, x2, labels2


@pytest.fixture
def idx(tmp_path, base):
    shutil.copytree(base[0] / "idx", tmp_path / "idx")
    return tmp_path / "idx"


def crash_on_call(monkeypatch, n: int, what: str) -> None:
    """Make the n-th shard finish of this test raise Crash (after its rename)."""
    real = build_mod._finish_shard
    calls = []

    def flaky(*a, **k):
        calls.append(1)
        out = real(*a, **k)
        if len(calls) == n:
            raise Crash(what)
        return out

    monkeypatch.setattr(build_mod, "_finish_shard", flaky)


def all_face_ids(path):
    r = open_index(path)
    return np.sort(np.concatenate([np.asarray(s.face_ids) for s in r.store.shards]))


def test_second_writer_is_refused_with_the_holder_named(idx, base):
    root = base[0]
    with open_writer(idx, "faceidx serve") as w:
        with pytest.raises(IndexBusyError, match=r"faceidx serve.*POST /v1/faces"):
            open_writer(idx, "faceidx add")
        r = CliRunner().invoke(cli, ["add", str(idx), str(root / "new")])
        assert r.exit_code == 1 and "another writer holds this index" in r.output
        assert "Traceback" not in r.output
        w.reserve_face_ids(2)
    with open_writer(idx, "faceidx add"):  # released on exit
        pass


def test_reader_keeps_its_snapshot_through_add_and_erase(idx, base):
    _, x, labels, x2, _ = base
    old = open_index(idx)
    before = old.search(x[:40], k=5)
    gen = old.generation
    with open_writer(idx) as w:
        w.add_collection(base[0] / "new", shard_rows=200)
        w.merge()
        assert current_generation(idx) > gen
        after = old.search(x[:40], k=5)  # answered from the files of its own generation
        np.testing.assert_array_equal(before[1], after[1])
        np.testing.assert_allclose(before[0], after[0])
        w.erase(identities=[labels[0]])  # faces 0..5
    # an erasure may only make a face vanish early from an old snapshot
    after = old.search(x[:40], k=5)
    gone = np.isin(before[1], np.arange(6))
    assert not np.isin(after[1][after[0] > 0.01], np.arange(6)).any()
    same = ~gone.any(axis=1)
    assert same.sum() >= 30
    np.testing.assert_array_equal(before[1][same], after[1][same])
    new = open_index(idx)
    assert new.generation == current_generation(idx)
    assert new.ntotal == len(x) + len(x2) - 6
    _, fids = new.search(x2[:5], k=1)
    assert (fids[:, 0] >= len(x)).all()  # renumbered after the indexed faces


def test_failed_add_leaves_the_old_index_serving_then_resumes(idx, base, monkeypatch):
    _, x, _, x2, _ = base
    before = open_index(idx).search(x[:30], k=3)
    real = build_mod._finish_shard
    crash_on_call(monkeypatch, 2, "killed mid-add")
    with open_writer(idx) as w, pytest.raises(Crash):
        w.add_collection(base[0] / "new", shard_rows=100)
    reader = open_index(idx)  # still the previous content, complete and consistent
    assert reader.ntotal == len(x)
    np.testing.assert_array_equal(reader.search(x[:30], k=3)[1], before[1])
    assert (idx / PENDING_NAME).exists()
    monkeypatch.setattr(build_mod, "_finish_shard", real)
    # resumed with another --shard-rows: continues at the first row not yet indexed
    r = CliRunner().invoke(cli, ["add", str(idx), str(base[0] / "new"), "--shard-rows", "70"])
    assert r.exit_code == 0, r.output
    fids = all_face_ids(idx)
    assert len(fids) == len(x) + len(x2) and len(np.unique(fids)) == len(fids)
    assert not (idx / PENDING_NAME).exists()
    assert not list(idx.glob(".*.tmp"))


def test_rerunning_a_finished_add_is_a_no_op(idx, base):
    _, x, _, x2, _ = base
    r = CliRunner().invoke(cli, ["add", str(idx), str(base[0] / "new")])
    assert r.exit_code == 0
    gen = current_generation(idx)
    r = CliRunner().invoke(cli, ["add", str(idx), str(base[0] / "new")])
    assert r.exit_code == 0 and "already added" in r.output
    assert current_generation(idx) == gen
    assert open_index(idx).ntotal == len(x) + len(x2)


def test_build_resumed_with_other_shard_rows_indexes_every_face(tmp_path, base, monkeypatch):
    root, x, *_ = base
    real = build_mod._finish_shard
    crash_on_call(monkeypatch, 2, "killed mid-build")
    with pytest.raises(Crash):
        build_index(root / "c", tmp_path / "idx", BuildOptions(index_spec=SPEC, shard_rows=300,
                                                               tune_queries=50))
    monkeypatch.setattr(build_mod, "_finish_shard", real)
    m = build_index(root / "c", tmp_path / "idx", BuildOptions(index_spec=SPEC, shard_rows=100,
                                                               tune_queries=50))
    assert m.rows == len(x) and [s.rows for s in m.shards] == [300, 100, 100, 100, 100, 20]
    np.testing.assert_array_equal(all_face_ids(tmp_path / "idx"), np.arange(len(x)))


def test_reserved_ids_and_replayed_add_arrays(idx, base):
    _, x, _, x2, _ = base
    with open_writer(idx) as w:
        ids = w.reserve_face_ids(3)
        assert ids.tolist() == [len(x), len(x) + 1, len(x) + 2]
        assert w.reserve_face_ids(1)[0] == len(x) + 3  # durable: never handed out twice
        got = w.add_arrays(x2[:3], ["ann", "ann", None], face_ids=ids)
        np.testing.assert_array_equal(got, ids)
        gen = current_generation(idx)
        w.add_arrays(x2[:3], ["ann", "ann", None], face_ids=ids)  # a replay adds nothing
        assert current_generation(idx) == gen
        fresh = w.add_arrays(x2[3:5], ["bob", "bob"])
        assert fresh.tolist() == [len(x) + 4, len(x) + 5]
        with pytest.raises(DataError, match="norm"):
            w.add_arrays(np.full((1, x.shape[1]), 1e-30, np.float32), ["tiny"])
        with pytest.raises(DataError, match="negative"):
            w.add_arrays(x2[:1], ["neg"], face_ids=np.array([-4]))
        with pytest.raises(DataError, match="already indexed"):
            w.add_arrays(x2[:2], ["a", "b"], face_ids=np.array([ids[0], 10_000]))
    reader = open_index(idx)
    assert reader.ntotal == len(x) + 5
    ident, _ = reader.lookup(np.array([ids[0], fresh[1]]))
    assert ident.tolist() == ["ann", "bob"]
    _, fids = reader.search(x2[:1], k=1)
    assert fids[0, 0] == ids[0]
