"""Shared fixtures: the real face data (skipped when absent) and seeded synthetic clusters."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

SHARED_DATA = Path(__file__).resolve().parents[1].parent / "shared" / "data"


@pytest.fixture(scope="session")
def shared_data() -> Path:
    """../shared/data (LFW subset, ORL, Yale); tests using it skip when it is absent."""
    if not (SHARED_DATA / "orl").is_dir():
        pytest.skip(f"real face data not found at {SHARED_DATA}")
    return SHARED_DATA


def make_clusters(n_ids: int, per_id: int, dim: int, seed: int = 0, noise: float = 0.3):
    """Seeded identity clusters on the unit sphere: (vectors float32 (n, dim), labels str)."""
    rng = np.random.default_rng(seed)
    centres = rng.normal(size=(n_ids, dim))
    centres /= np.linalg.norm(centres, axis=1, keepdims=True)
    x = np.repeat(centres, per_id, axis=0) + noise / np.sqrt(dim) * rng.normal(size=(n_ids * per_id, dim))
    x /= np.linalg.norm(x, axis=1, keepdims=True)
    labels = np.repeat([f"id{i:05d}" for i in range(n_ids)], per_id)
    return x.astype(np.float32), labels


@pytest.fixture
def clusters():
    return make_clusters(50, 4, 16)
