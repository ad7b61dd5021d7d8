"""Every bad input of the integrity audit is a one-line error naming the file, never a
traceback and never a value used as it is."""

from __future__ import annotations

import json
import shutil

import numpy as np
import pyarrow.parquet as pq
import pytest
from click.testing import CliRunner

from faceidx.cli.main import cli
from faceidx.index import BuildOptions, build_index
from faceidx.io import CollectionMeta, CollectionWriter
from faceidx.query.calibfile import CALIBRATION_NAME, FORMAT_NAME
from tests.index.helpers import write_collection


@pytest.fixture(scope="module")
def built(tmp_path_factory):
    root = tmp_path_factory.mktemp("bad")
    x, labels = write_collection(root / "c", n_ids=40, per_id=5)
    build_index(root / "c", root / "idx", BuildOptions(index_spec="IVF4,PQ4x4fs", shard_rows=120,
                                                       tune_queries=40, center=True))
    return root, x, labels


@pytest.fixture
def idx(tmp_path, built):
    shutil.copytree(built[0] / "idx", tmp_path / "idx")
    return tmp_path / "idx"


def query(idx, *probe_args, threshold="0.5"):
    return CliRunner().invoke(cli, ["query", str(idx), *map(str, probe_args), "--threshold",
                                    threshold])


def assert_one_line_error(r, *names):
    assert r.exit_code == 1, r.output
    assert r.exception is None or isinstance(r.exception, SystemExit), repr(r.exception)
    err = r.stderr if hasattr(r, "stderr") else r.output
    assert err.startswith("Error: ") and len(err.strip().splitlines()) == 1, err
    for name in names:
        assert name in err, err


def edit_manifest(idx, fn):
    m = json.loads((idx / "manifest.json").read_text())
    fn(m)
    (idx / "manifest.json").write_text(json.dumps(m))


@pytest.mark.parametrize("edit, says", [
    (lambda m: m["search"].update(nprobe="abc"), "search.nprobe"),
    (lambda m: m["search"].update(nprobe=-5), "search.nprobe"),
    (lambda m: m["search"].update(k_factor=0), "search.k_factor"),
    (lambda m: m["shards"][1].update(row_offset=m["shards"][1]["row_offset"] + 7), "row_offset"),
    (lambda m: m["shards"][0].update(dir="../other.idx/shard-00000"), "not a shard folder"),
    (lambda m: m.update(merged={"file": "/etc/merged.index", "shards": 1}), "merged.file"),
    (lambda m: m.update(complete="yes"), "complete"),
])
def test_edited_manifest_values_are_refused(idx, built, edit, says):
    edit_manifest(idx, edit)
    r = query(idx, built[0] / "c")
    assert_one_line_error(r, "manifest.json", says)


def test_centred_index_without_mean(idx, built):
    (idx / "mean.npy").unlink()
    assert_one_line_error(query(idx, built[0] / "c"), "mean.npy")


@pytest.mark.parametrize("damage, file", [
    (lambda d: (d / "identity_names.bin").write_bytes(
        b"\xff\xfe" + (d / "identity_names.bin").read_bytes()[2:]), "identity_names.bin"),
    (lambda d: np.save(d / "identity_codes.npy",
                       np.full_like(np.load(d / "identity_codes.npy"), 999)), "identity_codes.npy"),
])
def test_damaged_row_store(idx, built, damage, file):
    damage(idx / "shard-00000")
    assert_one_line_error(query(idx, built[0] / "c"), file)


@pytest.mark.parametrize("edit, says", [
    (lambda c: c["threshold"].update(value=True), "threshold.value"),
    (lambda c: c["threshold"].update(target_fpir="x"), "threshold.target_fpir"),
    (lambda c: c["openset"]["extrapolation"]["tail"].update(sigma="wide"), "tail.sigma"),
    (lambda c: c["openset"]["extrapolation"].update(tail={"u": 0.5}), "tail.n_identities"),
])
def test_bad_calibration_values_are_refused(idx, built, edit, says):
    from faceidx.index.search import open_index
    from faceidx.query.calibfile import index_id

    manifest = open_index(idx).manifest
    cal = {"format": FORMAT_NAME, "format_version": 1,
           "index": {"id": index_id(manifest), "identities": 40},
           "threshold": {"value": 0.6, "target_fpir": 0.01, "gallery_identities": 40},
           "openset": {"extrapolation": {"tail": {"n_identities": 40, "searches": 100, "u": 0.4,
                                                  "rate_u": 0.5, "sigma": 0.05,
                                                  "exceedances": 30}}}}
    edit(cal)
    (idx / CALIBRATION_NAME).write_text(json.dumps(cal))
    r = query(idx, built[0] / "c", threshold="auto")
    assert_one_line_error(r, CALIBRATION_NAME, says)


def test_bit_flipped_parquet_is_an_error_at_build(tmp_path, built):
    shutil.copytree(built[0] / "c", tmp_path / "c")
    shard = tmp_path / "c" / "part-00000.parquet"
    data = bytearray(shard.read_bytes())
    data[len(data) // 3] ^= 0x04  # inside the embedding pages; same size
    shard.write_bytes(bytes(data))
    r = CliRunner().invoke(cli, ["build", str(tmp_path / "c"), "--out", str(tmp_path / "i")])
    assert_one_line_error(r, "part-00000.parquet")


@pytest.mark.parametrize("vectors, face_ids, says", [
    ("tiny", None, "norm"), ("ok", [-3], "negative")])
def test_tiny_vectors_and_negative_face_ids_are_refused(tmp_path, vectors, face_ids, says):
    from faceidx.errors import DataError

    x = np.ones((1, 4), np.float32) * (1e-30 if vectors == "tiny" else 1.0)
    with pytest.raises(DataError, match=says), \
            CollectionWriter(tmp_path / "c", CollectionMeta(model="m", dim=4)) as w:
        w.write(x, face_ids=None if face_ids is None else np.asarray(face_ids))


def test_empty_collection_and_sourceless_parquet_as_probes(tmp_path, idx, built):
    with CollectionWriter(tmp_path / "empty", CollectionMeta(model="m", dim=16, model_version="1")):
        pass
    assert_one_line_error(query(idx, tmp_path / "empty"), "empty", "no probe")
    table = pq.read_table(built[0] / "c" / "part-00000.parquet").drop_columns(["source"])
    pq.write_table(table, tmp_path / "nosrc.parquet")
    r = query(idx, tmp_path / "nosrc.parquet")
    assert r.exit_code == 0 and r.exception is None, r.output


def test_paths_outside_the_index_or_collection_are_refused(tmp_path, idx, built):
    other = tmp_path / "other.idx"
    shutil.copytree(idx, other)
    shutil.rmtree(idx / "shard-00000")
    (idx / "shard-00000").symlink_to(other / "shard-00000")
    r = CliRunner().invoke(cli, ["erase", str(idx), "--face-id", "1"])
    assert_one_line_error(r, "symbolic link")
    assert np.load(other / "shard-00000" / "vectors.npy")[1].any()  # untouched
    shutil.copytree(built[0] / "c", tmp_path / "c")
    m = json.loads((tmp_path / "c" / "collection.json").read_text())
    m["shards"][0]["file"] = "../../etc/passwd"
    (tmp_path / "c" / "collection.json").write_text(json.dumps(m))
    r = CliRunner().invoke(cli, ["build", str(tmp_path / "c"), "--out", str(tmp_path / "i")])
    assert_one_line_error(r, "collection.json", "not a file of this collection")
