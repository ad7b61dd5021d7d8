"""faceidx build / add / merge / info on index dirs through CliRunner: exit codes, messages."""

from __future__ import annotations

import json

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from click.testing import CliRunner

from faceidx.cli.build import parse_size
from faceidx.cli.main import cli
from faceidx.io import CollectionMeta, make_schema
from tests.index.helpers import write_collection


@pytest.fixture
def runner():
    return CliRunner()


def run(runner, *args):
    return runner.invoke(cli, ["-q", *map(str, args)], catch_exceptions=False)


def test_build_info_add_merge(tmp_path, runner):
    write_collection(tmp_path / "c", n_ids=300, per_id=8)
    r = run(runner, "build", tmp_path / "c", "--out", tmp_path / "idx", "--index-spec",
            "IVF32,PQ8x4fsr", "--tune-queries", "200", "--json")
    assert r.exit_code == 0, r.output
    built = json.loads(r.output)
    assert built["rows"] == 2400 and built["identities"] == 300 and built["nprobe"] >= 1
    r = run(runner, "info", tmp_path / "idx", "--json")
    info = json.loads(r.output)
    assert info["kind"] == "index" and info["factory"] == "IVF32,PQ8x4fsr"
    assert info["tuned_agreement"] >= 0.995 and info["model"] == "m"
    r = run(runner, "info", tmp_path / "idx")
    assert "nprobe" in r.output and "k_factor" in r.output
    write_collection(tmp_path / "new", n_ids=10, per_id=4, seed=2)
    r = run(runner, "add", tmp_path / "idx", tmp_path / "new")
    assert r.exit_code == 0 and "added 40 faces" in r.output
    r = run(runner, "info", tmp_path / "idx", "--json")
    before = json.loads(r.output)
    assert before["searched_parts"] == before["shards"] == 2
    r = run(runner, "tune", tmp_path / "idx", "--tune-queries", "50")
    assert r.exit_code == 0 and "search visits 2 parts" in r.output and "faceidx merge" in r.output
    r = run(runner, "merge", tmp_path / "idx", "--json")
    merged = json.loads(r.output)
    assert r.exit_code == 0 and merged["merged"] is True and merged["searched_parts"] == 1
    # one quantizer instead of one per shard
    assert merged["index_bytes_per_vector"] < before["index_bytes_per_vector"]
    r = run(runner, "tune", tmp_path / "idx", "--target-agreement", "0.5", "--tune-queries", "100",
            "--json")
    assert r.exit_code == 0, r.output
    tuned = json.loads(r.output)
    assert tuned["rows"] == 2440 and tuned["tuned_agreement"] >= 0.5
    manifest = json.loads((tmp_path / "idx" / "manifest.json").read_text())
    assert manifest["tuning"]["target"] == 0.5 and manifest["tuning"]["queries"] == 100


def test_tune_refuses_an_unfinished_index(tmp_path, runner):
    write_collection(tmp_path / "c", n_ids=100, per_id=4)
    assert run(runner, "build", tmp_path / "c", "--out", tmp_path / "idx").exit_code == 0
    manifest = json.loads((tmp_path / "idx" / "manifest.json").read_text())
    manifest["complete"] = False
    (tmp_path / "idx" / "manifest.json").write_text(json.dumps(manifest))
    r = run(runner, "tune", tmp_path / "idx")
    assert r.exit_code == 1 and "unfinished" in r.output and "idx" in r.output


def test_empty_collection(tmp_path, runner):
    write_collection(tmp_path / "c", n_ids=0, per_id=1)
    r = run(runner, "build", tmp_path / "c", "--out", tmp_path / "idx")
    assert r.exit_code == 1 and "empty" in r.output
    assert not (tmp_path / "idx").exists()


def test_duplicate_face_ids(tmp_path, runner):
    fids = np.arange(2400)
    fids[1500] = 17  # in the second shard, colliding with the first
    write_collection(tmp_path / "c", n_ids=300, per_id=8, face_ids=fids)
    r = run(runner, "build", tmp_path / "c", "--out", tmp_path / "idx", "--index-spec",
            "IVF32,PQ8x4fsr", "--shard-rows", "1000")
    assert r.exit_code == 1 and "face_id 17 appears more than once" in r.output
    assert str(tmp_path / "c") in r.output


def test_nan_vectors(tmp_path, runner):
    meta = CollectionMeta(model="m", dim=4)
    x = np.ones((30, 4), np.float32)
    x[12, 2] = np.nan
    table = pa.table({"face_id": np.arange(30), "identity": ["a"] * 30, "source": ["s"] * 30,
                      "embedding": pa.FixedSizeListArray.from_arrays(pa.array(x.ravel()), 4)},
                     schema=make_schema(meta))
    pq.write_table(table, tmp_path / "bad.parquet")
    r = run(runner, "build", tmp_path / "bad.parquet", "--out", tmp_path / "idx")
    assert r.exit_code == 1 and "NaN" in r.output and "row 12" in r.output


