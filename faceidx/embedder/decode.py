"""Decode one image file into an 8-bit RGB array, refusing bad input by rule.

    rgb = load_image("faces/subject01.happy")      # np.uint8 (H, W, 3)

The format is sniffed from the first bytes, never from the extension (Yale's GIFs have
none). Every refusal raises :class:`ImageError` whose ``code`` is one of
:data:`REASONS`, so a batch run can write it to its failures file and go on:

    empty          the file has 0 bytes
    not_an_image   the first bytes match no supported image format
    unreadable     the file cannot be opened (missing, permission, I/O error)
    corrupt        the header or the data is damaged
    truncated      the data stops before the image is complete
    too_large      more pixels than ``max_pixels`` and not cheaply reducible (never decoded)
    too_small      a side shorter than ``min_side`` (e.g. a 1x1 tracking pixel)

Conversions: grey, palette, CMYK -> RGB; RGBA/LA composited on white; 16-bit samples
scaled to 8 bits; EXIF orientation applied; animated images give their first frame.
Memory is bounded whatever the format: before any pixel is decoded, the header's size
and mode give the decode's peak bytes (the decoded image plus the conversion to RGB),
which must fit ``max_bytes`` (a budget per worker: a worker decodes one image at a
time) and ``max_pixels``. Huge JPEGs are reduced while decoding (PIL ``draft``: 1/2,
1/4, 1/8) to fit; other formats over either limit are refused from their header alone.
Error messages never quote the file's bytes (they end up in failures.jsonl).
"""

from __future__ import annotations

import logging
import os
import warnings

import numpy as np

from faceidx.errors import DataError

log = logging.getLogger(__name__)

REASONS = ("empty", "not_an_image", "unreadable", "corrupt", "truncated", "too_large", "too_small")

#: Decode at most this many pixels (64 MP, about 200 MB as RGB).
MAX_PIXELS = 64_000_000
#: Peak bytes one decode may take (decoded image + conversion to RGB), per worker.
MAX_BYTES = 384 << 20
#: Images with a shorter side than this hold no usable face.
MIN_SIDE = 16
#: Bytes per pixel of the decoded image, by PIL mode (unknown modes: 8).
_MODE_BYTES = {"1": 1, "L": 1, "P": 1, "LA": 2, "PA": 2, "La": 2, "RGB": 3, "YCbCr": 3,
               "LAB": 3, "HSV": 3, "RGBA": 4, "RGBa": 4, "RGBX": 4, "CMYK": 4, "I": 4, "F": 4,
               "I;16": 2, "I;16B": 2, "I;16L": 2, "I;16N": 2}
#: Worst extra bytes per pixel of the conversion to RGB (RGBA composite: 4 + 4 + 3 + 1).
_CONVERT_BYTES = 12


def decode_bytes(width: int, height: int, mode: str) -> int:
    """Peak bytes of decoding a width x height image of PIL `mode` into RGB."""
    return width * height * (_MODE_BYTES.get(mode, 8) + _CONVERT_BYTES)

_MAGIC: tuple[tuple[bytes, int, str], ...] = (
    (b"\xff\xd8\xff", 0, "JPEG"),
    (b"\x89PNG\r\n\x1a\n", 0, "PNG"),
    (b"GIF87a", 0, "GIF"),
    (b"GIF89a", 0, "GIF"),
    (b"BM", 0, "BMP"),
    (b"II*\x00", 0, "TIFF"),
    (b"MM\x00*", 0, "TIFF"),
    (b"WEBP", 8, "WEBP"),  # after "RIFF" + 4-byte size
)


class ImageError(DataError):
    """An image that cannot be used; ``code`` is one of :data:`REASONS`."""

    def __init__(self, code: str, message: str, path: str | os.PathLike | None = None):
        if code not in REASONS:
            raise ValueError(f"unknown image error code {code!r}")
        self.code = code
        super().__init__(f"{code}: {message}", path)


def sniff_format(head: bytes) -> str | None:
    """The image format named by the first bytes of a file, or None if unknown.

    Knows JPEG, PNG, GIF, BMP, TIFF, WEBP and the netpbm family (PBM/PGM/PPM, P1-P6).
    """
    for magic, offset, name in _MAGIC:
        if head[offset:offset + len(magic)] == magic:
            if name == "WEBP" and head[:4] != b"RIFF":
                continue
            return name
    if len(head) >= 3 and head[:1] == b"P" and head[1:2] in b"123456" and head[2:3].isspace():
        return "PPM"
    return None


