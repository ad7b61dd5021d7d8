"""`faceidx embed` through click's CliRunner: exit codes, messages, summary, end to end."""

from __future__ import annotations

import json
import shutil

import numpy as np
import pytest
from click.testing import CliRunner

from faceidx.cli.main import cli
from faceidx.embedder import pipeline
from faceidx.io import open_collection
from tests.embedder.standin import TinyFaceModel


@pytest.fixture
def tiny_model(monkeypatch):
    """--model tiny resolves to the stand-in; other specs go to the real registry."""
    real = pipeline.open_model
    monkeypatch.setattr(pipeline, "open_model",
                        lambda spec, device="auto": TinyFaceModel() if spec == "tiny" else real(spec, device))


@pytest.fixture
def yale_flat(tmp_path, shared_data):
    root = tmp_path / "yale"
    root.mkdir()
    for subject in ("01", "02"):
        for cond in ("happy", "sad"):
            shutil.copy(shared_data / f"yale/subject{subject}.{cond}", root)
    (root / "subject03.broken").write_bytes(b"GIF89a\x10\x00")  # a GIF header and nothing else
    return root


def test_help_has_an_example():
    result = CliRunner().invoke(cli, ["embed", "--help"])
    assert result.exit_code == 0
    assert "Example:" in result.output and "--identity-regex" in result.output


def test_flat_folder_with_regex_json_summary(tiny_model, yale_flat, tmp_path):
    out = tmp_path / "emb"
    result = CliRunner().invoke(cli, ["embed", str(yale_flat), "--out", str(out), "--model", "tiny",
                                      "--identity-regex", r"subject(\d+)\.", "--workers", "0",
                                      "--device", "cpu", "--json"])
    assert result.exit_code == 0, result.output
    summary = json.loads(result.output)
    assert summary["images"] == 5 and summary["faces"] == 4
    assert summary["failures"] == {"corrupt": 1}
    batch = open_collection(out).read_all()
    assert sorted(batch.identities) == ["01", "01", "02", "02"]
    failures = [json.loads(line) for line in (out / "failures.jsonl").read_text().splitlines()]
    assert failures[0]["identity"] == "03" and failures[0]["reason"] == "corrupt"


def test_text_summary_and_rerun_resumes(tiny_model, yale_flat, tmp_path):
    args = ["embed", str(yale_flat), "--out", str(tmp_path / "emb"), "--model", "tiny",
            "--workers", "0", "--device", "cpu"]
    first = CliRunner().invoke(cli, args)
    assert first.exit_code == 0, first.output
    assert "images   5" in first.output and "failures 1 (corrupt 1" in first.output
    assert "images/s" in first.output
    second = CliRunner().invoke(cli, args)
    assert second.exit_code == 0
    assert "(5 already done)" in second.output and "4 in " in second.output
    assert open_collection(tmp_path / "emb").num_rows == 4


def test_usage_errors_exit_2(tiny_model, yale_flat, tmp_path):
    runner = CliRunner()
    missing = runner.invoke(cli, ["embed", str(tmp_path / "nope"), "--out", str(tmp_path / "o")])
    assert missing.exit_code == 2 and "does not exist" in missing.output
    no_out = runner.invoke(cli, ["embed", str(yale_flat)])
    assert no_out.exit_code == 2 and "--out" in no_out.output
    bad_regex = runner.invoke(cli, ["embed", str(yale_flat), "--out", str(tmp_path / "o"),
                                    "--identity-regex", "subject("])
    assert bad_regex.exit_code == 2 and "--identity-regex" in bad_regex.output
    bad_tta = runner.invoke(cli, ["embed", str(yale_flat), "--out", str(tmp_path / "o"), "--tta", "x"])
    assert bad_tta.exit_code == 2


def test_data_errors_exit_1_naming_the_file(tiny_model, yale_flat, tmp_path):
    runner = CliRunner()
    unknown = runner.invoke(cli, ["embed", str(yale_flat), "--out", str(tmp_path / "o"),
                                  "--model", "no-such-model", "--device", "cpu"])
    assert unknown.exit_code == 1 and "no-such-model" in unknown.output
    empty = tmp_path / "empty"
    empty.mkdir()
    nothing = runner.invoke(cli, ["embed", str(empty), "--out", str(tmp_path / "o")])
    assert nothing.exit_code == 1 and "holds no image files" in nothing.output
    args = ["embed", str(yale_flat), "--out", str(tmp_path / "e"), "--model", "tiny",
            "--workers", "0", "--device", "cpu"]
    assert runner.invoke(cli, args).exit_code == 0
    changed = runner.invoke(cli, [*args, "--detector", "none"])
    assert changed.exit_code == 1 and "embed.json" in changed.output and "detector" in changed.output


def test_end_to_end_real_model_on_orl(shared_data, tmp_path):
    """The dlib ResNet on 2 ORL identities x 3 images: same person closer than others."""
    src = tmp_path / "orl"
    for s in ("s1", "s2"):
        (src / s).mkdir(parents=True)
        for k in (1, 2, 3):
            shutil.copy(shared_data / f"orl/{s}/{k}.pgm", src / s)
    out = tmp_path / "emb"
    result = CliRunner().invoke(cli, ["embed", str(src), "--out", str(out), "--workers", "2",
                                      "--device", "cpu", "--json"])
    assert result.exit_code == 0, result.output
    summary = json.loads(result.output)
    assert summary["faces"] + summary["failed"] == 6 and summary["faces"] >= 4
    batch = open_collection(out).read_all()
    assert batch.embeddings.shape[1] == 128
    sims = batch.embeddings @ batch.embeddings.T
    same = batch.identities[:, None] == batch.identities[None, :]
    off = ~np.eye(len(sims), dtype=bool)
    assert sims[same & off].min() > sims[~same].max()