def test_model_mismatch_on_add(tmp_path, runner):
    write_collection(tmp_path / "c", n_ids=20, per_id=3)
    assert run(runner, "build", tmp_path / "c", "--out", tmp_path / "idx").exit_code == 0
    write_collection(tmp_path / "o", n_ids=5, per_id=2, model="arcface")
    r = run(runner, "add", tmp_path / "idx", tmp_path / "o")
    assert r.exit_code == 1 and "arcface" in r.output and str(tmp_path / "o") in r.output


def test_damaged_index_and_bad_spec(tmp_path, runner):
    write_collection(tmp_path / "c", n_ids=20, per_id=3)
    r = run(runner, "build", tmp_path / "c", "--out", tmp_path / "idx", "--index-spec", "Bogus12")
    assert r.exit_code == 2 and "Bogus12" in r.output
    assert run(runner, "build", tmp_path / "c", "--out", tmp_path / "i2").exit_code == 0
    (tmp_path / "i2" / "manifest.json").write_text("{not json")
    r = run(runner, "info", tmp_path / "i2")
    assert r.exit_code == 1 and "manifest.json" in r.output


def test_too_small_for_the_spec_falls_back(tmp_path, runner):
    write_collection(tmp_path / "c", n_ids=30, per_id=3)
    r = run(runner, "build", tmp_path / "c", "--out", tmp_path / "idx", "--index-spec",
            "IVF4096,PQ8x4fsr", "--json")
    assert r.exit_code == 0
    assert "Flat" in json.loads(r.stdout)["fallback"]


def test_parse_size():
    assert parse_size("4G") == 4 << 30 and parse_size("512MiB") == 512 << 20
    assert parse_size("1000") == 1000 and parse_size(None) is None
    with pytest.raises(Exception, match="size"):
        parse_size("lots")


def test_help_has_examples(runner):
    for cmd in ("build", "add", "merge", "tune"):
        r = runner.invoke(cli, [cmd, "--help"])
        assert r.exit_code == 0 and "Example:" in r.output


def test_build_with_a_trained_index_made_elsewhere(tmp_path, runner):
    x, _ = write_collection(tmp_path / "c", n_ids=300, per_id=8)
    spec = ["--index-spec", "IVF32,PQ8x4fsr", "--tune-queries", "200"]
    assert run(runner, "build", tmp_path / "c", "--out", tmp_path / "a", *spec).exit_code == 0
    trained = tmp_path / "a" / "trained.index"
    r = run(runner, "build", tmp_path / "c", "--out", tmp_path / "b", *spec, "--trained", trained)
    assert r.exit_code == 0, r.output
    manifest = json.loads((tmp_path / "b" / "manifest.json").read_text())
    assert manifest["build"]["train"]["trained_from"] == str(trained.resolve())
    assert (tmp_path / "b" / "trained.index").read_bytes() == trained.read_bytes()
    from faceidx.index import open_index

    a = open_index(tmp_path / "a").search(x[:200], k=3, nprobe=8)
    b = open_index(tmp_path / "b").search(x[:200], k=3, nprobe=8)
    np.testing.assert_array_equal(a[1], b[1])  # the same trained index adds the same codes


def test_build_refuses_a_trained_index_of_another_spec(tmp_path, runner):
    write_collection(tmp_path / "c", n_ids=300, per_id=8)
    assert run(runner, "build", tmp_path / "c", "--out", tmp_path / "a", "--index-spec",
               "IVF32,PQ8x4fsr", "--tune-queries", "200").exit_code == 0
    trained = tmp_path / "a" / "trained.index"
    r = run(runner, "build", tmp_path / "c", "--out", tmp_path / "b", "--index-spec", "IVF64,PQ4x4fsr",
            "--trained", trained)
    assert r.exit_code == 1
    assert str(trained) in r.output and "32 lists" in r.output and "4 B" in r.output
    r = run(runner, "build", tmp_path / "c", "--out", tmp_path / "d", "--index-spec", "IVF32,PQ8x4fsr",
            "--trained", tmp_path / "a" / "shard-00000" / "index.faiss")
    assert r.exit_code == 1 and "already holds 2400 vectors" in r.output
    r = run(runner, "build", tmp_path / "c", "--out", tmp_path / "e", "--trained", trained, "--center")
    assert r.exit_code == 2 and "--center" in r.output
