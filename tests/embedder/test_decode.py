"""Decoding by sniffed format, and every kind of bad input refused by rule."""

from __future__ import annotations

import io
import struct
import zlib
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from faceidx.embedder.decode import ImageError, load_image, sniff_format

LFW_IMAGE = "lfw-subset/Aaron_Eckhart/Aaron_Eckhart_0001.jpg"


def _png_header_only(width: int, height: int) -> bytes:
    """A valid PNG signature + IHDR declaring width x height, and a tiny IDAT (cheap bomb)."""
    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))

    ihdr = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    return (b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) + chunk(b"IDAT", zlib.compress(b"\0" * 64))
            + chunk(b"IEND", b""))


@pytest.fixture
def face_jpeg(shared_data) -> bytes:
    return (shared_data / LFW_IMAGE).read_bytes()


def _code(path: Path, **kw) -> str:
    with pytest.raises(ImageError) as info:
        load_image(path, **kw)
    assert str(path) in str(info.value)  # the error names the file
    return info.value.code


def test_sniff_format_by_magic_bytes():
    assert sniff_format(b"\xff\xd8\xff\xe0\x00\x10JFIF") == "JPEG"
    assert sniff_format(b"\x89PNG\r\n\x1a\n....") == "PNG"
    assert sniff_format(b"GIF89a\x01\x00") == "GIF"
    assert sniff_format(b"P5\n92 112\n255\n") == "PPM"
    assert sniff_format(b"RIFF\x00\x00\x00\x00WEBPVP8 ") == "WEBP"
    assert sniff_format(b"RIFF\x00\x00\x00\x00WAVEfmt ") is None
    assert sniff_format(b"hello world") is None
    assert sniff_format(b"") is None


def test_real_formats_decode_to_rgb_uint8(shared_data):
    for rel, shape in [(LFW_IMAGE, (250, 250, 3)), ("orl/s1/1.pgm", (112, 92, 3)),
                       ("yale/subject01.happy", (243, 320, 3))]:  # Yale: GIF, no extension
        rgb = load_image(shared_data / rel)
        assert rgb.shape == shape and rgb.dtype == np.uint8 and rgb.flags.c_contiguous


def test_extensionless_and_misnamed_files_are_sniffed(tmp_path, face_jpeg):
    (tmp_path / "noext").write_bytes(face_jpeg)
    (tmp_path / "really_a_jpeg.png").write_bytes(face_jpeg)
    expected = np.asarray(Image.open(io.BytesIO(face_jpeg)).convert("RGB"))
    assert np.array_equal(load_image(tmp_path / "noext"), expected)
    assert np.array_equal(load_image(tmp_path / "really_a_jpeg.png"), expected)


