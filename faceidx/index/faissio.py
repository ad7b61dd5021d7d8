"""FAISS index files: atomic writes, reads that fail with DataError naming the file,
vector preparation shared by build and search, the thread count (set once) and
per-call search parameters (nothing written on a shared index)."""

from __future__ import annotations

import os
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


def set_threads(n: int | None) -> int:
    """Set FAISS's OpenMP thread count once, at start-up (None: leave it); returns it.

    Searching never changes it per call: a reader shared by threads (a service) must not
    flip process-wide state while another thread searches.
    """
    f = faiss()
    if n is not None and n >= 1:
        f.omp_set_num_threads(int(n))
    return int(f.omp_get_max_threads())


def ivf_of(index):
    """The IndexIVF inside `index` (through pre-transforms / id maps), or None."""
    return faiss().try_extract_index_ivf(index)


HNSW_EF_MIN = 64


def hnsw_ef(nprobe: int) -> int:
    """efSearch for an HNSW coarse quantizer asked for `nprobe` lists (FAISS default 16
    returned 58% of the 256 nearest of 16384 lists; see coarse.py)."""
    return max(HNSW_EF_MIN, 2 * nprobe)


def ivf_params(nprobe: int, ivf=None, quantizer=None):
    """Per-call FAISS SearchParametersIVF for `nprobe` lists (capped at `ivf.nlist`), with
    efSearch >= 2 * nprobe for an HNSW coarse quantizer. Nothing is written on the index."""
    f = faiss()
    params = f.SearchParametersIVF()
    params.nprobe = int(min(nprobe, ivf.nlist) if ivf is not None else nprobe)
    if quantizer is None and ivf is not None:
        quantizer = f.downcast_index(ivf.quantizer)
    if quantizer is not None and isinstance(quantizer, f.IndexHNSW):
        params.quantizer_params = hnsw_params(params.nprobe)
    return params


def hnsw_params(nprobe: int):
    """Per-call SearchParametersHNSW with the efSearch `hnsw_ef(nprobe)`."""
    params = faiss().SearchParametersHNSW()
    params.efSearch = hnsw_ef(nprobe)
    return params


def search_preassigned(ivf, x: np.ndarray, k: int, lists: np.ndarray, dist: np.ndarray
                       ) -> tuple[np.ndarray, np.ndarray]:
    """IndexIVF.search_preassigned with nprobe = lists.shape[1] given per call.

    FAISS's Python wrapper asserts `params is None` and reads nprobe from the index, so
    the C++ entry is called with SearchParametersIVF (reentrant: the index is not touched).
    """
    f = faiss()
    n = len(x)
    x = np.ascontiguousarray(x, dtype=np.float32)
    lists = np.ascontiguousarray(lists, dtype=np.int64)
    dist = np.ascontiguousarray(dist, dtype=np.float32)
    params = f.SearchParametersIVF()
    params.nprobe = int(lists.shape[1])
    d = np.empty((n, k), np.float32)
    i = np.empty((n, k), np.int64)
    ivf.search_preassigned_c(n, f.swig_ptr(x), k, f.swig_ptr(lists), f.swig_ptr(dist),
                             f.swig_ptr(d), f.swig_ptr(i), False, params, None)
    return d, i


def search_with_nprobe(index, x: np.ndarray, k: int, nprobe: int) -> tuple[np.ndarray, np.ndarray]:
    """index.search with `nprobe` as a per-call parameter (through a pre-transform too)."""
    f = faiss()
    ivf = ivf_of(index)
    if ivf is None:
        return index.search(x, k)
    params = ivf_params(nprobe, ivf)
    if isinstance(f.downcast_index(index), f.IndexPreTransform):
        outer = f.SearchParametersPreTransform()
        outer.index_params = params
        return index.search(x, k, params=outer)
    return index.search(x, k, params=params)
