"""Turn batches of aligned chips into L2-normalised embeddings with a FaceModel.

    enc = Encoder(load_model("dlib-resnet-v1"), device="cpu", tta="flip")
    vectors = enc(chips)            # chips uint8 (n, 150, 150, 3) -> float32 (n, D)

TTA (faceidx.embedder.tta): ``none`` embeds the chip; ``flip`` the chip and its
left-right mirror; ``jitter`` the chip, its mirror and `jitters` - 2 dlib-style jittered
copies (fixed draws). All views go through one forward pass; their normalised vectors
are averaged and normalised again.

Device handling is faceidx.embedder.device's: "auto" resolved once here, torch threads
set to the usable cores on the CPU, pinned non-blocking channels-last batches on CUDA.
Precision: with ``precision="auto"`` on CUDA, the first call's chips (up to 64) decide
once whether the model may run under fp16/bf16 autocast: only when every chip's
embedding keeps cosine >= 0.9999 with fp32 (FaceModel.enable_autocast). It then runs so
for forward passes of at least AUTOCAST_MIN_BATCH images, where it pays: on an H200 the
dlib ResNet under fp16 ran 0.78x fp32's speed at batch 64, 0.98x at 256 and 1.17x at
1024 (benchmarks/embed_gpu.py, docs/MODEL.md). The CPU and ``precision="fp32"``
always run float32.
"""

from __future__ import annotations

import contextlib
import logging

import numpy as np
import torch
import torch.nn.functional as F

from faceidx.embedder.device import (
    chips_to_tensor,
    configure_cpu_threads,
    prepare_model,
    resolve_device,
)
from faceidx.embedder.tta import DEFAULT_JITTER_COPIES, TTA_MODES, copies_of, tta_views

__all__ = ["PRECISIONS", "TTA_MODES", "Encoder"]

log = logging.getLogger(__name__)

PRECISIONS = ("auto", "fp32")
AUTOCAST_SAMPLE = 64  # chips of the first batch that the fp16/bf16 parity check runs on
AUTOCAST_MIN_BATCH = 512  # images per forward pass from which autocast is used (see above)


class Encoder:
    """Chips in, normalised float32 vectors out. `model` follows the FaceModel contract."""

    def __init__(self, model, device: str | torch.device = "auto", tta: str = "none",
                 jitters: int = DEFAULT_JITTER_COPIES, precision: str = "auto"):
        if precision not in PRECISIONS:
            raise ValueError(f"unknown precision {precision!r}; choose one of {', '.join(PRECISIONS)}")
        self.views = copies_of(tta, jitters)
        self.device = resolve_device(device)
        if self.device.type == "cpu":
            configure_cpu_threads()
        self.tta, self.jitters = tta, jitters
        self.model = prepare_model(model, self.device)
        self.dim = int(model.dim)
        # decided on the first call's real chips; None until then (and on the CPU)
        self.check_autocast = precision == "auto" and self.device.type == "cuda" \
            and hasattr(self.model, "enable_autocast")
        self.autocast_check: dict[str, float] = {}
        self.autocast_dtype: torch.dtype | None = None  # allowed for large passes, once checked

    def __call__(self, chips: np.ndarray) -> np.ndarray:
        """uint8 (n, H, W, 3) RGB chips -> float32 (n, D), rows of unit norm."""
        chips = np.asarray(chips)
        n = len(chips)
        if n == 0:
            return np.empty((0, self.dim), np.float32)
        if self.check_autocast:
            self.check_autocast = False
            self.autocast_check = self.model.enable_autocast(chips[:AUTOCAST_SAMPLE])
            self.autocast_dtype, self.model.autocast_dtype = self.model.autocast_dtype, None
            log.info("CUDA precision: %s for passes of >= %d images (worst cosine vs fp32 on "
                     "%d chips: %s)", self.autocast_dtype or "fp32", AUTOCAST_MIN_BATCH,
                     min(n, AUTOCAST_SAMPLE), self.autocast_check)
        y = self.embed_tensor(chips_to_tensor(chips, self.device))
        return y.cpu().numpy().astype(np.float32, copy=False)

    def embed_tensor(self, x: torch.Tensor) -> torch.Tensor:
        """float (n, 3, H, W) on the device -> float32 (n, D) normalised, TTA applied."""
        n = len(x)
        low = self.autocast_dtype if n * self.views >= AUTOCAST_MIN_BATCH else None
        ctx = torch.autocast(device_type="cuda", dtype=low) if low else contextlib.nullcontext()
        with torch.inference_mode(), ctx:
            if self.views == 1:
                return self.model(x).float()
            v = tta_views(x, self.tta, self.jitters)
            y = self.model(v.flatten(0, 1)).float().view(self.views, n, -1)
            return F.normalize(F.normalize(y, dim=2).sum(0), dim=1)
