"""Chip cache, identity split, trainability checks, augmentation."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from faceidx.errors import DataError
from faceidx.train.data import (
    augment,
    check_trainable,
    list_training_items,
    load_chips,
    split_identities,
    to_input,
)
from tests.train.conftest import write_tree


def test_chips_are_cached_and_reused(tmp_path, monkeypatch):
    data = write_tree(tmp_path / "data", {"a": 3, "b": 2})
    items = list_training_items(data)
    first = load_chips(items, tmp_path / "cache", detector="none")
    assert first.chips.shape[1:] == (150, 150, 3) and first.labels == ["a"] * 3 + ["b"] * 2
    import faceidx.embedder.detect as detect

    def boom(*a, **k):
        raise AssertionError("detection ran again")

    monkeypatch.setattr(detect, "iter_detections", boom)
    again = load_chips(items, tmp_path / "cache", detector="none")
    np.testing.assert_array_equal(again.take(range(5)), first.take(range(5)))
    assert len(list((tmp_path / "cache").glob("chips-*.npy"))) == 1


def test_undecodable_images_are_left_out(tmp_path):
    data = write_tree(tmp_path / "data", {"a": 2, "b": 2})
    (data / "b" / "broken.png").write_bytes(b"not an image")
    chips = load_chips(list_training_items(data), tmp_path / "cache", detector="none")
    assert len(chips) == 4 and len(chips.failures) == 1 and chips.failures[0][0].endswith("broken.png")


def test_subset_take_reads_the_right_rows(orl_chips):
    mask = np.zeros(len(orl_chips), bool)
    mask[[3, 17, 250]] = True
    sub = orl_chips.subset(mask)
    np.testing.assert_array_equal(sub.take([2, 0]), orl_chips.take([250, 3]))
    assert sub.labels == [orl_chips.labels[i] for i in (3, 17, 250)]


def test_check_trainable_names_the_problem():
    with pytest.raises(DataError, match="at least 2 identities, found 1"):
        check_trainable(["a", "a", "a"], "d")
    with pytest.raises(DataError, match="an identity with at least 2 images"):
        check_trainable(["a", "b", "c"], "d")
    check_trainable(["a", "a", "b"], "d")


def test_split_holds_out_whole_identities_seeded():
    labels = [f"id{i}" for i in range(20) for _ in range(3)] + ["single"]
    held = split_identities(labels, 0.2, seed=3)
    val = {lab for lab, h in zip(labels, held, strict=True) if h}
    train = {lab for lab, h in zip(labels, held, strict=True) if not h}
    assert len(val) == 4 and not val & train and "single" in train
    np.testing.assert_array_equal(held, split_identities(labels, 0.2, seed=3))
    assert not np.array_equal(held, split_identities(labels, 0.2, seed=4))
    with pytest.raises(DataError, match="leaves fewer than 2"):
        split_identities(["a", "a", "b", "b", "c", "c"], 0.5)


def test_augment_keeps_shape_range_and_is_seeded(orl_chips):
    x = to_input(orl_chips.take(range(6)))
    a = augment(x, torch.Generator().manual_seed(1))
    b = augment(x, torch.Generator().manual_seed(1))
    assert a.shape == x.shape and float(a.min()) >= 0 and float(a.max()) <= 255
    assert torch.equal(a, b) and not torch.equal(a, x)
