"""Verification pairs in LFW's pairs.txt format: read, write, generate, resolve.

The format (LFW, Huang et al. 2007): a first line ``<folds><TAB><per_fold>``, then for
each fold `per_fold` genuine lines ``Name<TAB>i<TAB>j`` followed by `per_fold` impostor
lines ``Name1<TAB>i<TAB>Name2<TAB>j``. Image numbers are 1-based: image i of a person
is the i-th of that person's images in sorted file order (LFW's ``Name_000i.jpg``), or
the i-th row of that identity in an embedding table. A first line with one number N
(LFW's pairsDevTrain.txt) means one fold of N + N.

    pairs = generate_pairs("lfw/", folds=10, per_fold=300, seed=0)
    write_pairs("pairs.txt", pairs, folds=10, per_fold=300)
    a, b, same = pairs_to_indices(read_pairs("pairs.txt"), labels)  # rows of a table
"""

from __future__ import annotations

import logging
import os
from collections import defaultdict
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from faceidx.errors import DataError
from faceidx.io.atomic import atomic_path

log = logging.getLogger(__name__)

IMAGE_SUFFIXES = {".jpg", ".jpeg", ".png", ".pgm", ".ppm", ".bmp", ".gif", ".tif", ".tiff", ".webp"}


@dataclass(frozen=True)
class Pair:
    """Image i (1-based) of `name1` against image j of `name2`, in fold `fold` (0-based)."""

    name1: str
    i: int
    name2: str
    j: int
    fold: int = 0

    @property
    def genuine(self) -> bool:
        return self.name1 == self.name2

    def line(self) -> str:
        if self.genuine:
            return f"{self.name1}\t{self.i}\t{self.j}"
        return f"{self.name1}\t{self.i}\t{self.name2}\t{self.j}"


