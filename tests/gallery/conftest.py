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
