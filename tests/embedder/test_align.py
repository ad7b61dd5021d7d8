"""Detection and alignment: identical to dlib's reference calls, policies, no-face, none."""

from __future__ import annotations

import math

import numpy as np
import pytest
from PIL import Image

from faceidx.embedder.align import Aligner, face_chips, mirror
from faceidx.embedder.decode import load_image

FACE_A = "lfw-subset/Aaron_Eckhart/Aaron_Eckhart_0001.jpg"
FACE_B = "lfw-subset/Ann_Veneman/Ann_Veneman_0004.jpg"


@pytest.fixture(scope="module")
def two_faces(shared_data) -> np.ndarray:
    """Face A at full size left of face B shrunk to 180 px: two faces of different sizes."""
    a = Image.open(shared_data / FACE_A).convert("RGB")
    b = Image.open(shared_data / FACE_B).convert("RGB").resize((180, 180))
    canvas = Image.new("RGB", (450, 250), (128, 128, 128))
    canvas.paste(a, (0, 0))
    canvas.paste(b, (260, 35))
    return np.asarray(canvas)


def test_hog_chip_matches_dlib_reference_pipeline(shared_data):
    import dlib
    import face_recognition_models

    image = load_image(shared_data / FACE_A)
    detector = dlib.get_frontal_face_detector()
    predictor = dlib.shape_predictor(face_recognition_models.pose_predictor_five_point_model_location())
    rects = detector(image, 1)
    assert len(rects) == 1
    reference = dlib.get_face_chip(image, predictor(image, rects[0]), size=150, padding=0.25)

    chips = face_chips(image)
    assert len(chips) == 1
    chip = chips[0]
    assert chip.chip.shape == (150, 150, 3) and chip.chip.dtype == np.uint8
    assert np.array_equal(chip.chip, reference)
    r = rects[0]
    assert chip.box == (r.left(), r.top(), r.right(), r.bottom())
    assert chip.score > 0


def test_policies_largest_and_all(two_faces):
    every = face_chips(two_faces, policy="all")
    assert len(every) == 2
    areas = [(c.box[2] - c.box[0]) * (c.box[3] - c.box[1]) for c in every]
    assert areas[0] > areas[1]  # largest first
    assert every[0].box[0] < 250 <= every[1].box[0]  # face A is the left one
    largest = face_chips(two_faces, policy="largest")
    assert len(largest) == 1
    assert largest[0].box == every[0].box
    assert np.array_equal(largest[0].chip, every[0].chip)


def test_no_face_gives_no_chip():
    rng = np.random.default_rng(0)
    assert face_chips(np.full((200, 200, 3), 90, np.uint8)) == []
    assert face_chips(rng.integers(0, 256, (120, 160, 3), dtype=np.uint8)) == []


def test_detector_none_resizes_the_crop(shared_data):
    crop = load_image(shared_data / "orl/s1/1.pgm")  # 92 x 112
    (chip,) = face_chips(crop, detector="none", policy="all")
    assert chip.chip.shape == (150, 150, 3)
    assert chip.box == (0, 0, 91, 111)
    assert math.isnan(chip.score)
    expected = np.asarray(Image.fromarray(crop).resize((150, 150), Image.BILINEAR))
    assert np.array_equal(chip.chip, expected)
    exact = np.random.default_rng(1).integers(0, 256, (150, 150, 3), dtype=np.uint8)
    assert np.array_equal(face_chips(exact, detector="none")[0].chip, exact)  # already 150x150


def test_rejects_unknown_values_and_bad_shapes():
    with pytest.raises(ValueError, match="detector"):
        Aligner("retinaface")
    with pytest.raises(ValueError, match="policy"):
        Aligner("none")(np.zeros((20, 20, 3), np.uint8), policy="smallest")
    with pytest.raises(ValueError, match="RGB"):
        Aligner("none")(np.zeros((20, 20), np.uint8))


def test_mirror_flips_left_right():
    chip = np.arange(2 * 3 * 3).reshape(2, 3, 3).astype(np.uint8)
    assert np.array_equal(mirror(chip)[:, 0], chip[:, 2])
    assert mirror(chip).flags.c_contiguous
