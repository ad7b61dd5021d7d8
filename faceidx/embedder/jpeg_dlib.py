"""JPEG pixels as dlib decodes them, so chips and vectors equal dlib's own pipeline's.

    image = load_image(path)                  # faceidx.embedder.decode (PIL)
    image = dlib_pixels(path, image)          # dlib's decoding of the same file, if it applies

dlib-bin decodes JPEGs with its bundled IJG libjpeg, whose chroma upsampling differs from
the libjpeg-turbo inside Pillow: on LFW photos the two decodings of one file differ by up
to ~30 grey levels at colour edges, which moved faceidx's embeddings to cosine 0.9993 of
dlib's own (``dlib.load_rgb_image`` + ``compute_face_descriptor``) on the worst of a
dozen photos; with dlib's pixels they agree to 0.99998. The model was trained on images
dlib decoded.

dlib's pixels replace PIL's only for a JPEG (magic bytes) that PIL decoded at full size
in RGB or grey without an EXIF rotation, and only when the shapes agree; anything else
(PNG, CMYK JPEG, a draft-reduced huge JPEG, dlib not installed, a file dlib refuses)
keeps PIL's pixels, which decode.py has already checked.
"""

from __future__ import annotations

import logging
import os

import numpy as np

log = logging.getLogger(__name__)

DECODERS = ("dlib", "pil")
JPEG_MAGIC = b"\xff\xd8\xff"
EXIF_ORIENTATION = 0x0112


def dlib_pixels(path: str | os.PathLike, image: np.ndarray) -> np.ndarray:
    """dlib's decoding of the JPEG at `path` when it applies (see module doc), else `image`."""
    try:
        with open(path, "rb") as fh:
            if fh.read(3) != JPEG_MAGIC:
                return image
        from PIL import Image

        with Image.open(path) as im:
            if im.mode not in ("RGB", "L") or im.getexif().get(EXIF_ORIENTATION, 1) != 1:
                return image
            if (im.height, im.width) != image.shape[:2]:
                return image                     # decode.py reduced it (huge JPEG)
        import dlib

        pixels = dlib.load_rgb_image(os.fspath(path))
    except (ImportError, OSError, RuntimeError, ValueError) as err:
        log.debug("%s: keeping PIL's pixels (%s)", path, err)
        return image
    if pixels.shape != image.shape:
        return image
    return np.ascontiguousarray(pixels, dtype=np.uint8)
