"""Bad collections: each a clear DataError naming the file (and row), nothing half-written."""

from __future__ import annotations

import json

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from faceidx.errors import DataError, ModelMismatchError
from faceidx.io import CollectionMeta, CollectionWriter, open_collection


def small_collection(path, model="m", dim=4, rows=10, dtype="float32"):
    rng = np.random.default_rng(0)
    with CollectionWriter(path, CollectionMeta(model=model, dim=dim, dtype=dtype)) as w:
        w.write(rng.normal(size=(rows, dim)).astype(np.float32))


def test_missing_path(tmp_path):
    with pytest.raises(DataError, match="no such file"):
        open_collection(tmp_path / "nope")


def test_non_parquet_file(tmp_path):
    bad = tmp_path / "notes.parquet"
    bad.write_text("hello, not parquet")
    with pytest.raises(DataError, match="not a readable parquet") as err:
        open_collection(bad)
    assert str(bad) in str(err.value)


def test_truncated_shard_is_detected(tmp_path):
    small_collection(tmp_path / "c", rows=100)
    shard = tmp_path / "c" / "part-00000.parquet"
    data = shard.read_bytes()
    shard.write_bytes(data[: len(data) // 2])
    with pytest.raises(DataError, match="truncated") as err:
        open_collection(tmp_path / "c")
    assert "part-00000.parquet" in str(err.value)


def test_truncated_foreign_file(tmp_path):
    small_collection(tmp_path / "c", rows=100)
    data = (tmp_path / "c" / "part-00000.parquet").read_bytes()
    (tmp_path / "f").mkdir()
    (tmp_path / "f" / "x.parquet").write_bytes(data[:-100])
    with pytest.raises(DataError, match="x.parquet"):
        open_collection(tmp_path / "f")


@pytest.mark.parametrize("other", [dict(model="other"), dict(dim=8)])
def test_folder_mixing_models_or_dims_is_refused(tmp_path, other):
    small_collection(tmp_path / "a")
    small_collection(tmp_path / "b", **{"model": "m", "dim": 4, **other})
    folder = tmp_path / "mixed"
    folder.mkdir()
    (folder / "1.parquet").write_bytes((tmp_path / "a" / "part-00000.parquet").read_bytes())
    (folder / "2.parquet").write_bytes((tmp_path / "b" / "part-00000.parquet").read_bytes())
    with pytest.raises(ModelMismatchError) as err:
        open_collection(folder)
    assert "2.parquet" in str(err.value)


@pytest.mark.parametrize("value,what", [(np.nan, "NaN"), (np.inf, "NaN or inf"), (0.0, "all zeros")])
def test_writer_refuses_bad_vectors_naming_row(tmp_path, value, what):
    x = np.ones((6, 4), np.float32)
    x[4] = value
    with pytest.raises(DataError, match=what) as err:
        with CollectionWriter(tmp_path / "c", CollectionMeta(model="m", dim=4)) as w:
            w.write(x)
    assert "row 4" in str(err.value)
    assert not list((tmp_path / "c").glob("*.parquet")) and not list((tmp_path / "c").glob(".*"))


def test_writer_refuses_wrong_dimension(tmp_path):
    with pytest.raises(DataError, match=r"shape \(n, 4\)"):
        with CollectionWriter(tmp_path / "c", CollectionMeta(model="m", dim=4)) as w:
            w.write(np.ones((3, 5), np.float32))


@pytest.mark.parametrize("value", [np.nan, 0.0])
def test_reader_refuses_bad_vectors_in_foreign_file_naming_row(tmp_path, value):
    x = np.ones((5, 3), np.float32)
    x[3] = value
    path = tmp_path / "f.parquet"
    pq.write_table(pa.table({
        "face_id": pa.array(np.arange(5), pa.int64()),
        "embedding": pa.FixedSizeListArray.from_arrays(pa.array(x.reshape(-1)), 3),
    }), path)
    coll = open_collection(path)
    with pytest.raises(DataError) as err:
        coll.read_all()
    assert "f.parquet" in str(err.value) and "row 3" in str(err.value)


def test_foreign_file_without_embedding_column(tmp_path):
    path = tmp_path / "f.parquet"
    pq.write_table(pa.table({"face_id": [1, 2]}), path)
    with pytest.raises(DataError, match="missing column"):
        open_collection(path)


def test_variable_length_lists_of_wrong_length(tmp_path):
    path = tmp_path / "f.parquet"
    pq.write_table(pa.table({"face_id": [1, 2], "embedding": [[1.0, 2.0], [1.0]]}), path)
    with pytest.raises(DataError, match="fixed-size"):
        open_collection(path)


def test_corrupt_manifest(tmp_path):
    small_collection(tmp_path / "c")
    (tmp_path / "c" / "collection.json").write_text("{ not json")
    with pytest.raises(DataError, match="collection.json"):
        open_collection(tmp_path / "c")


def test_checksum_mismatch_detected_by_verify(tmp_path):
    small_collection(tmp_path / "c")
    manifest = json.loads((tmp_path / "c" / "collection.json").read_text())
    manifest["shards"][0]["sha256"] = "0" * 64
    (tmp_path / "c" / "collection.json").write_text(json.dumps(manifest))
    with pytest.raises(DataError, match="checksum"):
        open_collection(tmp_path / "c").verify()


def test_writer_refuses_stray_shards_without_manifest(tmp_path):
    (tmp_path / "c").mkdir()
    (tmp_path / "c" / "part-00000.parquet").write_bytes(b"x")
    with pytest.raises(DataError, match="refusing to mix"):
        CollectionWriter(tmp_path / "c", CollectionMeta(model="m", dim=4))
