"""Writing synthetic collections: round trip, float16, resume after a crash, and `faceidx synth`."""

from __future__ import annotations

import json

import numpy as np
import pytest
from click.testing import CliRunner

from faceidx.cli.main import cli
from faceidx.errors import DataError
from faceidx.io import open_collection
from faceidx.synth import MODEL_NAME, SyntheticFaces, iter_synthetic, write_faces
from faceidx.synth import write as synth_write


@pytest.fixture
def runner():
    return CliRunner()


def test_written_collection_round_trips(tmp_path, model16):
    gen = SyntheticFaces(1500, 3, dim=16, seed=2, model=model16)
    summary = write_faces(gen, tmp_path / "c", shard_rows=1000)
    coll = open_collection(tmp_path / "c")
    assert coll.num_rows == summary["rows"] == gen.num_rows()
    assert len(coll.shards) == summary["shards"] == -(-coll.num_rows // 1000)
    assert coll.meta.model == MODEL_NAME and coll.meta.normalized and coll.dim == 16
    assert coll.count_identities() == 1500
    batch = coll.read_all()
    labels, vectors = zip(*iter_synthetic(1500, 3, dim=16, seed=2, model=model16), strict=True)
    np.testing.assert_array_equal(batch.embeddings, np.concatenate(vectors))
    np.testing.assert_array_equal(batch.identities, np.concatenate(labels))
    assert np.array_equal(batch.face_ids, np.arange(coll.num_rows))


def test_float16_storage(tmp_path, model16):
    gen = SyntheticFaces(300, 2, dim=16, seed=0, model=model16)
    write_faces(gen, tmp_path / "h", dtype="float16")
    batch = open_collection(tmp_path / "h").read_all()
    assert open_collection(tmp_path / "h").meta.dtype == "float16"
    np.testing.assert_allclose(np.linalg.norm(batch.embeddings, axis=1), 1.0, atol=2e-3)


def test_resume_after_a_crash_gives_the_uninterrupted_result(tmp_path, model16, monkeypatch):
    gen = SyntheticFaces(4000, 2, dim=16, seed=5, model=model16)
    write_faces(gen, tmp_path / "whole", shard_rows=700)

    monkeypatch.setattr(synth_write, "CHUNK_ROWS", 500)  # one 1024-identity block per chunk
    real_chunks = SyntheticFaces.chunks

    def crashing(self, *args, **kwargs):
        for i, chunk in enumerate(real_chunks(self, *args, **kwargs)):
            if i == 2:
                raise RuntimeError("killed")
            yield chunk

    monkeypatch.setattr(SyntheticFaces, "chunks", crashing)
    with pytest.raises(RuntimeError, match="killed"):
        write_faces(gen, tmp_path / "resumed", shard_rows=700)
    partial = open_collection(tmp_path / "resumed", allow_incomplete=True)
    assert 0 < partial.num_rows < gen.num_rows() and partial.num_rows % 700 == 0

    monkeypatch.setattr(SyntheticFaces, "chunks", real_chunks)
    other = SyntheticFaces(4000, 2, dim=16, seed=6, model=model16)
    with pytest.raises(DataError, match="seed"):
        write_faces(other, tmp_path / "resumed", shard_rows=700, resume=True)
    summary = write_faces(gen, tmp_path / "resumed", shard_rows=700, resume=True)
    assert summary["rows_this_run"] == gen.num_rows() - partial.num_rows

    whole = open_collection(tmp_path / "whole").read_all()
    resumed = open_collection(tmp_path / "resumed").read_all()
    np.testing.assert_array_equal(resumed.embeddings, whole.embeddings)
    np.testing.assert_array_equal(resumed.sources, whole.sources)
    np.testing.assert_array_equal(resumed.face_ids, whole.face_ids)


# -- the command ------------------------------------------------------------------------------


def test_synth_writes_a_collection_info_can_describe(runner, tmp_path):
    out = tmp_path / "faces"
    result = runner.invoke(cli, ["synth", "--out", str(out), "--identities", "400",
                                 "--per-identity", "3", "--dim", "16", "--seed", "1"])
    assert result.exit_code == 0, result.output
    assert "rows" in result.output and (out / "collection.json").exists()
    assert list(out.glob("part-*.parquet"))
    info = runner.invoke(cli, ["info", "--json", str(out)])
    assert info.exit_code == 0, info.output
    summary = json.loads(info.output)
    assert summary["model"] == "synthetic-face-v1" and summary["identities"] == 400
    assert summary["rows"] == SyntheticFaces(400, 3, dim=16, seed=1).num_rows()
    text = runner.invoke(cli, ["info", str(out)])
    assert f"rows: {summary['rows']}" in text.output


def test_synth_report_and_json(runner, tmp_path):
    result = runner.invoke(cli, ["synth", "--out", str(tmp_path / "r"), "--identities", "300",
                                 "--per-identity", "4", "--report"])
    assert result.exit_code == 0, result.output
    for word in ("target", "raw", "stored", "same_cos", "diff_cos_std", "pc1_share",
                 "top_half_share", "0.690"):
        assert word in result.output
    result = runner.invoke(cli, ["synth", "--out", str(tmp_path / "j"), "--identities", "300",
                                 "--per-identity", "2", "--dim", "16", "--float16", "--json",
                                 "--report", "--fixed-counts"])
    assert result.exit_code == 0, result.output
    summary = json.loads(result.output)
    assert summary["rows"] == 600 and summary["dtype"] == "float16"
    assert set(summary["report"]) == {"targets", "raw", "stored", "model"}
    assert summary["report"]["stored"]["avg_norm"] == pytest.approx(1.0, abs=1e-5)


@pytest.mark.parametrize("args", [
    ["--identities", "0"],
    ["--identities", "10", "--per-identity", "0.5"],
    ["--identities", "10", "--dim", "1"],
    ["--identities", "10", "--seed", "-1"],
    ["--identities", "10", "--shard-rows", "0"],
])
def test_synth_bad_arguments_exit_2(runner, tmp_path, args):
    result = runner.invoke(cli, ["synth", "--out", str(tmp_path / "x"), *args])
    assert result.exit_code == 2, result.output
    assert not (tmp_path / "x").exists()


def test_synth_refuses_to_overwrite_without_resume(runner, tmp_path):
    args = ["synth", "--out", str(tmp_path / "c"), "--identities", "50", "--dim", "8"]
    assert runner.invoke(cli, args).exit_code == 0
    result = runner.invoke(cli, args)
    assert result.exit_code == 1 and "already exists" in result.output
    assert "Traceback" not in result.output
    result = runner.invoke(cli, [*args, "--resume"])  # finished already: nothing to add
    assert result.exit_code == 0, result.output


def test_prefetch_keeps_order_passes_errors_and_stops_its_worker():
    import threading

    assert list(synth_write._prefetch(iter(range(50)))) == list(range(50))

    def failing():
        yield 1
        raise ValueError("boom")

    with pytest.raises(ValueError, match="boom"):
        list(synth_write._prefetch(failing()))
    before = threading.active_count()
    for item in synth_write._prefetch(iter(range(1000))):
        if item == 3:
            break  # the consumer stops early: the producer must not stay blocked
    assert threading.active_count() <= before
