"""embed writes each face's quality score as the optional `quality` column; a collection
from before the column resumes without it."""

from __future__ import annotations

import numpy as np
import pytest

from faceidx.embedder import pipeline
from faceidx.embedder.pipeline import embed_source
from faceidx.embedder.sources import list_source
from faceidx.io import open_collection
from tests.embedder.standin import TinyFaceModel
from tests.embedder.test_pipeline import Failing, small_tree  # noqa: F401  (fixture)


def test_embed_writes_quality(small_tree, tmp_path):  # noqa: F811
    embed_source(list_source(small_tree), tmp_path / "c", TinyFaceModel(), device="cpu")
    coll = open_collection(tmp_path / "c")
    assert "quality" in coll.columns
    q = coll.read_all(columns=["source", "quality"]).extra["quality"]
    assert len(q) == 4 and np.isfinite(q).all() and ((q > 0) & (q <= 1)).all()


def test_old_collection_without_quality_resumes(small_tree, tmp_path, monkeypatch):  # noqa: F811
    items = list_source(small_tree)
    out = tmp_path / "old"
    monkeypatch.setattr(pipeline, "EXTRA_FIELDS", pipeline.EXTRA_FIELDS[:2])  # before `quality`
    with pytest.raises(KeyboardInterrupt):
        embed_source(items, out, Failing(fail_at=4), device="cpu", batch_size=1, shard_rows=2)
    monkeypatch.undo()
    embed_source(items, out, TinyFaceModel(), device="cpu", batch_size=1, shard_rows=2)
    coll = open_collection(out)
    assert coll.num_rows == 4 and "quality" not in coll.columns
