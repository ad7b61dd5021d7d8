"""Fixtures for the synth tests: solved models built once per session."""

from __future__ import annotations

import pytest

from faceidx.synth import build_model


@pytest.fixture(scope="session")
def model128():
    return build_model(128)


@pytest.fixture(scope="session")
def model16():
    return build_model(16)
