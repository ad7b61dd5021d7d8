"""faceidx calibrate / faceidx query through CliRunner: results, exit codes, messages."""

from __future__ import annotations

import json
import shutil

import numpy as np
import pytest
from click.testing import CliRunner

from faceidx.cli.main import cli
from faceidx.index import BuildOptions, build_index
from faceidx.io import CollectionMeta
from tests.query.conftest import split_gallery, write_collection


@pytest.fixture(scope="module")
def setup(tmp_path_factory, small_index):
    """A copy of the small index (so calibration.json stays local) and extra collections."""
    d = tmp_path_factory.mktemp("cli")
    shutil.copytree(small_index["index"], d / "index")
    x, labels = small_index["x"], small_index["labels"]
    write_collection(d / "one_id", x[:4], labels[:4], [f"s{i}" for i in range(4)])
    other = CollectionMeta(model="other-model", dim=32)
    write_collection(d / "other_model", x[:8], labels[:8], [f"s{i}" for i in range(8)], other)
    # a second, different index (other data) whose calibration must not be used here
    x2, l2, s2, g2 = split_gallery(n_ids=100, enrolled=60, seed=7)
    write_collection(d / "g2", x2[g2], l2[g2], s2[g2])
    build_index(d / "g2", d / "index2", BuildOptions(tune_queries=50))
    return d, small_index


def run(*args):
    return CliRunner().invoke(cli, [str(a) for a in args])


@pytest.fixture(scope="module")
def calibrated(setup):
    d, s = setup
    r = run("calibrate", d / "index", "--holdout", s["holdout"], "--target-fpir", "0.02",
            "--plots", d / "plots")
    assert r.exit_code == 0, r.output
    return r


def test_calibrate_then_query_auto(setup, calibrated):
    d, s = setup
    out = calibrated.output
    assert "FPIR" in out and "TPIR" in out and "rank-1" in out
    assert "at 10x N" in out and "at 100x N" in out
    for name in ("scores.png", "roc.png", "openset.png"):
        assert (d / "plots" / name).stat().st_size > 1000
    cal = json.loads((d / "index" / "calibration.json").read_text())
    assert cal["openset"]["gallery_identities"] == 200 and cal["index"]["identities"] == 200

    r = run("query", d / "index", s["holdout"], "-k", "3", "--json")
    assert r.exit_code == 0, r.output
    lines = [json.loads(ln) for ln in r.stdout.splitlines()]
    assert len(lines) == (~s["gallery"]).sum()
    for ln in lines:
        names = [c["identity"] for c in ln["candidates"]]
        assert len(names) == 3 == len(set(names))
        assert ln["threshold"] == cal["threshold"]["value"]
        assert ln["decision"] == (names[0] if ln["score"] >= ln["threshold"] else "unknown")
    assert '"summary"' in r.stderr

    r = run("query", d / "index", s["holdout"], "-k", "2")
    assert r.exit_code == 0, r.output
    assert "threshold" in r.output and "latency" in r.output and "unknown" in r.output


def test_query_fixed_threshold_and_bad_threshold(setup):
    d, s = setup
    r = run("query", d / "index", s["holdout"], "--threshold", "0.6", "--json")
    assert r.exit_code == 0
    assert all(json.loads(ln)["threshold"] == 0.6 for ln in r.stdout.splitlines())
    r = run("query", d / "index", s["holdout"], "--threshold", "1.5")
    assert r.exit_code == 2 and "outside the cosine score range" in r.output
    r = run("query", d / "index", s["holdout"], "--threshold", "high")
    assert r.exit_code == 2


def test_query_auto_without_calibration(setup):
    d, s = setup
    r = run("query", d / "index2", s["holdout"])
    assert r.exit_code == 1 and "faceidx calibrate" in r.output


def test_calibration_of_another_index_refused(setup, calibrated):
    d, s = setup
    shutil.copy(d / "index" / "calibration.json", d / "index2" / "calibration.json")
    try:
        r = run("query", d / "index2", s["holdout"])
        assert r.exit_code == 1 and "another index" in r.output
    finally:
        (d / "index2" / "calibration.json").unlink()