def load_image(path: str | os.PathLike, *, max_pixels: int = MAX_PIXELS,
               min_side: int = MIN_SIDE, max_bytes: int = MAX_BYTES) -> np.ndarray:
    """Decode `path` into a C-contiguous np.uint8 array (H, W, 3), RGB.

    Raises ImageError (with a reason code) for anything that is not a usable image.
    """
    from PIL import Image, ImageOps

    try:
        with open(path, "rb") as fh:
            head = fh.read(16)
    except OSError as err:
        raise ImageError("unreadable", str(err.strerror or err), path) from err
    if not head:
        raise ImageError("empty", "the file is empty", path)
    fmt = sniff_format(head)
    if fmt is None:
        raise ImageError("not_an_image", "the first bytes match no supported image format", path)

    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", Image.DecompressionBombWarning)  # max_pixels rules
            img = Image.open(path, formats=[fmt])
    except Image.DecompressionBombError as err:
        raise ImageError("too_large", f"{fmt} header declares too many pixels ({err})", path) from err
    except (OSError, SyntaxError, ValueError) as err:
        raise ImageError("corrupt", f"{fmt} header cannot be read: {err}", path) from err

    with img:
        width, height = img.size
        if min(width, height) < min_side:
            raise ImageError("too_small", f"{width}x{height} pixels; need at least {min_side} a side",
                             path)
        per_pixel = decode_bytes(1, 1, img.mode)
        limit = min(max_pixels, max_bytes // per_pixel)
        if width * height > limit:
            img = _reduce_while_decoding(img, limit, path, per_pixel)
        try:
            img.load()
            img = ImageOps.exif_transpose(img)
            rgb = _to_rgb(img)
        except OSError as err:
            text = str(err).lower()
            code = "truncated" if ("truncated" in text or "broken data stream" in text) else "corrupt"
            raise ImageError(code, f"{fmt} data cannot be decoded: {err}", path) from err
        except (SyntaxError, ValueError, EOFError) as err:
            raise ImageError("corrupt", f"{fmt} data cannot be decoded: {err}", path) from err
    return np.ascontiguousarray(rgb)


def _reduce_while_decoding(img, max_pixels: int, path, per_pixel: int = 0):
    """Ask the JPEG decoder for a 1/2..1/8 scale that fits `max_pixels`; refuse otherwise."""
    width, height = img.size
    if img.format == "JPEG":
        for scale in (2, 4, 8):
            if (width // scale) * (height // scale) <= max_pixels:
                img.draft(img.mode, (width // scale, height // scale))
                log.info("%s: %dx%d decoded at 1/%d scale", path, width, height, scale)
                return img
    need = f" (decoding needs ~{width * height * per_pixel / 2**20:,.0f} MiB)" if per_pixel else ""
    raise ImageError("too_large", f"{width}x{height} pixels exceeds the limit of {max_pixels:,} "
                     f"for this format{need}", path)


def _to_rgb(img) -> np.ndarray:
    """Any PIL mode -> uint8 (H, W, 3)."""
    from PIL import Image

    mode = img.mode
    if mode in ("I;16", "I;16B", "I;16L", "I;16N", "I"):
        # 16-bit grey (PNG/TIFF); "I" holds 16-bit PNG samples in 32-bit ints.
        # in 32-bit steps: no 8-byte-per-pixel temporaries
        arr = np.asarray(img)
        if mode == "I":
            arr = np.clip(arr, 0, 65535)
        top = 65535 if mode != "I" or arr.max(initial=0) > 255 else 255
        grey = (arr.astype(np.uint32) * 255 // top).astype(np.uint8)
        return np.repeat(grey[:, :, None], 3, axis=2)
    if mode == "F":
        arr = np.asarray(img, dtype=np.float32)
        lo, hi = float(arr.min()), float(arr.max())
        grey = np.zeros(arr.shape, np.uint8) if hi <= lo else ((arr - lo) * (255 / (hi - lo))).astype(np.uint8)
        return np.repeat(grey[:, :, None], 3, axis=2)
    if mode == "P":
        img = img.convert("RGBA" if "transparency" in img.info else "RGB")
        mode = img.mode
    if mode in ("RGBA", "LA", "PA", "RGBa", "La"):
        rgba = img.convert("RGBA")
        background = Image.new("RGBA", rgba.size, (255, 255, 255, 255))
        img = Image.alpha_composite(background, rgba)
    if img.mode != "RGB":
        img = img.convert("RGB")
    return np.asarray(img, dtype=np.uint8)
