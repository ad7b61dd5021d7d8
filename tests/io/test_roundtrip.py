"""Writer/reader round trips: dtypes, shards, resume, empty input, sampling."""

from __future__ import annotations

import json

import numpy as np
import pyarrow as pa
import pytest

from faceidx.errors import DataError, IncompleteError
from faceidx.io import CollectionMeta, CollectionWriter, open_collection
from tests.conftest import make_clusters


def write(path, x, labels, dtype="float32", shard_rows=100, buffer_rows=32, chunk=37, **kw):
    meta = CollectionMeta(model="test-model", dim=x.shape[1], dtype=dtype)
    with CollectionWriter(path, meta, shard_rows=shard_rows, buffer_rows=buffer_rows, **kw) as w:
        for i in range(0, len(x), chunk):
            w.write(x[i:i + chunk], identities=labels[i:i + chunk],
                    sources=[f"img{j}.jpg" for j in range(i, min(i + chunk, len(x)))])
    return w.result


@pytest.mark.parametrize("dtype,tol", [("float32", 0.0), ("float16", 1e-3)])
def test_roundtrip_several_shards(tmp_path, dtype, tol):
    x, labels = make_clusters(30, 10, 16)
    result = write(tmp_path / "c", x, labels, dtype=dtype)
    assert (result.rows, result.shards) == (300, 3)
    coll = open_collection(tmp_path / "c")
    assert coll.num_rows == 300 and coll.dim == 16 and coll.meta.dtype == dtype
    got = coll.read_all()
    np.testing.assert_array_equal(got.face_ids, np.arange(300))
    np.testing.assert_allclose(got.embeddings, x, atol=tol)
    assert list(got.identities) == list(labels)
    assert got.sources[5] == "img5.jpg"
    assert coll.count_identities() == 30
    coll.verify()


def test_iter_batches_bounded_and_complete(tmp_path):
    x, labels = make_clusters(20, 10, 8)
    write(tmp_path / "c", x, labels)
    coll = open_collection(tmp_path / "c")
    sizes, ids = [], []
    for b in coll.iter_batches(batch_size=25, columns=["face_id"]):
        assert b.embeddings is None
        sizes.append(len(b))
        ids.append(b.face_ids)
    assert max(sizes) <= 25
    np.testing.assert_array_equal(np.concatenate(ids), np.arange(200))


def test_empty_input_writes_empty_collection(tmp_path):
    meta = CollectionMeta(model="m", dim=4)
    with CollectionWriter(tmp_path / "c", meta) as w:
        w.write(np.empty((0, 4), np.float32))
    assert w.result.rows == 0
    coll = open_collection(tmp_path / "c")
    assert coll.num_rows == 0 and coll.dim == 4
    assert len(coll.sample(10)) == 0


def test_sample_is_seeded_uniform_and_without_replacement(tmp_path):
    n = 1000
    x, labels = make_clusters(100, 10, 4)
    write(tmp_path / "c", x, labels, shard_rows=300, buffer_rows=50, chunk=100)
    coll = open_collection(tmp_path / "c")
    a, b = coll.sample(200, seed=3), coll.sample(200, seed=3)
    np.testing.assert_array_equal(a.face_ids, b.face_ids)
    assert len(np.unique(a.face_ids)) == 200
    np.testing.assert_allclose(a.embeddings, x[a.face_ids])
    assert not np.array_equal(a.face_ids, coll.sample(200, seed=4).face_ids)
    # uniformity: over many seeds every decile of rows is hit about equally often
    counts = np.zeros(10)
    for seed in range(200):
        counts += np.bincount(coll.sample(50, seed=seed, columns=["face_id"]).face_ids // (n // 10),
                              minlength=10)
    expected = 200 * 50 / 10
    chi2 = ((counts - expected) ** 2 / expected).sum()
    assert chi2 < 27.9  # chi-square, 9 dof, p = 0.001
    assert len(coll.sample(5000)) == n


def test_resume_after_crash_keeps_finished_shards_and_ids(tmp_path):
    x, labels = make_clusters(25, 10, 8)
    meta = CollectionMeta(model="m", dim=8)
    with pytest.raises(RuntimeError):
        with CollectionWriter(tmp_path / "c", meta, shard_rows=100, buffer_rows=50) as w:
            w.write(x[:150], identities=labels[:150])
            raise RuntimeError("killed")
    with pytest.raises(IncompleteError, match="incomplete"):
        open_collection(tmp_path / "c")
    partial = open_collection(tmp_path / "c", allow_incomplete=True)
    assert partial.num_rows == 100
    assert not list((tmp_path / "c").glob(".*tmp"))
    with pytest.raises(DataError, match="already exists"):
        CollectionWriter(tmp_path / "c", meta)
    with CollectionWriter(tmp_path / "c", meta, shard_rows=100, buffer_rows=50, resume=True) as w:
        assert w.next_face_id == 150  # ids of the lost rows are never reused
        w.write(x[100:], identities=labels[100:])
    coll = open_collection(tmp_path / "c")
    got = coll.read_all()
    assert coll.num_rows == 250
    assert len(np.unique(got.face_ids)) == 250
    np.testing.assert_allclose(got.embeddings, x)


def test_resume_refuses_other_model(tmp_path):
    x, labels = make_clusters(5, 4, 8)
    write(tmp_path / "c", x, labels)
    with pytest.raises(DataError, match="model"):
        CollectionWriter(tmp_path / "c", CollectionMeta(model="other", dim=8), resume=True)


def test_extra_columns_roundtrip(tmp_path):
    meta = CollectionMeta(model="m", dim=4)
    extra = (pa.field("det_score", pa.float32()), pa.field("box", pa.list_(pa.int32(), 4)))
    with CollectionWriter(tmp_path / "c", meta, extra_fields=extra) as w:
        w.write(np.ones((2, 4), np.float32), extra={"det_score": [0.5, 0.7],
                                                     "box": [[1, 2, 3, 4], [5, 6, 7, 8]]})
    got = open_collection(tmp_path / "c").read_all()
    np.testing.assert_allclose(got.extra["det_score"], [0.5, 0.7])
    assert list(got.extra["box"][1]) == [5, 6, 7, 8]
    manifest = json.loads((tmp_path / "c" / "collection.json").read_text())
    assert manifest["extra_columns"] == ["det_score", "box"] and manifest["complete"]


def test_foreign_parquet_file_and_folder(tmp_path):
    import pyarrow.parquet as pq

    x, _ = make_clusters(3, 3, 6)
    table = pa.table({
        "face_id": pa.array(np.arange(9), pa.int64()),
        "identity": pa.array(["a"] * 9),
        "source": pa.array([f"s{i}" for i in range(9)]),
        "embedding": pa.FixedSizeListArray.from_arrays(pa.array(x.reshape(-1)), 6),
    })
    (tmp_path / "folder").mkdir()
    pq.write_table(table, tmp_path / "folder" / "a.parquet")
    pq.write_table(table.slice(0, 4), tmp_path / "folder" / "b.parquet")
    one = open_collection(tmp_path / "folder" / "a.parquet")
    assert one.num_rows == 9 and one.meta.model == "unknown" and one.dim == 6
    np.testing.assert_allclose(one.read_all().embeddings, x)
    assert open_collection(tmp_path / "folder").num_rows == 13
