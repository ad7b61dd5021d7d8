"""Erasure: erased faces never come back, their vectors and sources are wiped."""

from __future__ import annotations

import numpy as np
from click.testing import CliRunner

from faceidx.cli.main import cli
from faceidx.index import BuildOptions, build_index, open_index
from faceidx.index.erase import erase_faces
from tests.index.helpers import write_collection


def test_erase_by_face_id_and_identity(tmp_path):
    x, labels = write_collection(tmp_path / "c", n_ids=300, per_id=8)
    build_index(tmp_path / "c", tmp_path / "idx",
                BuildOptions(index_spec="IVF32,PQ8x4fs", shard_rows=1000, tune_queries=150))
    victim = labels[16]  # faces 16..23
    res = erase_faces(tmp_path / "idx", face_ids=[5], identities=[victim])
    assert res["erased_now"] == 9 and res["erased_total"] == 9 and res["faces"] == len(x) - 9
    reader = open_index(tmp_path / "idx")
    assert reader.ntotal == len(x) - 9
    _, fids = reader.search(x[[5, 16, 17]], k=20, nprobe=32, k_factor=4)
    assert not np.isin(fids, [5, *range(16, 24)]).any()
    ids, srcs = reader.lookup(np.array([5, 16, 6]))
    assert ids[0] is None and srcs[1] is None and ids[2] == labels[6]
    assert np.isnan(reader.exact_scores(x[:1], np.array([[16]]))).all()
    shard = reader.store.shards[0]
    assert not np.asarray(shard.vectors[16:24]).any()
    assert (np.asarray(shard.face_ids)[16:24] == -1).all()
    assert b"img0-16.jpg" not in (shard.folder / "sources.bin").read_bytes()
    assert not (tmp_path / "idx" / "shard-00000").exists()  # replaced by a new version
    # erased faces are gone: erasing them again is an error naming the face id
    r = CliRunner().invoke(cli, ["erase", str(tmp_path / "idx"), "--face-id", "5", "--json"])
    assert r.exit_code == 1 and "face id 5 is not in the index" in r.output
    r = CliRunner().invoke(cli, ["erase", str(tmp_path / "idx")])
    assert r.exit_code == 2
