"""describe_index(path) -> dict: what `faceidx info` prints for an index directory."""

from __future__ import annotations

import os
from pathlib import Path

from faceidx.index.manifest import IndexManifest
from faceidx.index.store import vector_dtype_of


def _dir_bytes(path: Path) -> int:
    return sum(p.stat().st_size for p in path.rglob("*") if p.is_file())


def describe_index(path: str | os.PathLike) -> dict:
    """A JSON-able summary: rows, identities, model, factory, search defaults, sizes.

    index_bytes_per_vector counts the FAISS files search loads: the merged index (if
    any) and the shards added after it.
    """
    path = Path(path)
    m = IndexManifest.load(path)
    index_bytes = 0
    vector_bytes = 0
    merged_shards = m.merged["shards"] if m.merged else 0
    if m.merged and (path / m.merged["file"]).exists():
        index_bytes += (path / m.merged["file"]).stat().st_size  # what search loads
    for i, s in enumerate(m.shards):
        folder = path / s.dir
        index_file = folder / "index.faiss"
        if i >= merged_shards and index_file.exists():
            index_bytes += index_file.stat().st_size
        vec = folder / "vectors.npy"
        if vec.exists():
            vector_bytes += vec.stat().st_size
    total = _dir_bytes(path)
    rows = max(m.rows, 1)
    tuning = m.tuning or {}
    return {
        "kind": "index",
        "path": str(path),
        "complete": m.complete,
        "rows": m.live_rows,
        "identities": m.num_identities,
        "dim": m.dim,
        "model": m.meta.model,
        "model_version": m.meta.model_version,
        "metric": "cosine (L2 on unit vectors)",
        "factory": m.factory,
        "center": m.center,
        "nprobe": m.search.get("nprobe"),
        "k_factor": m.search.get("k_factor"),
        "candidates": m.search.get("candidates"),
        "early": m.search.get("early"),
        "tuned_agreement": tuning.get("agreement"),
        "tuned_decision_agreement": tuning.get("decision_agreement"),
        "tuned_target": tuning.get("target"),
        "shards": len(m.shards),
        "merged": bool(m.merged),
        "searched_parts": (1 if m.merged else 0) + len(m.shards) - merged_shards,
        "next_face_id": m.next_face_id,
        "fallback": m.params.get("fallback") or "",
        "index_bytes_per_vector": round(index_bytes / rows, 2),
        "vector_bytes_per_vector": round(vector_bytes / rows, 2),
        "vector_dtype": vector_dtype_of(m),
        "bytes": total,
    }
