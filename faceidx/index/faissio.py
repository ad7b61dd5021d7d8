"""FAISS index files: atomic writes, reads that fail with DataError naming the file,
vector preparation shared by build and search, and a thread-count context."""

from __future__ import annotations

import contextlib
import os
from collections.abc import Iterator
from pathlib import Path

import numpy as np

from faceidx.errors import DataError
from faceidx.io.atomic import atomic_path


def faiss():
    """The faiss module (imported on first use, so importing faceidx.index stays cheap)."""
    import faiss as _faiss

    return _faiss


def write_index(index, path: str | os.PathLike) -> None:
    """Write a FAISS index to `path` atomically (temp file + rename)."""
    with atomic_path(path) as tmp:
        faiss().write_index(index, str(tmp))


def read_index(path: str | os.PathLike, mmap: bool = False, ondisk: bool = False):
    """Read a FAISS index; a missing, truncated or damaged file raises DataError naming it.

    mmap: memory-map the inverted lists (merged fast-scan index). ondisk: the index
    refers to an .ivfdata file in the same folder (OnDiskInvertedLists, memory-mapped).
    """
    path = Path(path)
    if not path.exists():
        raise DataError("index file is missing", path)
    f = faiss()
    flags = 0
    if mmap:
        flags |= f.IO_FLAG_MMAP
    if ondisk:
        flags |= f.IO_FLAG_ONDISK_SAME_DIR
    try:
        return f.read_index(str(path), flags)
    except (RuntimeError, MemoryError, OverflowError) as err:
        first = str(err).strip().splitlines()[0] if str(err).strip() else type(err).__name__
        raise DataError(f"damaged or truncated FAISS index file ({first[:200]})", path) from err


def prepare(x: np.ndarray, mean: np.ndarray | None = None) -> np.ndarray:
    """Unit-normalise rows (float32); with `mean`, subtract it and normalise again."""
    x = np.ascontiguousarray(x, dtype=np.float32)
    x = x / np.maximum(np.linalg.norm(x, axis=1, keepdims=True), 1e-12)
    if mean is not None:
        x = x - mean
        x /= np.maximum(np.linalg.norm(x, axis=1, keepdims=True), 1e-12)
    return np.ascontiguousarray(x, dtype=np.float32)


@contextlib.contextmanager
def threads(n: int | None) -> Iterator[None]:
    """Run FAISS with `n` OpenMP threads inside the block (None: leave as is)."""
    if n is None:
        yield
        return
    f = faiss()
    before = f.omp_get_max_threads()
    f.omp_set_num_threads(n)
    try:
        yield
    finally:
        f.omp_set_num_threads(before)


def ivf_of(index):
    """The IndexIVF inside `index` (through pre-transforms / id maps), or None."""
    return faiss().try_extract_index_ivf(index)


HNSW_EF_MIN = 64


def hnsw_ef(nprobe: int) -> int:
    """efSearch for an HNSW coarse quantizer asked for `nprobe` lists (FAISS default 16
    returned 58% of the 256 nearest of 16384 lists; see coarse.py)."""
    return max(HNSW_EF_MIN, 2 * nprobe)


def set_nprobe(index, nprobe: int) -> None:
    """Probe `nprobe` lists; an HNSW coarse quantizer searches with efSearch >= 2 * nprobe."""
    ivf = ivf_of(index)
    if ivf is not None:
        ivf.nprobe = int(min(nprobe, ivf.nlist))
        quantizer = faiss().downcast_index(ivf.quantizer)
        if isinstance(quantizer, faiss().IndexHNSW):
            quantizer.hnsw.efSearch = hnsw_ef(ivf.nprobe)