def read_pairs(path: str | os.PathLike) -> list[Pair]:
    """Parse a pairs.txt file; each Pair carries its fold. DataError names file and row."""
    path = Path(path)
    try:
        lines = path.read_text().splitlines()
    except (OSError, UnicodeDecodeError) as err:
        raise DataError(f"cannot read pairs file: {err}", path) from err
    rows = [(n, ln.strip()) for n, ln in enumerate(lines) if ln.strip()]
    if not rows:
        raise DataError("pairs file is empty", path)
    head = rows[0][1].split()
    try:
        folds, per_fold = (1, int(head[0])) if len(head) == 1 else (int(head[0]), int(head[1]))
    except (ValueError, IndexError) as err:
        raise DataError("first line must be '<folds> <per_fold>' or '<count>'", path, 0) from err
    body = rows[1:]
    if folds < 1 or per_fold < 1 or len(body) != 2 * folds * per_fold:
        raise DataError(f"header says {folds} folds x {per_fold} x 2 = {2 * folds * per_fold} "
                        f"pairs but the file lists {len(body)}", path, 0)
    out = []
    for k, (n, text) in enumerate(body):
        f = text.split("\t") if "\t" in text else text.split()
        try:
            if len(f) == 3:
                p = Pair(f[0], int(f[1]), f[0], int(f[2]), k // (2 * per_fold))
            elif len(f) == 4:
                p = Pair(f[0], int(f[1]), f[2], int(f[3]), k // (2 * per_fold))
            else:
                raise ValueError(f"{len(f)} fields")
        except ValueError as err:
            raise DataError(f"bad pair line {text!r} ({err})", path, n) from err
        if p.i < 1 or p.j < 1:
            raise DataError("image numbers are 1-based", path, n)
        if p.genuine != ((k % (2 * per_fold)) < per_fold):
            want = "genuine" if (k % (2 * per_fold)) < per_fold else "impostor"
            raise DataError(f"expected a {want} pair at this position of fold {p.fold + 1}", path, n)
        out.append(p)
    return out


def write_pairs(path: str | os.PathLike, pairs: Sequence[Pair], folds: int, per_fold: int) -> None:
    """Write `pairs` (fold by fold: per_fold genuine then per_fold impostor) atomically."""
    pairs = list(pairs)
    if len(pairs) != 2 * folds * per_fold:
        raise ValueError(f"{len(pairs)} pairs given, {2 * folds * per_fold} expected")
    for k, p in enumerate(pairs):
        if p.genuine != ((k % (2 * per_fold)) < per_fold):
            raise ValueError(f"pair {k} is out of order: each fold lists genuine pairs first")
    with atomic_path(path) as tmp:
        tmp.write_text(f"{folds}\t{per_fold}\n" + "".join(p.line() + "\n" for p in pairs))


def tree_labels(root: str | os.PathLike) -> tuple[list[str], list[Path]]:
    """(labels, paths) of an identity-per-folder tree, sorted by identity then file name."""
    root = Path(root)
    if not root.is_dir():
        raise DataError("not a directory", root)
    labels, paths = [], []
    for d in sorted(p for p in root.iterdir() if p.is_dir()):
        for f in sorted(p for p in d.iterdir() if p.is_file() and p.suffix.lower() in IMAGE_SUFFIXES):
            labels.append(d.name)
            paths.append(f)
    if not labels:
        raise DataError("no identity folders with images found", root)
    return labels, paths


def generate_pairs(labels_or_tree: Sequence[str] | str | os.PathLike, folds: int = 10,
                   per_fold: int = 300, seed: int = 0) -> list[Pair]:
    """Seeded LFW-style pairs: per fold `per_fold` genuine then `per_fold` impostor pairs.

    `labels_or_tree` is a sequence of identity labels (image i of a person = its i-th
    occurrence) or the root of an identity-per-folder tree. Identities are split at random
    into `folds` disjoint groups (no person appears in two folds, as in LFW); genuine
    pairs pick a person with >= 2 images uniformly, then two distinct images; impostor
    pairs pick two distinct people of the fold, then one image each. No pair repeats.
    Raises DataError when a fold cannot supply enough distinct pairs.
    """
    if isinstance(labels_or_tree, (str, os.PathLike)):
        labels = tree_labels(labels_or_tree)[0]
    else:
        labels = [str(x) for x in labels_or_tree]
    counts: dict[str, int] = defaultdict(int)
    for name in labels:
        counts[name] += 1
    rng = np.random.default_rng(seed)
    names = sorted(counts)
    rng.shuffle(names)
    groups = [names[f::folds] for f in range(folds)]
    out: list[Pair] = []
    for f, group in enumerate(groups):
        out += _fold_pairs(group, counts, per_fold, f, rng, "genuine")
        out += _fold_pairs(group, counts, per_fold, f, rng, "impostor")
    return out


def _fold_pairs(group, counts, per_fold, fold, rng, kind) -> list[Pair]:
    multi = [n for n in group if counts[n] >= 2]
    if kind == "genuine":
        available = sum(counts[n] * (counts[n] - 1) // 2 for n in multi)
    else:
        total = sum(counts[n] for n in group)
        available = (total * total - sum(counts[n] ** 2 for n in group)) // 2
    if available < per_fold:
        raise DataError(f"fold {fold + 1} can give only {available} distinct {kind} pairs, "
                        f"{per_fold} wanted: use fewer folds or a smaller per-fold count")
    seen: set[tuple] = set()
    out = []
    while len(out) < per_fold:
        if kind == "genuine":
            name = multi[rng.integers(len(multi))]
            i, j = _two_distinct(rng, counts[name])
            key = (name, i + 1, name, j + 1)
        else:
            a, b = _two_distinct(rng, len(group))
            n1, n2 = sorted((group[a], group[b]))
            key = (n1, int(rng.integers(counts[n1])) + 1, n2, int(rng.integers(counts[n2])) + 1)
        if key not in seen:
            seen.add(key)
            out.append(Pair(key[0], int(key[1]), key[2], int(key[3]), fold))
    return out


def _two_distinct(rng: np.random.Generator, n: int) -> tuple[int, int]:
    """Two distinct integers of range(n), uniformly, smaller first."""
    i = int(rng.integers(n))
    j = int(rng.integers(n - 1))
    j += j >= i
    return (i, j) if i < j else (j, i)


def pairs_to_indices(pairs: Sequence[Pair], labels: Sequence[str], numbers: Sequence[int] | None = None,
                     missing: str = "raise") -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Rows (a, b) of an embedding table for each pair, and `same` (bool), as arrays.

    Row r is image numbers[r] of person labels[r]; without `numbers`, image i of a person
    is its i-th row (1-based) in table order. missing="raise" raises DataError for a pair
    whose image is not in the table; "drop" leaves such pairs out (logged).
    """
    if missing not in ("raise", "drop"):
        raise ValueError("missing must be 'raise' or 'drop'")
    where: dict[tuple[str, int], int] = {}
    seen: dict[str, int] = defaultdict(int)
    for r, name in enumerate(labels):
        name = str(name)
        if numbers is None:
            seen[name] += 1
            where[(name, seen[name])] = r
        else:
            where[(name, int(numbers[r]))] = r
    a, b, same = [], [], []
    dropped = 0
    for p in pairs:
        ra, rb = where.get((p.name1, p.i)), where.get((p.name2, p.j))
        if ra is None or rb is None:
            if missing == "raise":
                gone = (p.name1, p.i) if ra is None else (p.name2, p.j)
                raise DataError(f"pair {p.line()!r}: image {gone[1]} of {gone[0]!r} is not in the table")
            dropped += 1
            continue
        a.append(ra)
        b.append(rb)
        same.append(p.genuine)
    if dropped:
        log.warning("%d of %d pairs dropped: their images are not in the table", dropped, len(pairs))
    return np.asarray(a, np.int64), np.asarray(b, np.int64), np.asarray(same, bool)


def image_number(path: str | os.PathLike) -> int | None:
    """LFW's image number from a file name like ``Name_0004.jpg`` (4), else None."""
    stem = Path(path).stem
    tail = stem.rsplit("_", 1)[-1]
    return int(tail) if tail.isdigit() else None
