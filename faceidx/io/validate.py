"""Vector sanity checks shared by writer, reader and index."""

from __future__ import annotations

import os

import numpy as np

from faceidx.errors import DataError


def check_vectors(
    vectors: np.ndarray, path: str | os.PathLike | None, row_offset: int = 0, sources=None
) -> None:
    """Raise DataError naming the first row holding NaN/inf or an all-zero vector.

    vectors: (n, D) floats. row_offset: row number of vectors[0] inside `path`.
    sources: optional per-row source names, quoted in the message.
    """
    finite = np.isfinite(vectors).all(axis=1)
    if not finite.all():
        i = int(np.flatnonzero(~finite)[0])
        raise DataError(f"embedding holds NaN or inf{_src(sources, i)}", path, row_offset + i)
    zero = ~np.any(vectors != 0, axis=1)
    if zero.any():
        i = int(np.flatnonzero(zero)[0])
        raise DataError(f"embedding is all zeros{_src(sources, i)}", path, row_offset + i)


def _src(sources, i: int) -> str:
    if sources is None:
        return ""
    s = sources[i]
    return f" (source {s})" if s is not None else ""
