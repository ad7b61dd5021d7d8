"""Alignment templates: the five-point warp puts landmarks on the ArcFace reference points;
the 68-point model finds them on real faces; FaceNet's crop follows its margin rule."""

from __future__ import annotations

import numpy as np
import pytest

from faceidx.embedder.templates import (
    ARCFACE_112,
    TEMPLATES,
    box_chip,
    five_point_chip,
    similarity_transform,
)

ARC = TEMPLATES["arcface-112"]


def dots(h, w, points, sigma=1.2):
    """An (h, w, 3) image with one bright Gaussian dot per point (sub-pixel centres)."""
    ys, xs = np.mgrid[0:h, 0:w]
    img = np.zeros((h, w), np.float64)
    for x, y in points:
        img += np.exp(-((xs - x) ** 2 + (ys - y) ** 2) / (2 * sigma ** 2))
    return np.repeat((255 * np.clip(img, 0, 1)).astype(np.uint8)[..., None], 3, axis=2)


def centroid(chip, x, y, r=4):
    """Intensity centroid of the chip around (x, y)."""
    g = chip[..., 0].astype(np.float64)
    x0, y0 = int(round(x)) - r, int(round(y)) - r
    win = g[y0:y0 + 2 * r + 1, x0:x0 + 2 * r + 1]
    ys, xs = np.mgrid[y0:y0 + 2 * r + 1, x0:x0 + 2 * r + 1]
    return np.array([(win * xs).sum() / win.sum(), (win * ys).sum() / win.sum()])


def test_similarity_transform_recovers_a_known_one():
    rng = np.random.default_rng(0)
    src = rng.uniform(0, 100, (5, 2))
    a, s, t = np.deg2rad(17), 2.3, np.array([40.0, -12.0])
    rot = s * np.array([[np.cos(a), -np.sin(a)], [np.sin(a), np.cos(a)]])
    m = similarity_transform(src, src @ rot.T + t)
    np.testing.assert_allclose(m[:, :2], rot, atol=1e-9)
    np.testing.assert_allclose(m[:, 2], t, atol=1e-9)
    with pytest.raises(ValueError):
        similarity_transform(src[:1], src[:1])


@pytest.mark.parametrize("angle, scale", [(0.0, 1.0), (-14.0, 2.4), (25.0, 3.1)])
def test_five_point_warp_lands_on_the_template(angle, scale):
    """Dots at a rotated, scaled, shifted copy of the template come out on the template."""
    a = np.deg2rad(angle)
    rot = scale * np.array([[np.cos(a), -np.sin(a)], [np.sin(a), np.cos(a)]])
    placed = (ARCFACE_112 - 56) @ rot.T + np.array([180.3, 150.7])
    image = dots(320, 400, placed, sigma=1.2 * scale)
    chip = five_point_chip(image, placed, ARC)
    assert chip.shape == (112, 112, 3) and chip.dtype == np.uint8
    for (x, y) in ARCFACE_112:
        np.testing.assert_allclose(centroid(chip, x, y), (x, y), atol=0.25)


def test_facenet_box_crop_follows_the_margin_rule():
    image = np.zeros((200, 300, 3), np.uint8)
    image[50:150, 100:200] = 200  # the box (100, 50, 199, 149) is a 100x100 grey square
    chip = box_chip(image, (100, 50, 199, 149), TEMPLATES["facenet-160"])
    assert chip.shape == (160, 160, 3)
    # margin 32 of 160 at output scale: the square spans 128 px, 16 px black each side
    row = chip[80, :, 0]
    assert row[:14].max() == 0 and row[18:142].min() == 200 and row[146:].max() == 0


def test_real_faces_land_near_the_template(shared_data):
    """LFW: 68-point landmarks -> five points -> warp. Landmarks found again on the chip
    (in the detection box carried into it) sit where the warp put the five points (within
    the predictor's repeatability), and those lie near the ArcFace reference (a least-
    squares fit of a real face; iBUG's nose tip is not quite RetinaFace's nose point)."""
    dlib = pytest.importorskip("dlib")
    from faceidx.embedder.decode import load_image
    from faceidx.embedder.landmarks import Landmarks68, five_from_68
    from faceidx.embedder.templates import similarity_transform

    marks = Landmarks68()
    detector = dlib.get_frontal_face_detector()
    errors = []
    for name in ("Aaron_Eckhart/Aaron_Eckhart_0001.jpg", "Bill_Gates/Bill_Gates_0001.jpg",
                 "Hugo_Chavez/Hugo_Chavez_0001.jpg", "Ai_Sugiyama/Ai_Sugiyama_0001.jpg"):
        image = load_image(shared_data / "lfw-subset" / name)
        box = max(detector(image, 1), key=lambda r: r.area())
        five = five_from_68(marks(image, box))
        chip = five_point_chip(image, five, ARC)
        m = similarity_transform(five, ARCFACE_112)
        corners = np.array([[box.left(), box.top()], [box.right(), box.top()],
                            [box.left(), box.bottom()], [box.right(), box.bottom()]])
        mapped = corners @ m[:, :2].T + m[:, 2]   # the detection box, carried into the chip
        again = five_from_68(marks(chip, (*mapped.min(0).round(), *mapped.max(0).round())))
        placed = five @ m[:, :2].T + m[:, 2]      # where the warp put the five points
        errors.append((np.linalg.norm(again - placed, axis=1),
                       np.linalg.norm(placed - ARCFACE_112, axis=1)))
    warp, fit = np.array(errors).transpose(1, 0, 2)
    assert np.median(warp) < 2.0 and warp.max() < 5.0, warp.round(1)
    assert np.median(fit) < 3.0 and fit.max() < 10.0, fit.round(1)  # a turned head: ~9 px
