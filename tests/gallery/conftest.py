"""A small calibrated gallery shared by the gallery and serve tests (copied per module)."""

from __future__ import annotations

import shutil

import pytest

from faceidx.query.calibfile import save_calibration
from faceidx.query.calibrate import CalibrationOptions, calibrate
from tests.query.conftest import small_index  # noqa: F401  (fixture)


@pytest.fixture(scope="module")
def calibrated_index(small_index, tmp_path_factory):  # noqa: F811
    """(index dir copy with calibration.json, the small_index dict)."""
    from faceidx.index import open_index
    from faceidx.io import open_collection

    d = tmp_path_factory.mktemp("gallery") / "index"
    shutil.copytree(small_index["index"], d)
    holdout = open_collection(small_index["holdout"]).read_all()
    cal, _ = calibrate(open_index(d), holdout, CalibrationOptions(target_fpir=0.02))
    save_calibration(d, cal)
    return d, small_index


def photo_index(shared_data, tmp_path, photos):
    """LFW photos (relative paths) linked into tmp_path/people/<person>/, embedded with
    `faceidx embed` into tmp_path/e and indexed into tmp_path/idx; returns (tree, idx)."""
    from click.testing import CliRunner

    from faceidx.cli.main import cli

    tree = tmp_path / "people"
    for rel in photos:
        dst = tree / rel
        dst.parent.mkdir(parents=True, exist_ok=True)
        dst.symlink_to(shared_data / "lfw-subset" / rel)
    run = CliRunner().invoke
    for args in (["-q", "embed", str(tree), "--out", str(tmp_path / "e"), "--workers", "0"],
                 ["-q", "build", str(tmp_path / "e"), "--out", str(tmp_path / "idx")]):
        r = run(cli, args)
        assert r.exit_code == 0, r.output
    return tree, tmp_path / "idx"
