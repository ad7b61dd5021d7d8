"""End to end on real faces (ORL, already-cropped, so --detector none): embed, build,
query by image files; image probes agree with the same images embedded as a collection."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from click.testing import CliRunner

from faceidx.cli.main import cli

pytestmark = pytest.mark.slow


def run(*args):
    return CliRunner().invoke(cli, [str(a) for a in args])


def link_tree(root, pairs):
    for person, image, src in pairs:
        d = root / person
        d.mkdir(parents=True, exist_ok=True)
        (d / image).symlink_to(src)
    return root


def test_orl_query_by_images(shared_data, tmp_path):
    orl = shared_data / "orl"
    enrolled = ["s1", "s2", "s3", "s4", "s5"]
    gallery = link_tree(tmp_path / "gallery", [(p, "1.pgm", orl / p / "1.pgm") for p in enrolled])
    probes = link_tree(tmp_path / "probes", [(p, "7.pgm", orl / p / "7.pgm") for p in enrolled[:3]]
                       + [("s30", "1.pgm", orl / "s30" / "1.pgm")])
    r = run("--quiet", "embed", gallery, "--out", tmp_path / "g", "--detector", "none", "--workers", "0")
    assert r.exit_code == 0, r.output
    assert run("--quiet", "build", tmp_path / "g", "--out", tmp_path / "idx").exit_code == 0

    r = run("query", tmp_path / "idx", probes, "-k", "3", "--threshold", "0.5", "--json")
    assert r.exit_code == 0, r.output
    got = [json.loads(ln) for ln in r.stdout.splitlines()]
    assert len(got) == 4
    for g in got:
        names = [c["identity"] for c in g["candidates"]]
        assert len(set(names)) == 3
        assert g["truth"] in enrolled + ["s30"]   # truth from the probe's folder name
        assert g["decision"] == (names[0] if g["score"] >= 0.5 else "unknown")

    r = run("--quiet", "embed", probes, "--out", tmp_path / "p", "--detector", "none", "--workers", "0")
    assert r.exit_code == 0, r.output
    r = run("query", tmp_path / "idx", tmp_path / "p", "-k", "3", "--threshold", "0.5", "--json")
    # a collection stores sources relative to the embedded root (probes/): s1/7.pgm
    same = {json.loads(ln)["probe"]: json.loads(ln) for ln in r.stdout.splitlines()}
    for g in got:
        other = same[str(Path(g["probe"]).relative_to(probes))]
        assert [c["identity"] for c in other["candidates"]] == [c["identity"] for c in g["candidates"]]
        assert other["score"] == pytest.approx(g["score"], abs=1e-4)


def test_probe_without_face(shared_data, tmp_path):
    from PIL import Image

    orl = shared_data / "orl"
    gallery = link_tree(tmp_path / "gallery", [(p, "1.pgm", orl / p / "1.pgm") for p in ("s1", "s2")])
    assert run("--quiet", "embed", gallery, "--out", tmp_path / "g", "--detector", "none",
               "--workers", "0").exit_code == 0
    assert run("--quiet", "build", tmp_path / "g", "--out", tmp_path / "idx").exit_code == 0
    Image.new("RGB", (200, 200), (120, 120, 120)).save(tmp_path / "blank.png")
    r = run("query", tmp_path / "idx", tmp_path / "blank.png", "--detector", "hog", "--threshold", "0.5")
    assert r.exit_code == 0  # a probe without a face is an answer (no_face), not a failure
    assert "blank.png: no face; probe skipped" in r.output and "1 skipped" in r.output
    r = run("query", tmp_path / "idx", tmp_path / "blank.png", "--detector", "hog", "--threshold",
            "0.5", "--json")
    record = json.loads(next(line for line in r.output.splitlines() if line.startswith('{"probe"')))
    assert record["status"] == "no_face" and record["candidates"] == []
