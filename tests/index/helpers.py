"""Small seeded collections for index tests."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from faceidx.io import CollectionMeta, CollectionWriter
from tests.conftest import make_clusters

DIM = 16


def write_collection(path: Path, n_ids: int = 300, per_id: int = 8, seed: int = 0,
                     model: str = "m", dim: int = DIM, face_ids=None, shard_rows: int = 1000,
                     noise: float = 0.6):
    """Write clusters as a collection; returns (vectors, labels)."""
    x, labels = make_clusters(n_ids, per_id, dim, seed=seed, noise=noise)
    labels = np.asarray([f"s{seed}-{v}" for v in labels], dtype=object)
    with CollectionWriter(path, CollectionMeta(model=model, dim=dim, model_version="1"),
                          shard_rows=shard_rows) as w:
        w.write(x, identities=labels, sources=[f"img{seed}-{i}.jpg" for i in range(len(x))],
                face_ids=face_ids)
    return x, labels


def exact_topk(base: np.ndarray, queries: np.ndarray, k: int):
    """Naive exact cosine top-k: (scores, rows)."""
    b = base / np.linalg.norm(base, axis=1, keepdims=True)
    q = queries / np.linalg.norm(queries, axis=1, keepdims=True)
    s = q @ b.T
    order = np.argsort(-s, axis=1, kind="stable")[:, :k]
    return np.take_along_axis(s, order, axis=1), order
