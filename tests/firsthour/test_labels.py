"""Labels never silently lost or stale (issue 14 items 1-2), through CliRunner on real ORL
faces (already cropped: --detector none, so no detection cost): embed and add warn about
nameless faces, a rerun of embed with other labelling or labels is refused saying how to
start over, enrol keeps the index's model/detector and names people as it says."""

from __future__ import annotations

import csv
import json

import pytest
from click.testing import CliRunner

from faceidx.cli.main import cli

pytestmark = pytest.mark.slow


def run(*args):
    return CliRunner().invoke(cli, [str(a) for a in args])


def link(src, dst):
    dst.parent.mkdir(parents=True, exist_ok=True)
    dst.symlink_to(src)
    return dst


@pytest.fixture
def orl(shared_data):
    return shared_data / "orl"


def test_embed_flat_folder_warns_nameless_and_refuses_changed_labelling(orl, tmp_path):
    flat = tmp_path / "flat"
    for s in ("s1", "s2"):
        for n in (1, 2):
            link(orl / s / f"{n}.pgm", flat / f"{s}_{n}.pgm")
    r = run("embed", flat, "--out", tmp_path / "e", "--detector", "none", "--workers", "0")
    assert r.exit_code == 0, r.output
    assert "4 of 4 images" in r.output and "have no identity" in r.output
    assert "faceidx enrol" in r.output and "labels   " in r.output
    # before: the corrected regex wrote nothing and kept the old (missing) labels silently
    r = run("embed", flat, "--out", tmp_path / "e", "--detector", "none", "--workers", "0",
            "--identity-regex", r"(s\d+)_")
    assert r.exit_code == 1
    assert "identity_regex None -> " in r.output and "rm -r" in r.output
    assert "another --out" in r.output
    # add warns that the collection's faces are nameless
    r = run("-q", "build", tmp_path / "e", "--out", tmp_path / "idx")
    assert r.exit_code == 0, r.output
    r = run("add", tmp_path / "idx", tmp_path / "e")
    assert "4 of 4 faces" in r.output and "no identity" in r.output


def test_embed_rerun_with_changed_labels_is_refused(orl, tmp_path):
    manifest = tmp_path / "m.csv"

    def write(names):
        with open(manifest, "w", newline="") as fh:
            w = csv.writer(fh)
            w.writerow(["path", "identity"])
            w.writerows((str(orl / s / "1.pgm"), name) for s, name in zip(("s1", "s2"), names, strict=True))

    write(["ann", "bob"])
    args = ("embed", manifest, "--out", tmp_path / "e", "--detector", "none", "--workers", "0")
    assert run(*args).exit_code == 0
    assert "0 written this run" in run(*args).output           # same labels: a resume
    write(["ann", "Robert"])
    r = run(*args)
    assert r.exit_code == 1
    assert "1 image(s) already embedded here would get another identity" in r.output
    assert "'bob' -> 'Robert'" in r.output and "rm -r" in r.output


def test_enrol_names_creates_adds_and_keeps_the_index_settings(orl, tmp_path):
    tree = tmp_path / "team"
    for s in ("s1", "s2", "s3"):
        link(orl / s / "1.pgm", tree / f"person_{s}" / "1.pgm")
    (tree / "person_s5").mkdir()
    (tree / "person_s5" / "1.pgm").write_bytes(b"P5\n")           # a broken photo
    idx = tmp_path / "people.index"
    r = run("enrol", idx, tree, "--detector", "none", "--workers", "0", "--json")
    assert r.exit_code == 0, r.output
    assert "1 photo(s) not enrolled: 1.pgm" in r.output
    assert "1 person(s) have no usable photo and are not enrolled: person_s5" in r.output
    out = json.loads(r.stdout.splitlines()[-1])
    assert out["created"] and out["added"] == 3 and out["identities"] == 3
    assert out["people"] == {"person_s1": 1, "person_s2": 1, "person_s3": 1, "person_s5": 1}
    # photos with --name; the index's detector is used (none), another is refused
    more = [link(orl / "s4" / f"{n}.pgm", tmp_path / "new" / f"{n}.pgm") for n in (1, 2)]
    r = run("enrol", idx, *more, "--name", "Jane Doe", "--detector", "hog", "--workers", "0")
    assert r.exit_code == 1 and "--detector none, not hog" in r.output
    r = run("enrol", idx, *more, "--name", "Jane Doe", "--workers", "0")
    assert r.exit_code == 0, r.output
    assert "2 named by --name (1 person)" in r.output and "Jane Doe (2)" in r.output
    info = json.loads(run("info", idx, "--json").output)
    assert info["identities"] == 4 and info["rows"] == 5
    # the same command again adds nothing (the embedded collection is recognised)
    r = run("enrol", idx, *more, "--name", "Jane Doe", "--workers", "0")
    assert r.exit_code == 0 and "nothing to do" in r.output
    assert json.loads(run("info", idx, "--json").output)["rows"] == 5
    # a name-less photo is refused, or enrolled nameless when asked
    nameless = link(orl / "s5" / "1.pgm", tmp_path / "odd" / "0001.pgm")
    r = run("enrol", idx, nameless, "--workers", "0")
    assert r.exit_code == 1 and "--allow-unlabelled" in r.output
    r = run("enrol", idx, nameless, "--workers", "0", "--allow-unlabelled", "--json")
    assert r.exit_code == 0 and json.loads(r.stdout)["rows"] == 6


def test_enrol_into_a_folder_that_is_not_an_index(tmp_path, orl):
    (tmp_path / "stuff").mkdir()
    (tmp_path / "stuff" / "notes.txt").write_text("x")
    r = run("enrol", tmp_path / "stuff", orl / "s1" / "1.pgm", "--name", "x", "--detector", "none")
    assert r.exit_code == 1 and "not an index" in r.output


def test_sources_relative_to_the_embedded_root_and_legacy_resume(orl, tmp_path):
    from faceidx.embedder.pipeline import SETTINGS_NAME, embed_source
    from faceidx.embedder.sources import SourceItem
    from faceidx.io import open_collection

    tree = tmp_path / "photos"
    for s in ("s1", "s2"):
        link(orl / s / "1.pgm", tree / s / "1.pgm")
    (tree / "s2" / "broken.pgm").write_bytes(b"P5\n")
    r = run("embed", tree, "--out", tmp_path / "e", "--detector", "none", "--workers", "0")
    assert r.exit_code == 0, r.output
    assert sorted(open_collection(tmp_path / "e").read_all().sources) == ["s1/1.pgm", "s2/1.pgm"]
    failures = (tmp_path / "e" / "failures.jsonl").read_text()
    assert '"path": "s2/broken.pgm"' in failures and str(tmp_path) not in failures
    # a collection begun when sources were full paths resumes on them: nothing twice
    legacy = tmp_path / "legacy"
    embed_source([SourceItem(str(tree / "s1" / "1.pgm"), "s1")], legacy, "dlib-resnet-v1",
                 detector="none", device="cpu")
    settings = json.loads((legacy / SETTINGS_NAME).read_text())
    del settings["sources"]
    (legacy / SETTINGS_NAME).write_text(json.dumps(settings))
    r = run("embed", tree, "--out", legacy, "--detector", "none", "--workers", "0", "--json")
    assert r.exit_code == 0, r.output
    assert json.loads(r.stdout.splitlines()[-1])["faces"] == 1            # only s2/1.pgm is new
    assert sorted(open_collection(legacy).read_all().sources) == [
        str(tree / "s1" / "1.pgm"), str(tree / "s2" / "1.pgm")]