def test_bad_files_get_their_reason(tmp_path, face_jpeg):
    cases = {
        "empty.jpg": b"",
        "notes.jpg": b"these are notes, not pixels\n",
        "truncated.jpg": face_jpeg[: len(face_jpeg) // 2],
        "corrupt.jpg": face_jpeg[:200] + bytes(range(256)) * 8,
        "bad_header.png": b"\x89PNG\r\n\x1a\n" + b"\x00" * 40,
    }
    for name, data in cases.items():
        (tmp_path / name).write_bytes(data)
    assert _code(tmp_path / "empty.jpg") == "empty"
    assert _code(tmp_path / "notes.jpg") == "not_an_image"
    assert _code(tmp_path / "truncated.jpg") == "truncated"
    assert _code(tmp_path / "corrupt.jpg") == "corrupt"
    assert _code(tmp_path / "bad_header.png") == "corrupt"
    assert _code(tmp_path / "missing.jpg") == "unreadable"


def test_truncated_png(tmp_path, face_jpeg):
    buf = io.BytesIO()
    Image.open(io.BytesIO(face_jpeg)).save(buf, "PNG")
    (tmp_path / "cut.png").write_bytes(buf.getvalue()[: len(buf.getvalue()) // 2])
    assert _code(tmp_path / "cut.png") == "truncated"


def test_huge_images_are_refused_from_the_header(tmp_path):
    # 20000 x 20000 declared in a 100-byte file: refused before any pixel is decoded.
    (tmp_path / "bomb.png").write_bytes(_png_header_only(20000, 20000))
    (tmp_path / "big.png").write_bytes(_png_header_only(9000, 9000))  # 81 MP > 64 MP limit
    assert _code(tmp_path / "bomb.png") == "too_large"
    assert _code(tmp_path / "big.png") == "too_large"


def test_large_jpeg_is_reduced_while_decoding(tmp_path, face_jpeg):
    Image.open(io.BytesIO(face_jpeg)).resize((2000, 1600)).save(tmp_path / "large.jpg")
    small = load_image(tmp_path / "large.jpg", max_pixels=300_000)
    assert small.shape == (400, 500, 3)  # 1/4 scale is the first that fits 300k pixels
    assert _code(tmp_path / "large.jpg", max_pixels=10_000) == "too_large"  # 1/8 still too big


def test_tiny_images_are_refused(tmp_path):
    Image.new("RGB", (1, 1), (10, 20, 30)).save(tmp_path / "pixel.png")
    Image.new("L", (200, 8)).save(tmp_path / "strip.gif")
    assert _code(tmp_path / "pixel.png") == "too_small"
    assert _code(tmp_path / "strip.gif") == "too_small"


def test_mode_conversions(tmp_path, face_jpeg):
    src = Image.open(io.BytesIO(face_jpeg))
    src.convert("L").save(tmp_path / "grey.png")
    grey = load_image(tmp_path / "grey.png")
    assert grey.shape == (250, 250, 3)
    assert np.array_equal(grey[..., 0], grey[..., 2])
    assert np.array_equal(grey[..., 0], np.asarray(src.convert("L")))

    ramp = (np.arange(64 * 64, dtype=np.uint32).reshape(64, 64) * 16).astype(np.uint16)
    Image.fromarray(ramp).save(tmp_path / "deep.png")  # 16-bit grey PNG
    deep = load_image(tmp_path / "deep.png")
    assert np.array_equal(deep[..., 1], (ramp.astype(np.int64) * 255 // 65535).astype(np.uint8))

    rgba = np.zeros((32, 32, 4), np.uint8)
    rgba[..., 0] = 200
    rgba[:16, :, 3] = 255  # top half opaque red, bottom half transparent
    Image.fromarray(rgba, "RGBA").save(tmp_path / "alpha.png")
    out = load_image(tmp_path / "alpha.png")
    assert tuple(out[0, 0]) == (200, 0, 0) and tuple(out[-1, -1]) == (255, 255, 255)

    src.convert("P").save(tmp_path / "palette.gif")
    assert load_image(tmp_path / "palette.gif").shape == (250, 250, 3)


def test_animated_gif_gives_its_first_frame(tmp_path):
    frames = [Image.new("RGB", (40, 30), colour) for colour in ((255, 0, 0), (0, 0, 255))]
    frames[0].save(tmp_path / "anim", "GIF", save_all=True, append_images=frames[1:], duration=50)
    out = load_image(tmp_path / "anim")
    assert out.shape == (30, 40, 3)
    assert tuple(out[5, 5]) == (255, 0, 0)


def test_exif_orientation_is_applied(tmp_path):
    pixels = np.zeros((20, 40, 3), np.uint8)
    pixels[:, :20] = 255  # left half white, right half black
    img = Image.fromarray(pixels)
    exif = img.getexif()
    exif[0x0112] = 6  # "rotate 90 CW to display"
    img.save(tmp_path / "rotated.jpg", exif=exif, quality=95)
    out = load_image(tmp_path / "rotated.jpg")
    assert out.shape == (40, 20, 3)
    assert out[5, 10].mean() > 200 and out[-5, 10].mean() < 50  # white moved to the top
