"""Fixtures for training tests: ORL chips (cached once per session), tiny image trees."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from PIL import Image


@pytest.fixture(scope="session")
def orl_chips(shared_data, tmp_path_factory):
    """ORL as 150x150 chips (detector none: the crops are resized), cached for the session."""
    from faceidx.train.data import list_training_items, load_chips

    cache = tmp_path_factory.mktemp("orl-chips")
    return load_chips(list_training_items(shared_data / "orl"), cache, detector="none")


def write_tree(root: Path, counts: dict[str, int], seed: int = 0) -> Path:
    """A folder-per-identity tree of small random PNGs: {identity: number of images}."""
    rng = np.random.default_rng(seed)
    for name, n in counts.items():
        (root / name).mkdir(parents=True, exist_ok=True)
        for i in range(n):
            img = rng.integers(0, 256, size=(40, 32, 3), dtype=np.uint8)
            Image.fromarray(img).save(root / name / f"{i}.png")
    return root
