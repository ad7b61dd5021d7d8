"""A real photo through embed, build and the gallery: the probe's quality equals the one
embed stored, and the same face planted small in a large canvas ("the face doesn't cover
much of the image") answers low_quality under a calibrated gate."""

from __future__ import annotations

import json

import numpy as np
import pytest
from PIL import Image

from tests.gallery.conftest import photo_index

pytestmark = pytest.mark.slow

PHOTOS = ("Aaron_Eckhart/Aaron_Eckhart_0001.jpg", "AJ_Cook/AJ_Cook_0001.jpg")


def test_planted_small_face_is_low_quality(shared_data, tmp_path):
    from faceidx import open_gallery
    from faceidx.io import open_collection
    from faceidx.query.calibfile import save_calibration

    tree, _ = photo_index(shared_data, tmp_path, PHOTOS)
    stored = open_collection(tmp_path / "e").read_all(columns=["source", "quality"])
    by_source = {s.split("/")[-1]: q for s, q in zip(stored.sources, stored.extra["quality"], strict=True)}
    photo = tree / PHOTOS[0]
    canvas = Image.new("RGB", (1600, 1600), (120, 120, 120))
    canvas.paste(Image.open(photo).convert("RGB"), (700, 700))
    small = tmp_path / "small.png"
    canvas.save(small)
    manifest = json.loads((tmp_path / "idx" / "manifest.json").read_text())
    from faceidx.query.calibfile import gallery_size, index_id

    save_calibration(tmp_path / "idx", {
        "index": {"id": index_id(manifest), **gallery_size(manifest)},
        "threshold": {"value": 0.5, "kind": "1:N open-set", "target_fpir": 0.01,
                      "gallery_identities": 2, "score": "best", "quality_gate": 0.5},
        "verification": None, "openset": {}, "warnings": []})
    gallery = open_gallery(tmp_path / "idx", device="cpu")
    [full] = gallery.identify_image(photo, k=1)
    assert full.status == "known" and full.decision == "Aaron_Eckhart"
    assert full.quality == pytest.approx(float(by_source[photo.name]), abs=1e-4)
    [planted] = gallery.identify_image(small, k=1)
    assert planted.status == "low_quality" and planted.decision is None
    assert planted.quality < 0.5 < full.quality
    assert np.isclose(planted.candidates[0].score, full.top_score, atol=0.05)  # same face found
