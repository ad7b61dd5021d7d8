"""What needs no Ray cluster: the file-system layer, the missing-Ray message, part groups
answering as one process, and bookkeeping that stays flat in the number of shards."""

from __future__ import annotations

import builtins
import sys

import numpy as np
import pytest
from click.testing import CliRunner

from faceidx.cli.main import cli
from faceidx.errors import DataError, MissingDependencyError
from faceidx.index.build import BuildOptions, add_collection, build_index
from faceidx.index.merge import merge_index
from faceidx.index.search import open_index
from faceidx.io.fs import filesystem
from faceidx.query.identify import identify
from tests.index.helpers import write_collection

SPEC = "IVF32,PQ8x4fs"


def test_fs_local_paths_urls_and_atomic_writes(tmp_path):
    fs = filesystem(f"file://{tmp_path}")
    assert fs.path(f"file://{tmp_path}/a") == tmp_path / "a"
    with fs.atomic_write(tmp_path / "x.bin") as tmp:
        tmp.write_bytes(b"new")
    with pytest.raises(RuntimeError), fs.atomic_write(tmp_path / "x.bin") as tmp:
        tmp.write_bytes(b"half")
        raise RuntimeError("killed")
    assert (tmp_path / "x.bin").read_bytes() == b"new"
    assert [p.name for p in tmp_path.iterdir()] == ["x.bin"]   # no temp file left
    with pytest.raises(DataError, match="s3:// is not supported.*shared file system"):
        filesystem("s3://bucket/faces.index")


def test_ray_missing_says_how_to_install_it(tmp_path, monkeypatch):
    from faceidx.distributed.cluster import require_ray

    monkeypatch.setitem(sys.modules, "ray", None)   # `import ray` raises ImportError
    with pytest.raises(MissingDependencyError, match=r"pip install 'faceidx\[ray\]'"):
        require_ray()
    write_collection(tmp_path / "c", n_ids=20, per_id=2)
    res = CliRunner().invoke(cli, ["build", str(tmp_path / "c"), "--out", str(tmp_path / "i"),
                                   "--ray"])
    assert res.exit_code == 1
    assert "pip install 'faceidx[ray]'" in res.output and "Traceback" not in res.output


def test_part_groups_answer_as_one_process(tmp_path):
    from faceidx.distributed.parts import FannedReader, LocalCalls, PartGroup

    x, _ = write_collection(tmp_path / "c", n_ids=300, per_id=8)
    write_collection(tmp_path / "c2", n_ids=50, per_id=4, seed=1)
    build_index(tmp_path / "c", tmp_path / "i",
                BuildOptions(index_spec=SPEC, shard_rows=700, tune_queries=200))
    q = x[::7] + 0.01

    def check(parts: int) -> None:
        one = open_index(tmp_path / "i")
        assert len(one.parts) == parts
        for groups in (1, 2, 3):
            calls = LocalCalls([PartGroup(str(tmp_path / "i"), g, groups) for g in range(groups)])
            fanned = FannedReader.open(tmp_path / "i", calls)
            for got, want in zip(fanned.search(q, 10), one.search(q, 10), strict=True):
                np.testing.assert_array_equal(got, want)
            assert ([r.to_json() for r in identify(fanned, q, k=5, threshold=0.5)]
                    == [r.to_json() for r in identify(one, q, k=5, threshold=0.5)])

    check(parts=4)                       # shards
    merge_index(tmp_path / "i")
    add_collection(tmp_path / "i", tmp_path / "c2")
    check(parts=2)                       # the merged index + a shard added after it


class OpenCounter:
    """Counts files opened under shard folders (row stores, names) while active."""

    def __init__(self, monkeypatch):
        self.paths: list[str] = []
        real = builtins.open

        def counting(file, *args, **kwargs):
            name = str(file)
            if "/shard-" in name:
                self.paths.append(name)
            return real(file, *args, **kwargs)

        monkeypatch.setattr(builtins, "open", counting)


def test_shard_bookkeeping_opens_files_linear_in_shards(tmp_path, monkeypatch):
    """Finishing shard k opened every earlier shard (uniqueness check, identity count):
    O(shards^2) opens per build. Now a build opens each shard a fixed number of times."""
    opens, per_shard = {}, 40
    for shards in (8, 32):
        write_collection(tmp_path / f"c{shards}", n_ids=shards * per_shard // 4, per_id=4)
        counter = OpenCounter(monkeypatch)
        build_index(tmp_path / f"c{shards}", tmp_path / f"i{shards}",
                    BuildOptions(index_spec="Flat", shard_rows=per_shard, tune_queries=20))
        monkeypatch.undo()
        assert len(open_index(tmp_path / f"i{shards}").store.shards) == shards
        opens[shards] = len(counter.paths)
    per = {s: n / s for s, n in opens.items()}
    assert per[32] <= per[8] * 1.25, opens   # flat per shard (quadratic would be 4x)


def test_lookups_open_only_the_shards_holding_the_face_ids(tmp_path, monkeypatch):
    write_collection(tmp_path / "c", n_ids=100, per_id=4)
    build_index(tmp_path / "c", tmp_path / "i",
                BuildOptions(index_spec="Flat", shard_rows=20, tune_queries=20))
    reader = open_index(tmp_path / "i")
    calls = []
    shard_type = type(reader.store.shards[0])
    real = shard_type.find
    monkeypatch.setattr(shard_type, "find", lambda self, ids: calls.append(self) or real(self, ids))
    names, _ = reader.lookup(np.array([5, 397]))
    assert list(names) == [reader.lookup(np.array([5]))[0][0], reader.lookup(np.array([397]))[0][0]]
    calls.clear()
    reader.lookup(np.array([5, 397, 10**9]))
    assert len(calls) == 2   # of 20 shards: the two whose face-id ranges hold 5 and 397
