"""Test-time augmentation: the chip copies whose embeddings are averaged.

    x = chips_to_tensor(chips, device)            # (n, 3, H, W) float
    views = tta_views(x, "jitter", copies=10)     # (copies, n, 3, H, W)

Modes (``TTA_MODES``):

    none     the chip
    flip     the chip and its left-right mirror
    jitter   the chip, its mirror and copies-2 jittered chips as dlib's ``jitter_image``
             makes them (dnn_face_recognition_ex.cpp): the chip less a 3 px border,
             zoomed out by 1/U(0.97, 1), shifted by U(-2%, 2%) of its side each way,
             rotated by U(-3, 3) degrees, mirrored with probability 1/2, bilinear, zeros
             outside. Unlike dlib's the draws are fixed (seed 0) so a face gives the same
             vector every time and gallery and probes see the same copies.

All copies of a batch go through the model together (one forward pass of copies x n).
"""

from __future__ import annotations

import math

import numpy as np
import torch
import torch.nn.functional as F

TTA_MODES = ("none", "flip", "jitter")
DEFAULT_JITTER_COPIES = 10
JITTER_SEED = 0


def copies_of(mode: str, copies: int = DEFAULT_JITTER_COPIES) -> int:
    """How many views `mode` makes of each chip."""
    if mode not in TTA_MODES:
        raise ValueError(f"tta must be one of {TTA_MODES}, got {mode!r}")
    if mode == "jitter" and copies < 2:
        raise ValueError(f"jitter needs at least 2 copies, got {copies}")
    return {"none": 1, "flip": 2}.get(mode, copies)


def jitter_params(copies: int, seed: int = JITTER_SEED) -> np.ndarray:
    """(copies - 2, 5): zoom-out, shift x, shift y (fractions), angle (radians), mirror."""
    rng = np.random.default_rng(seed)
    m = copies - 2
    return np.stack([1.0 / rng.uniform(0.97, 0.99999, m), rng.uniform(-0.02, 0.02, m),
                     rng.uniform(-0.02, 0.02, m), np.radians(rng.uniform(-3.0, 3.0, m)),
                     (rng.random(m) > 0.5).astype(float)], axis=1)


def tta_views(x: torch.Tensor, mode: str, copies: int = DEFAULT_JITTER_COPIES) -> torch.Tensor:
    """(views, n, C, H, W): the views of a chip batch x (n, C, H, W) for `mode`."""
    views = [x]
    if copies_of(mode, copies) == 1:
        return x[None]
    views.append(x.flip(3))
    if mode == "jitter":
        n, _, h, w = x.shape
        inner = (w - 6) / w                         # dlib shrinks the chip rect by 3 px
        for zoom, sx, sy, angle, flip in jitter_params(copies):
            s = inner * zoom
            c, si = math.cos(angle), math.sin(angle)
            mx = -1.0 if flip else 1.0
            theta = torch.tensor([[s * c * mx, -s * si, 2 * sx * inner],
                                  [s * si * mx, s * c, 2 * sy * inner]], dtype=x.dtype,
                                 device=x.device).expand(n, 2, 3)
            grid = F.affine_grid(theta, list(x.shape), align_corners=False)
            views.append(F.grid_sample(x, grid, mode="bilinear", padding_mode="zeros",
                                       align_corners=False))
    return torch.stack(views)