@pytest.mark.parametrize("holdout,message", [
    ("one_id", "1 identity"),
    ("other_model", "does not match"),
])
def test_calibrate_bad_holdouts(setup, holdout, message):
    d, _ = setup
    r = run("calibrate", d / "index", "--holdout", d / holdout)
    assert r.exit_code == 1 and message in r.output, r.output


def test_calibrate_bad_rates(setup):
    d, s = setup
    r = run("calibrate", d / "index", "--holdout", s["holdout"], "--target-far", "2")
    assert r.exit_code == 2 and "between 0 and 1" in r.output


def test_query_other_model_probe_refused(setup):
    d, _ = setup
    r = run("query", d / "index", d / "other_model", "--threshold", "0.5")
    assert r.exit_code == 1 and "does not match" in r.output


def test_image_probes_need_a_loadable_model(setup, tmp_path):
    d, _ = setup
    from PIL import Image

    Image.new("RGB", (64, 64), (128, 128, 128)).save(tmp_path / "grey.png")
    r = run("query", d / "index", tmp_path / "grey.png", "--threshold", "0.5")
    assert r.exit_code == 1 and "test-model" in r.output and "cannot be loaded" in r.output


def test_help_has_examples():
    for cmd in ("query", "calibrate"):
        r = run(cmd, "--help")
        assert r.exit_code == 0 and "Example:" in r.output


def test_gallery_growth_warns(setup, calibrated, tmp_path):
    d, s = setup
    idx = tmp_path / "index"
    shutil.copytree(d / "index", idx)
    x, labels = s["x"], s["labels"]
    new = np.isin(labels, np.unique(labels)[300:320])
    write_collection(tmp_path / "new", x[new], labels[new], [f"n{i}" for i in np.flatnonzero(new)])
    assert run("add", idx, tmp_path / "new").exit_code == 0
    r = run("query", idx, s["holdout"], "--json")
    assert r.exit_code == 0, r.output
    assert "has grown from 200 to 220 identities" in r.stderr


@pytest.mark.slow
def test_group_photo_all_faces_and_skipped_probe_records(shared_data, tmp_path):
    """--faces all answers every face of a group photo, each with its box; an image
    without a face still gets a JSON record (status no_face)."""
    from PIL import Image

    lfw = shared_data / "lfw-subset"
    people = sorted(p for p in lfw.iterdir() if p.is_dir() and len(list(p.iterdir())) >= 2)[:4]
    gallery = tmp_path / "gallery"
    for p in people:
        (gallery / p.name).mkdir(parents=True)
        first = sorted(p.iterdir())[0]
        (gallery / p.name / first.name).symlink_to(first)
    assert run("--quiet", "embed", gallery, "--out", tmp_path / "g", "--workers", "0").exit_code == 0
    assert run("--quiet", "build", tmp_path / "g", "--out", tmp_path / "idx").exit_code == 0
    second = [Image.open(sorted(p.iterdir())[1]).convert("RGB") for p in people[:2]]
    group = Image.new("RGB", (500, 250), (255, 255, 255))
    group.paste(second[0], (0, 0))
    group.paste(second[1], (250, 0))
    probes = tmp_path / "probes"
    probes.mkdir()
    group.save(probes / "group.png")
    Image.new("RGB", (64, 64), (120, 120, 120)).save(probes / "blank.png")
    r = run("query", tmp_path / "idx", probes, "--faces", "all", "--threshold", "0.5", "--json")
    assert r.exit_code == 0, r.output
    lines = [json.loads(ln) for ln in r.stdout.splitlines()]
    faces = [ln for ln in lines if ln["probe"].endswith("group.png")]
    assert len(faces) == 2 and all(len(f["box"]) == 4 for f in faces)
    lefts = sorted(f["box"][0] for f in faces)
    assert lefts[0] < 250 <= lefts[1]
    by_left = sorted(faces, key=lambda f: f["box"][0])
    assert [f["candidates"][0]["identity"] for f in by_left] == [people[0].name, people[1].name]
    blank = [ln for ln in lines if ln["probe"].endswith("blank.png")]
    assert len(blank) == 1 and blank[0]["status"] == "no_face" and blank[0]["candidates"] == []
    r = run("query", tmp_path / "idx", probes / "group.png", "--threshold", "0.5", "--json")
    assert len(r.stdout.splitlines()) == 1    # largest face only by default
