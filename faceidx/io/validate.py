"""Vector sanity checks shared by writer, reader and index."""

from __future__ import annotations

import os

import numpy as np

from faceidx.errors import DataError

MIN_NORM = 1e-6  # shorter vectors have no direction worth comparing


def check_vectors(
    vectors: np.ndarray, path: str | os.PathLike | None, row_offset: int = 0, sources=None
) -> None:
    """Raise DataError naming the first row holding NaN/inf, an all-zero vector, or one
    too short to have a direction (norm < MIN_NORM: 1e-30 would normalise to noise).

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
    norms = np.linalg.norm(np.asarray(vectors, np.float64), axis=1)
    tiny = norms < MIN_NORM
    if tiny.any():
        i = int(np.flatnonzero(tiny)[0])
        raise DataError(f"embedding has norm {norms[i]:.3g}, below {MIN_NORM:g}: no direction to "
                        f"compare{_src(sources, i)}", path, row_offset + i)


def check_face_ids(face_ids: np.ndarray, path: str | os.PathLike | None,
                   row_offset: int = 0) -> None:
    """Raise DataError naming the first negative face id (ids are >= 0; -1 marks nothing)."""
    if len(face_ids) and face_ids.min() < 0:
        i = int(np.argmin(face_ids))
        raise DataError(f"face_id {int(face_ids[i])} is negative; face ids are >= 0", path,
                        row_offset + i)


def _src(sources, i: int) -> str:
    if sources is None:
        return ""
    s = sources[i]
    return f" (source {s})" if s is not None else ""
