"""The CLI frame: --version, info, error translation, and --help with an example everywhere."""

from __future__ import annotations

import json

import numpy as np
import pytest
from click.testing import CliRunner

from faceidx import __version__
from faceidx.cli.main import cli
from faceidx.io import CollectionMeta, CollectionWriter


@pytest.fixture
def runner():
    return CliRunner()


@pytest.fixture
def collection(tmp_path):
    rng = np.random.default_rng(0)
    meta = CollectionMeta(model="m", dim=8, model_version="1")
    with CollectionWriter(tmp_path / "c", meta, shard_rows=40) as w:
        w.write(rng.normal(size=(100, 8)).astype(np.float32),
                identities=[f"p{i % 7}" for i in range(100)])
    return tmp_path / "c"


def test_version(runner):
    result = runner.invoke(cli, ["--version"])
    assert result.exit_code == 0 and __version__ in result.output


def test_info_text_and_json(runner, collection):
    result = runner.invoke(cli, ["info", str(collection)])
    assert result.exit_code == 0, result.output
    assert "rows: 100" in result.output and "identities: 7" in result.output
    result = runner.invoke(cli, ["info", "--json", "--verify", str(collection)])
    summary = json.loads(result.output)
    assert summary["rows"] == 100 and summary["shards"] == 3 and summary["dim"] == 8
    assert summary["model"] == "m" and summary["verified"] is True


def test_data_error_is_one_line_naming_the_file_exit_1(runner, tmp_path):
    bad = tmp_path / "broken.parquet"
    bad.write_bytes(b"PAR1 garbage")
    result = runner.invoke(cli, ["info", str(bad)])
    assert result.exit_code == 1
    assert "broken.parquet" in result.output and "Traceback" not in result.output
    assert result.output.strip().count("\n") == 0


def test_usage_error_exit_2(runner, tmp_path):
    result = runner.invoke(cli, ["info", str(tmp_path / "missing")])
    assert result.exit_code == 2
    result = runner.invoke(cli, ["no-such-command"])
    assert result.exit_code == 2


def _commands(group, prefix=()):
    for name, command in group.commands.items():
        yield prefix + (name,), command
        if hasattr(command, "commands"):
            yield from _commands(command, prefix + (name,))


def test_every_command_has_help_with_an_example(runner):
    commands = list(_commands(cli))
    assert commands, "no commands registered"
    for path, _command in [((), cli), *commands]:
        result = runner.invoke(cli, [*path, "--help"])
        assert result.exit_code == 0, path
        assert "Example" in result.output, f"faceidx {' '.join(path)} --help has no example"
