"""big-ann-benchmarks binary files: `.fbin` vectors and `.ibin` ground truth.

    .fbin   int32 n, int32 d, then n * d float32 (row-major, little-endian)
    .ibin   int32 n, int32 k, then n * k int32 neighbour ids, then (ground-truth files)
            n * k float32 distances; an .ibin of ids only is read too

A faceidx export is a folder: `base.fbin`, `query.fbin`, `groundtruth.ibin`, and for a
lossless round trip `faceidx.json` (metric and collection metadata) and
`base.rows.parquet` / `query.rows.parquet` (face_id, identity, source per row). Other
tools read only the binaries. Vectors are memory-mapped and read in blocks.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

import numpy as np

from faceidx.errors import DataError

HEADER = 8
VECTOR_SUFFIXES = (".fbin",)
OTHER_BIN = (".u8bin", ".i8bin")


def _header(path: Path) -> tuple[int, int]:
    try:
        with open(path, "rb") as fh:
            head = fh.read(HEADER)
    except OSError as err:
        raise DataError(f"cannot read: {err}", path) from err
    if len(head) < HEADER:
        raise DataError(f"file of {len(head)} bytes has no 8-byte header", path)
    n, d = (int(v) for v in np.frombuffer(head, "<i4"))
    if n < 0 or d < 1:
        raise DataError(f"header says n={n}, d={d}: not a big-ann binary", path)
    return n, d


class Fbin:
    """A validated `.fbin` file: `n` rows of `dim` float32, read in blocks."""

    def __init__(self, path: str | os.PathLike):
        self.path = Path(path)
        if self.path.suffix.lower() in OTHER_BIN:
            raise DataError(f"{self.path.suffix} (integer vectors) is not supported; "
                            "faceidx reads float32 .fbin", self.path)
        self.n, self.dim = _header(self.path)
        want = HEADER + 4 * self.n * self.dim
        size = self.path.stat().st_size
        if size != want:
            raise DataError(f"size {size} bytes, but the header (n={self.n}, d={self.dim}) "
                            f"needs {want}: truncated or not float32", self.path)

    def _map(self) -> np.ndarray:
        if self.n == 0:
            return np.empty((0, self.dim), np.float32)
        return np.memmap(self.path, "<f4", "r", HEADER, (self.n, self.dim))

    def iter_vectors(self, batch_rows: int = 65_536) -> Iterator[tuple[int, np.ndarray]]:
        m = self._map()
        for lo in range(0, self.n, batch_rows):
            yield lo, np.array(m[lo:lo + batch_rows], dtype=np.float32)

    def read(self) -> np.ndarray:
        return np.array(self._map(), dtype=np.float32)


class FbinWriter:
    """Streams `n` rows of `dim` float32 into a .fbin; close() checks the count."""

    def __init__(self, path: str | os.PathLike, n: int, dim: int):
        self.path, self.n, self.dim, self.written = Path(path), n, dim, 0
        self._fh = open(self.path, "wb")
        self._fh.write(np.asarray([n, dim], "<i4").tobytes())

    def append(self, vectors: np.ndarray) -> None:
        v = np.ascontiguousarray(vectors, "<f4")
        if v.ndim != 2 or v.shape[1] != self.dim:
            raise ValueError(f"expected (rows, {self.dim}) vectors, got {v.shape}")
        if self.written + len(v) > self.n:
            raise ValueError("more rows than declared")
        self._fh.write(v.tobytes())
        self.written += len(v)

    def close(self) -> None:
        self._fh.close()
        if self.written != self.n:
            raise ValueError(f"{self.written} rows written, {self.n} declared")

    def __enter__(self) -> FbinWriter:
        return self

    def __exit__(self, exc_type, *rest) -> None:
        if exc_type is None:
            self.close()
        else:
            self._fh.close()


def write_fbin(path: str | os.PathLike, vectors: np.ndarray) -> None:
    with FbinWriter(path, len(vectors), vectors.shape[1]) as w:
        w.append(vectors)


def read_ibin(path: str | os.PathLike) -> tuple[np.ndarray, np.ndarray | None]:
    """(ids int64 (n, k), distances float32 (n, k) or None for an ids-only file)."""
    path = Path(path)
    n, k = _header(path)
    size = path.stat().st_size
    ids_only, with_dist = HEADER + 4 * n * k, HEADER + 8 * n * k
    if size not in (ids_only, with_dist):
        raise DataError(f"size {size} bytes fits neither {n}x{k} ids ({ids_only}) nor ids "
                        f"and distances ({with_dist}): truncated", path)
    raw = np.fromfile(path, "<i4", offset=HEADER)
    ids = raw[:n * k].reshape(n, k).astype(np.int64)
    dist = raw[n * k:].view("<f4").reshape(n, k).copy() if size == with_dist else None
    return ids, dist


def write_ibin(path: str | os.PathLike, ids: np.ndarray, distances: np.ndarray | None) -> None:
    n, k = ids.shape
    with open(path, "wb") as fh:
        fh.write(np.asarray([n, k], "<i4").tobytes())
        fh.write(np.ascontiguousarray(ids, "<i4").tobytes())
        if distances is not None:
            fh.write(np.ascontiguousarray(distances, "<f4").tobytes())
