"""`faceidx train` through click: the ORL run that `faceidx embed --model` then uses, bad input."""

from __future__ import annotations

import json

import pytest
from click.testing import CliRunner

from faceidx.cli.main import cli
from tests.train.conftest import write_tree


@pytest.fixture
def runner():
    return CliRunner()


def test_help_has_an_example(runner):
    result = runner.invoke(cli, ["train", "--help"])
    assert result.exit_code == 0 and "Example:" in result.output and "--mining" in result.output


def test_orl_train_then_embed_with_the_model(runner, shared_data, tmp_path):
    out = tmp_path / "M"
    args = ["-q", "train", str(shared_data / "orl"), "--out", str(out), "--init", "scratch",
            "--epochs", "2", "--detector", "none", "--embedding-dim", "32", "--json"]
    result = runner.invoke(cli, args)
    assert result.exit_code == 0, result.output
    summary = json.loads(result.output)
    assert summary["epochs"] == 2 and [h["epoch"] for h in summary["history"]] == [0, 1, 2]
    assert all(0 <= h["val_accuracy"] <= 1 for h in summary["history"])
    config = json.loads((out / "faceidx-model.json").read_text())
    assert config["architecture"] == "small-cnn" and config["embedding_dim"] == 32

    emb = tmp_path / "E"
    result = runner.invoke(cli, ["-q", "embed", str(shared_data / "orl" / "s1"), "--model", str(out),
                                 "--out", str(emb), "--detector", "none", "--workers", "0"])
    assert result.exit_code == 0, result.output
    from faceidx.io import open_collection

    coll = open_collection(emb)
    assert (coll.meta.model, coll.meta.model_version, coll.dim) == (config["name"], config["version"], 32)
    assert coll.num_rows == 10

    # a second run into the same folder needs --resume; with it, it continues
    result = runner.invoke(cli, args)
    assert result.exit_code == 1 and "--resume" in result.output
    result = runner.invoke(cli, args[:-1] + ["--epochs", "3", "--resume", "--json"])
    assert result.exit_code == 0, result.output
    assert [h["epoch"] for h in json.loads(result.output)["history"]] == [0, 1, 2, 3]
    # resuming with another architecture is refused, naming the checkpoint
    result = runner.invoke(cli, args[:-1] + ["--epochs", "4", "--resume", "--embedding-dim", "16"])
    assert result.exit_code == 1 and "checkpoint.pt" in result.output and "16-D" in result.output


@pytest.mark.parametrize("counts, message", [
    ({"a": 4}, "at least 2 identities, found 1"),
    ({"a": 1, "b": 1, "c": 1}, "an identity with at least 2 images"),
])
def test_untrainable_data_is_a_clear_error(runner, tmp_path, counts, message):
    data = write_tree(tmp_path / "data", counts)
    result = runner.invoke(cli, ["train", str(data), "--out", str(tmp_path / "M"), "--init", "scratch",
                                 "--detector", "none", "--val", "0"])
    assert result.exit_code == 1 and message in result.output and str(data) in result.output


def test_batch_larger_than_data(runner, tmp_path):
    data = write_tree(tmp_path / "data", {f"p{i}": 3 for i in range(4)})
    result = runner.invoke(cli, ["train", str(data), "--out", str(tmp_path / "M"), "--init", "scratch",
                                 "--detector", "none", "--val", "0", "--p", "5", "--k", "2"])
    assert result.exit_code == 1
    assert "P x K = 5 x 2 needs 5 identities with >= 2 images, the data has 4" in result.output


@pytest.mark.parametrize("args, message", [
    (["--val", "1.5"], "a fraction must be in (0, 1)"),
    (["--val", "no/such/folder"], "neither a fraction nor an existing folder"),
    (["--mining", "hardest"], "Invalid value for '--mining'"),
    (["--k", "1"], "Invalid value for '--k'"),
])
def test_usage_errors_exit_2(runner, tmp_path, args, message):
    data = write_tree(tmp_path / "data", {"a": 2, "b": 2})
    result = runner.invoke(cli, ["train", str(data), "--out", str(tmp_path / "M"), *args])
    assert result.exit_code == 2 and message in result.output
