"""A quality score per face: what the seed documents name as breaking identification.

    q = face_quality(chip, image_hw)          # Quality(...), q.score in [0, 1]

Features (each mapped to [0, 1], 1 = good):

    size        the detector box side in pixels: 0 at 30 px or less, 1 at 80 px or more
    share       the box's share of the image area ("the face doesn't cover much of the
                image"): 0 at 0.5% or less, 1 at 5% or more (log scale)
    sharpness   variance of the Laplacian of the grey 150x150 chip ("blurry"):
                0 at 20 or less, 1 at 300 or more (log scale)
    pose        frontal-ness from dlib's 5 landmarks: the nose's offset from the eye
                midpoint across the eye line, over the eye distance (yaw), and the eye
                line's tilt after alignment is undone (roll does not matter: the chip is
                rotated upright): 1 - |offset| / 0.5, clipped
    single      1 for one face in the image, 0.5 for several ("multiple faces")
    detector    HOG margin: 0 at -0.5, 1 at 1.0 (MTCNN and MMOD faces: 0.5, not
                comparable)

score = the geometric mean of the features (a face bad in any one way scores low).
The limits are round numbers read off LFW-subset histograms, not fitted; what the gate
keeps is set by `faceidx calibrate` on a holdout (faceidx.query.quality_gate).
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass

import numpy as np

FEATURES = ("size", "share", "sharpness", "pose", "single", "detector")


@dataclass(frozen=True)
class Quality:
    size: float
    share: float
    sharpness: float
    pose: float
    single: float
    detector: float

    @property
    def score(self) -> float:
        v = np.clip([getattr(self, f) for f in FEATURES], 1e-3, 1.0)
        return float(np.exp(np.mean(np.log(v))))

    def to_json(self) -> dict:
        return {**asdict(self), "score": self.score}


def _ramp(x: float, lo: float, hi: float, log: bool = False) -> float:
    if log:
        x, lo, hi = (math.log(max(v, 1e-9)) for v in (x, lo, hi))
    return float(min(1.0, max(0.0, (x - lo) / (hi - lo))))


def sharpness(chip: np.ndarray) -> float:
    """Variance of the 4-neighbour Laplacian of the chip's grey levels (interior pixels)."""
    g = np.asarray(chip, np.float32) @ np.array([0.299, 0.587, 0.114], np.float32)
    lap = g[1:-1, :-2] + g[1:-1, 2:] + g[:-2, 1:-1] + g[2:, 1:-1] - 4 * g[1:-1, 1:-1]
    return float(lap.var())


def yaw_offset(landmarks: np.ndarray) -> float:
    """Nose offset across the eye line / eye distance, from dlib's 5 points (0 = frontal)."""
    pts = np.asarray(landmarks, np.float64)
    e1, e2, nose = pts[0:2].mean(axis=0), pts[2:4].mean(axis=0), pts[4]
    axis = e2 - e1
    dist = float(np.linalg.norm(axis))
    if dist < 1e-6:
        return 1.0
    mid = (e1 + e2) / 2
    return float(np.dot(nose - mid, axis) / dist ** 2)


def face_quality(chip, image_hw: tuple[int, int]) -> Quality:
    """Quality of an aligned Chip (faceidx.embedder.align.Chip) cut from an image of
    (height, width) pixels."""
    left, top, right, bottom = chip.box
    side = math.sqrt(max(1, (right - left + 1) * (bottom - top + 1)))
    share = side * side / max(1, image_hw[0] * image_hw[1])
    pose = 1.0 if chip.landmarks is None else 1.0 - min(1.0, abs(yaw_offset(chip.landmarks)) / 0.5)
    if chip.detector.startswith("hog") and math.isfinite(chip.score):
        det = _ramp(chip.score, -0.5, 1.0)
    else:
        det = 0.5
    return Quality(size=_ramp(side, 30, 80), share=_ramp(share, 0.005, 0.05, log=True),
                   sharpness=_ramp(sharpness(chip.chip), 20, 300, log=True), pose=pose,
                   single=1.0 if chip.faces_in_image <= 1 else 0.5, detector=det)


def image_hw(path) -> tuple[int, int] | None:
    """(height, width) of an image file from its header (no decode); None when unreadable.
    An EXIF rotation swaps the two, which leaves the face's share of the area unchanged."""
    from PIL import Image

    try:
        with Image.open(path) as im:
            return im.size[1], im.size[0]
    except (OSError, ValueError):
        return None


def chip_scores(chips_and_paths) -> np.ndarray:
    """Quality scores (n,) of (Chip, image path) pairs as embed writes them (NaN where the
    image size cannot be read); one header read per image."""
    sizes: dict = {}
    out = np.full(len(chips_and_paths), np.nan, np.float32)
    for i, (chip, path) in enumerate(chips_and_paths):
        if path not in sizes:
            sizes[path] = image_hw(path)
        if sizes[path] is not None:
            out[i] = face_quality(chip, sizes[path]).score
    return out
