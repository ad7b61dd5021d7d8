"""Erasing a person enrolled with `faceidx enrol` also rewrites the embedded copies enrol
keeps beside the index (INDEX_DIR.enrolled/), so nothing that identifies them remains."""

from __future__ import annotations

import json

import pytest
from click.testing import CliRunner

from faceidx.cli.main import cli
from faceidx.index.manifest import enrolled_folder
from faceidx.io import open_collection

pytestmark = pytest.mark.slow


def run(*args):
    return CliRunner().invoke(cli, [str(a) for a in args])


def test_erase_rewrites_enrolled_copies(shared_data, tmp_path):
    tree = tmp_path / "people"
    for person in ("s1", "s2", "s3"):
        for n in (1, 2):
            dst = tree / person / f"{n}.pgm"
            dst.parent.mkdir(parents=True, exist_ok=True)
            dst.symlink_to(shared_data / "orl" / person / f"{n}.pgm")
    idx = tmp_path / "idx"
    r = run("enrol", idx, tree, "--detector", "none", "--workers", "0")
    assert r.exit_code == 0, r.output
    copies = [c for c in enrolled_folder(idx).iterdir() if (c / "collection.json").exists()]
    assert copies, "enrol keeps its embedded faces beside the index"

    def people() -> list[str]:
        names = []
        for c in copies:
            names += [str(x) for x in open_collection(c).read_all(columns=["identity"]).identities]
        return names

    assert people().count("s2") == 2
    r = run("erase", idx, "--identity", "s2", "--verify", "--json")
    assert r.exit_code == 0, r.output
    out = json.loads(r.output)
    assert out["enrolled_rows_removed"] == 2 and out["verify"]["clean"]
    assert "s2" not in people() and people().count("s1") == 2
