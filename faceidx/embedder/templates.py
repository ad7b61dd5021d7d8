"""Alignment templates: how a face becomes the chip a model was trained on.

    TEMPLATES["arcface-112"].size                         # 112
    chip = five_point_chip(image, five, TEMPLATES["arcface-112"])    # (112, 112, 3) uint8
    chip_fn = chip_fn_for("arcface-112")                  # for align.Aligner(chip_fn=...)

| template | chip | how |
| --- | --- | --- |
| `dlib-150` | 150x150 | dlib's `get_face_chip(size=150, padding=0.25)` from its 5-point landmarks (align.py) |
| `arcface-112` | 112x112 | the similarity transform (rotation, uniform scale, shift; least squares, Umeyama) taking the five landmarks (eye centres, nose tip, mouth corners; landmarks.py) onto insightface's reference points `ARCFACE_112` |
| `facenet-160` | 160x160 | FaceNet's crop: the detection box grown by a margin of 32 px at the output scale (facenet-pytorch's `extract_face` rule), clipped to the image, resized (bilinear) |

Coordinates follow OpenCV and dlib: pixel centres at integers. The warp samples the
source bilinearly and fills outside the image with black, as cv2.warpAffine does with
its default border.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

# insightface's arcface_dst: the five points of a 112x112 ArcFace chip (x, y).
ARCFACE_112 = np.array([[38.2946, 51.6963], [73.5318, 51.5014], [56.0252, 71.7366],
                        [41.5493, 92.3655], [70.7299, 92.2041]], np.float64)
FACENET_MARGIN = 32


@dataclass(frozen=True)
class Template:
    name: str
    size: int
    kind: str                       # "dlib", "five-point" or "box"
    points: np.ndarray | None = None
    margin: int = 0


TEMPLATES = {
    "dlib-150": Template("dlib-150", 150, "dlib"),
    "arcface-112": Template("arcface-112", 112, "five-point", ARCFACE_112),
    "facenet-160": Template("facenet-160", 160, "box", margin=FACENET_MARGIN),
}


def similarity_transform(src: np.ndarray, dst: np.ndarray) -> np.ndarray:
    """The 2x3 matrix M of the similarity (no reflection) minimising |M [src; 1] - dst|^2.

    Umeyama (1991): centred point sets, SVD of their covariance, scale from the variance.
    """
    src, dst = np.asarray(src, np.float64), np.asarray(dst, np.float64)
    if src.shape != dst.shape or src.ndim != 2 or src.shape[1] != 2 or len(src) < 2:
        raise ValueError(f"need matching (n>=2, 2) point sets, got {src.shape} and {dst.shape}")
    mu_s, mu_d = src.mean(0), dst.mean(0)
    s, d = src - mu_s, dst - mu_d
    u, sig, vt = np.linalg.svd(d.T @ s / len(src))
    e = np.diag([1.0, np.sign(np.linalg.det(u) * np.linalg.det(vt)) or 1.0])
    rot = u @ e @ vt
    var = (s ** 2).sum() / len(src)
    if var == 0:
        raise ValueError("source points coincide")
    scale = (sig * np.diag(e)).sum() / var
    m = np.empty((2, 3))
    m[:, :2] = scale * rot
    m[:, 2] = mu_d - m[:, :2] @ mu_s
    return m


def warp_affine(image: np.ndarray, m: np.ndarray, size: int) -> np.ndarray:
    """uint8 (size, size, 3): out[y, x] = image at M^-1 (x, y), bilinear, black outside."""
    inv = np.linalg.inv(np.vstack([m, [0.0, 0.0, 1.0]]))[:2]
    ys, xs = np.mgrid[0:size, 0:size].astype(np.float64)
    sx = inv[0, 0] * xs + inv[0, 1] * ys + inv[0, 2]
    sy = inv[1, 0] * xs + inv[1, 1] * ys + inv[1, 2]
    return _bilinear(np.asarray(image), sx, sy)


def _bilinear(image: np.ndarray, sx: np.ndarray, sy: np.ndarray) -> np.ndarray:
    h, w = image.shape[:2]
    img = image.reshape(h, w, -1).astype(np.float32)
    x0, y0 = np.floor(sx).astype(np.int64), np.floor(sy).astype(np.int64)
    fx, fy = (sx - x0)[..., None], (sy - y0)[..., None]
    out = np.zeros(sx.shape + (img.shape[2],), np.float32)
    for dy, wy in ((0, 1 - fy), (1, fy)):
        for dx, wx in ((0, 1 - fx), (1, fx)):
            xi, yi = x0 + dx, y0 + dy
            inside = ((xi >= 0) & (xi < w) & (yi >= 0) & (yi < h))[..., None]
            px = img[np.clip(yi, 0, h - 1), np.clip(xi, 0, w - 1)]
            out += np.where(inside, px, 0.0) * wx * wy
    return np.clip(np.rint(out), 0, 255).astype(np.uint8).reshape(sx.shape + image.shape[2:])


def five_point_chip(image: np.ndarray, five: np.ndarray, template: Template) -> np.ndarray:
    """The chip whose five landmarks land (least squares) on the template's points."""
    if template.kind != "five-point":
        raise ValueError(f"template {template.name} is not a five-point template")
    return warp_affine(image, similarity_transform(five, template.points), template.size)


def box_chip(image: np.ndarray, box, template: Template) -> np.ndarray:
    """FaceNet's crop: `box` (left, top, right, bottom, inclusive) plus margin, resized."""
    from PIL import Image

    h, w = image.shape[:2]
    left, top, right, bottom = (float(v) for v in box)
    right, bottom = right + 1, bottom + 1  # inclusive -> exclusive edges
    size, margin = template.size, template.margin
    mx = margin * (right - left) / (size - margin)
    my = margin * (bottom - top) / (size - margin)
    crop = (int(max(left - mx / 2, 0)), int(max(top - my / 2, 0)),
            int(min(right + mx / 2, w)), int(min(bottom + my / 2, h)))
    if crop[2] <= crop[0] or crop[3] <= crop[1]:
        raise ValueError(f"box {tuple(box)} lies outside the {w}x{h} image")
    face = Image.fromarray(np.ascontiguousarray(image, dtype=np.uint8)).crop(crop)
    return np.asarray(face.resize((size, size), Image.BILINEAR), np.uint8)


class TemplateChipper:
    """A chip function for align.Aligner (`chip_fn(image, shape)`) cutting `template`'s chip
    from the detection in dlib's 5-point `shape` (its `.rect` is the face box).
    Five-point templates find the five points with dlib's 68-point predictor first."""

    def __init__(self, template: str):
        if template not in TEMPLATES:
            raise ValueError(f"unknown template {template!r} (known: {', '.join(TEMPLATES)})")
        self.template = TEMPLATES[template]
        self._marks = None
        if self.template.kind == "five-point":
            from faceidx.embedder.landmarks import Landmarks68

            self._marks = Landmarks68()

    def __call__(self, image: np.ndarray, shape) -> np.ndarray:
        r = shape.rect
        box = (r.left(), r.top(), r.right(), r.bottom())
        if self.template.kind == "box":
            return box_chip(image, box, self.template)
        from faceidx.embedder.landmarks import five_from_68

        return five_point_chip(image, five_from_68(self._marks(image, r)), self.template)


def chip_fn_for(template: str):
    """None for dlib-150 (the aligner's default chip), else a TemplateChipper."""
    if template == "dlib-150":
        return None
    return TemplateChipper(template)
