"""The README's Python API example runs as written (issue 14 item 5), in a folder holding
what it names: people.index (enrolled and calibrated from real ORL faces, already cropped
so --detector none), photo.jpg, probe.npy, jane1.jpg and jane2.jpg."""

from __future__ import annotations

import contextlib
import io
import json
import re
import shutil
from pathlib import Path

import numpy as np
import pytest
from click.testing import CliRunner

from faceidx.cli.main import cli

pytestmark = pytest.mark.slow

README = Path(__file__).resolve().parents[2] / "README.md"


def readme_python_example() -> str:
    blocks = re.findall(r"```python\n(.*?)```", README.read_text(), flags=re.S)
    assert blocks, "README.md has no ```python example"
    return blocks[0]


def run(*args):
    r = CliRunner().invoke(cli, [str(a) for a in args])
    assert r.exit_code == 0, r.output
    return r


def test_readme_python_example_runs(shared_data, tmp_path, monkeypatch):
    orl = shared_data / "orl"
    for s in ("s1", "s2", "s3", "s4"):
        (tmp_path / "known" / s).mkdir(parents=True)
        shutil.copy(orl / s / "1.pgm", tmp_path / "known" / s / "1.pgm")
    for i in range(10, 30):                      # never-enrolled people, two photos each
        for n in (1, 2):
            (tmp_path / "holdout" / f"s{i}").mkdir(parents=True, exist_ok=True)
            shutil.copy(orl / f"s{i}" / f"{n}.pgm", tmp_path / "holdout" / f"s{i}")
    run("enrol", tmp_path / "people.index", tmp_path / "known", "--detector", "none",
        "--workers", "0", "-q")
    run("calibrate", tmp_path / "people.index", "--holdout", tmp_path / "holdout",
        "--target-fpir", "0.1", "--target-far", "0.01", "-q")
    shutil.copy(orl / "s1" / "4.pgm", tmp_path / "photo.jpg")      # formats are sniffed
    shutil.copy(orl / "s40" / "1.pgm", tmp_path / "jane1.jpg")
    shutil.copy(orl / "s40" / "2.pgm", tmp_path / "jane2.jpg")
    r = run("enrol", tmp_path / "scratch.index", orl / "s35" / "1.pgm", "--name", "x",
            "--detector", "none", "--workers", "0", "--json")
    emb = json.loads(r.stdout)["collection"]
    from faceidx.io import open_collection

    np.save(tmp_path / "probe.npy", open_collection(emb).read_all().embeddings[0])  # a stranger

    monkeypatch.chdir(tmp_path)
    out = io.StringIO()
    with contextlib.redirect_stdout(out):
        exec(compile(readme_python_example(), "README.md", "exec"), {})
    lines = out.getvalue().splitlines()
    assert lines[0].split()[-4:-2] == ["known", "s1"]        # photo.jpg is s1, by name
    assert lines[1].startswith("unknown; closest:")          # probe.npy is a stranger
    import faceidx

    g = faceidx.open_gallery(tmp_path / "people.index")
    assert g.info()["index"]["identities"] == 4              # Jane_Doe enrolled, then erased
    assert g.identities(prefix="Jane")[0] == 0
