"""Which alignment a run trains on, and chip caches kept apart per template."""

from __future__ import annotations

import json

from faceidx.train.data import cache_key
from faceidx.train.nets import template_for


def test_template_follows_the_architecture_or_the_start_model(tmp_path):
    assert template_for("scratch", "inception-resnet-v1") == "facenet-160"
    assert template_for("scratch", "small-cnn") == "dlib-150"
    assert template_for("dlib-resnet-v1", "small-cnn") == "dlib-150"
    (tmp_path / "faceidx-model.json").write_text(json.dumps(
        {"name": "m", "version": "1", "format": "faceidx", "architecture": "inception-resnet-v1",
         "embedding_dim": 8, "template": "facenet-160", "input_size": 160}))
    assert template_for(str(tmp_path), "small-cnn") == "facenet-160"


def test_cache_key_depends_on_the_template(tmp_path):
    img = tmp_path / "a.png"
    img.write_bytes(b"x")
    items = [(str(img), "a")]
    keys = {cache_key(items, "hog", t) for t in ("dlib-150", "facenet-160", "arcface-112")}
    assert len(keys) == 3
    assert cache_key(items, "hog") == cache_key(items, "hog", "dlib-150")  # old caches stay valid
