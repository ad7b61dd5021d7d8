"""A service on a copy of the small calibrated gallery, in process (FastAPI TestClient)."""

from __future__ import annotations

import shutil

import pytest

from tests.gallery.conftest import calibrated_index  # noqa: F401  (fixture)
from tests.query.conftest import small_index  # noqa: F401  (fixture)

TOKEN = "t0ken-for-tests-0123456789"


def start(index_dir, token=None, **config):
    from fastapi.testclient import TestClient

    from faceidx.serve import ServeConfig, Service, create_app

    service = Service.open(index_dir, ServeConfig(**config))
    return service, TestClient(create_app(service, token))


@pytest.fixture
def index_copy(calibrated_index, tmp_path):  # noqa: F811
    d = tmp_path / "index"
    shutil.copytree(calibrated_index[0], d)
    return d, calibrated_index[1]


@pytest.fixture
def served(index_copy):
    """(service, client, small_index dict) on a fresh copy; closed after the test."""
    service, client = start(index_copy[0], flush_seconds=3600)
    yield service, client, index_copy[1]
    service.close()
