"""LFW pairs.txt read/write/generate and resolution to table rows."""

from __future__ import annotations

from collections import Counter

import numpy as np
import pytest

from faceidx.errors import DataError
from faceidx.query.pairs import (
    Pair,
    generate_pairs,
    image_number,
    pairs_to_indices,
    read_pairs,
    write_pairs,
)

LFW_SAMPLE = "2\t1\nAbel\t1\t2\nAbel\t1\tBea\t2\nCid\t2\t3\nCid\t1\tDan\t1\n"


def test_read_lfw_format(tmp_path):
    p = tmp_path / "pairs.txt"
    p.write_text(LFW_SAMPLE)
    pairs = read_pairs(p)
    assert pairs == [Pair("Abel", 1, "Abel", 2, 0), Pair("Abel", 1, "Bea", 2, 0),
                     Pair("Cid", 2, "Cid", 3, 1), Pair("Cid", 1, "Dan", 1, 1)]
    assert [q.genuine for q in pairs] == [True, False, True, False]
    out = tmp_path / "again.txt"
    write_pairs(out, pairs, folds=2, per_fold=1)
    assert out.read_text() == LFW_SAMPLE


def test_read_single_count_header(tmp_path):
    p = tmp_path / "dev.txt"
    p.write_text("1\nAbel\t1\t2\nAbel\t1\tBea\t2\n")
    assert len(read_pairs(p)) == 2


@pytest.mark.parametrize("text,row", [
    ("2\t1\nAbel\t1\t2\n", 0),                         # count mismatch
    ("1\t1\nAbel\tx\t2\nAbel\t1\tBea\t2\n", 1),          # not a number
    ("1\t1\nAbel\t1\tBea\t2\nAbel\t1\t2\n", 1),          # impostor where genuine expected
    ("1\t1\nAbel\t0\t2\nAbel\t1\tBea\t2\n", 1),          # 0 is not 1-based
])
def test_read_bad_files(tmp_path, text, row):
    p = tmp_path / "bad.txt"
    p.write_text(text)
    with pytest.raises(DataError) as err:
        read_pairs(p)
    assert str(p) in str(err.value) and err.value.row == row


def test_generate_from_labels_is_seeded_and_valid():
    labels = [f"p{i}" for i in range(60) for _ in range(1 + i % 4)]
    counts = Counter(labels)
    pairs = generate_pairs(labels, folds=3, per_fold=20, seed=5)
    assert pairs == generate_pairs(labels, folds=3, per_fold=20, seed=5)
    assert pairs != generate_pairs(labels, folds=3, per_fold=20, seed=6)
    assert len(pairs) == 120 and len(set(pairs)) == 120
    for k, p in enumerate(pairs):
        assert p.fold == k // 40 and p.genuine == (k % 40 < 20)
        assert 1 <= p.i <= counts[p.name1] and 1 <= p.j <= counts[p.name2]
        if p.genuine:
            assert p.i != p.j
    people = [{q.name1 for q in pairs if q.fold == f} | {q.name2 for q in pairs if q.fold == f}
              for f in range(3)]
    assert not (people[0] & people[1]) and not (people[1] & people[2])


def test_generate_refuses_impossible():
    with pytest.raises(DataError, match="distinct genuine pairs"):
        generate_pairs(["a", "a", "b", "b"], folds=1, per_fold=5)


def test_generate_from_tree_and_roundtrip(tmp_path):
    for name, n in (("Ann", 3), ("Bob", 2), ("Cy", 1), ("Di", 2)):
        (tmp_path / "tree" / name).mkdir(parents=True)
        for i in range(n):
            (tmp_path / "tree" / name / f"{name}_{i + 1:04d}.jpg").write_bytes(b"x")
    pairs = generate_pairs(tmp_path / "tree", folds=1, per_fold=4, seed=0)
    write_pairs(tmp_path / "p.txt", pairs, 1, 4)
    assert read_pairs(tmp_path / "p.txt") == pairs
    assert image_number("x/Ann_0003.jpg") == 3 and image_number("x/1.pgm") == 1 and image_number("x/face.jpg") is None


def test_pairs_to_indices():
    labels = ["a", "b", "a", "c", "a"]
    pairs = [Pair("a", 1, "a", 3), Pair("a", 2, "c", 1), Pair("b", 1, "c", 2)]
    with pytest.raises(DataError, match="image 2 of 'c'"):
        pairs_to_indices(pairs, labels)
    a, b, same = pairs_to_indices(pairs, labels, missing="drop")
    np.testing.assert_array_equal(a, [0, 2])
    np.testing.assert_array_equal(b, [4, 3])
    np.testing.assert_array_equal(same, [True, False])
    a, b, _ = pairs_to_indices(pairs[:1], labels, numbers=[7, 1, 1, 1, 3])
    np.testing.assert_array_equal([a[0], b[0]], [2, 4])
