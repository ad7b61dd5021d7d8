"""A probe photo is embedded exactly as `faceidx embed` embedded the same file: same
decoding (dlib's JPEG pixels), detector and chip template, so its own face scores 1.0."""

from __future__ import annotations

import pytest

from tests.gallery.conftest import photo_index

pytestmark = pytest.mark.slow

PHOTOS = ("Aaron_Eckhart/Aaron_Eckhart_0001.jpg", "AJ_Cook/AJ_Cook_0001.jpg",
          "AJ_Lamas/AJ_Lamas_0001.jpg")


def test_probe_photo_scores_its_own_enrolled_face_exactly(shared_data, tmp_path):
    from faceidx import open_gallery

    tree, idx = photo_index(shared_data, tmp_path, PHOTOS)
    gallery = open_gallery(idx, threshold=0.5, device="cpu")
    for rel in PHOTOS:
        for probe in (tree / rel, (tree / rel).read_bytes()):
            [res] = gallery.identify_image(probe, k=1)
            assert res.decision == rel.split("/")[0]
            assert res.top_score > 0.999999, (rel, res.top_score)
