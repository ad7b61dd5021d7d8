"""Templates of a gallery's people, for score="template" (faceidx.query.template).

    templates_of = templates_for(index)      # an IndexReader or a LayeredIndex
    templates_of(["Ada_Lovelace"])           # {"Ada_Lovelace": unit (D,) normalised mean}

A person's faces are found in the row store (erased rows left out) and the delta of a
LayeredIndex; their stored unit vectors are averaged and normalised. Each call reads
the listed people's faces afresh (one scan of the shards' identity codes per person).
"""

from __future__ import annotations

import numpy as np

from faceidx.gallery.catalog import identity_faces
from faceidx.query.template import templates_from


def identity_vectors(index, name: str) -> np.ndarray:
    """Unit vectors (n, D) of one identity's faces in the index and its delta."""
    ids, _ = identity_faces(index, name)
    base = getattr(index, "base", index)
    rows = base.store.rows_of(ids) if len(ids) else np.empty(0, np.int64)
    parts = [base.store.gather(rows[rows >= 0], "vectors").astype(np.float32)] if (rows >= 0).any() else []
    delta = getattr(index, "delta", None)
    if delta is not None and len(delta) and (rows < 0).any():
        drows = delta.rows_of(ids[rows < 0])
        parts.append(delta.vectors[drows[drows >= 0]].astype(np.float32))
    return np.concatenate(parts) if parts else np.empty((0, 0), np.float32)


def templates_for(index):
    """templates_of(names) -> {name: template} for `index` (see the module docstring)."""
    return lambda names: templates_from(lambda n: identity_vectors(index, n), names)
