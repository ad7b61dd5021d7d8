"""CLI manners (issue 14 item 7): -q/-v after the subcommand, each warning once, -v free
of other libraries' info noise, errors that say what to run, info's calibration state."""

from __future__ import annotations

import json
import logging

import pytest
from click.testing import CliRunner

from faceidx.cli.main import cli
from faceidx.cli.options import configure_logging
from faceidx.index import BuildOptions, build_index
from tests.query.conftest import split_gallery, write_collection


def run(*args):
    return CliRunner().invoke(cli, [str(a) for a in args])


@pytest.fixture(scope="module")
def small(tmp_path_factory):
    """A 60-identity synthetic index, its holdout, and 20 more people to add later."""
    d = tmp_path_factory.mktemp("manners")
    x, labels, sources, gallery = split_gallery(n_ids=100, enrolled=60, seed=3)
    write_collection(d / "gallery", x[gallery], labels[gallery], sources[gallery])
    write_collection(d / "holdout", x[~gallery], labels[~gallery], sources[~gallery])
    x2, l2, s2, g2 = split_gallery(n_ids=20, enrolled=20, seed=4)
    write_collection(d / "more", x2[g2], [f"new{n}" for n in l2[g2]], s2[g2])
    build_index(d / "gallery", d / "index", BuildOptions(tune_queries=50))
    return d


@pytest.mark.parametrize("flag", ["-q", "--quiet", "-v", "--verbose", "-vv"])
def test_global_options_after_the_subcommand(small, flag):
    before = run(flag, "info", small / "gallery")
    after = run("info", small / "gallery", flag)
    assert after.exit_code == 0, after.output
    assert before.exit_code == 0 and "rows: 120" in after.output
    r = run("query", small / "index", small / "holdout", "--threshold", "0.5", "-k", "2", flag)
    assert r.exit_code == 0, r.output


def test_each_warning_printed_once(small, tmp_path):
    """calibrate's library logs 'ROUGH ESTIMATE' warnings and the CLI reports them too."""
    import shutil

    shutil.copytree(small / "index", tmp_path / "index")
    r = run("calibrate", tmp_path / "index", "--holdout", small / "holdout", "--target-fpir", "0.01")
    assert r.exit_code == 0, r.output
    text = r.output.casefold()
    assert "rough estimate" in text
    lines = [ln for ln in text.splitlines() if ln.startswith("warning")]
    assert lines and len(lines) == len(set(lines))


def test_verbose_shows_faceidx_info_not_other_libraries(capsys):
    configure_logging(1, False)
    logging.getLogger("faiss.loader").info("No module named 'faiss.swigfaiss_avx512'")
    logging.getLogger("faceidx.embedder").info("resuming out: 3 of 9 images already done")
    logging.getLogger("faceidx.embedder").warning("a warning")
    logging.getLogger("faceidx.embedder").warning("A WARNING")
    err = capsys.readouterr().err
    assert "swigfaiss" not in err and "resuming out" in err and err.lower().count("a warning") == 1
    configure_logging(2, False)
    logging.getLogger("faiss.loader").info("No module named 'faiss.swigfaiss_avx512'")
    assert "swigfaiss" in capsys.readouterr().err   # -vv shows everything
    configure_logging(0, True)
    logging.getLogger("faceidx.embedder").info("resuming")
    assert capsys.readouterr().err == ""


@pytest.mark.parametrize("command", ["build", "add"])
def test_image_folder_where_a_collection_is_expected(small, tmp_path, command):
    photos = tmp_path / "photos"
    photos.mkdir()
    (photos / "Ada_Lovelace.jpg").write_bytes(b"\xff\xd8\xff")
    args = ([command, photos, "--out", tmp_path / "idx"] if command == "build"
            else [command, small / "index", photos])
    r = run(*args)
    assert r.exit_code == 1
    assert "faceidx embed" in r.output and "faceidx enrol" in r.output and "photos" in r.output
    assert "Traceback" not in r.output


def test_info_shows_calibration_state_and_growth(small, tmp_path):
    import shutil

    shutil.copytree(small / "index", tmp_path / "index")
    idx = tmp_path / "index"
    r = run("info", idx)
    assert "calibrated: False" in r.output and "faceidx calibrate" in r.output
    assert run("calibrate", idx, "--holdout", small / "holdout", "--target-fpir", "0.05",
               "-q").exit_code == 0
    info = json.loads(run("info", idx, "--json").output)
    cal = json.loads((idx / "calibration.json").read_text())
    assert info["calibrated"] is True and info["threshold"] == cal["threshold"]["value"]
    assert info["target_fpir"] == 0.05 and info["grown_since_calibration"] is False
    r = run("add", idx, small / "more", "-q")
    assert r.exit_code == 0, r.output
    r = run("info", idx)
    assert "grown_since_calibration: True" in r.output
    assert "from 60 to 80 identities" in r.output and "faceidx calibrate" in r.output
