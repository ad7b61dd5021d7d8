"""Turn batches of aligned chips into L2-normalised embeddings with a FaceModel.

    enc = Encoder(load_model("dlib-resnet-v1"), device="cpu", tta="flip")
    vectors = enc(chips)            # chips uint8 (n, 150, 150, 3) -> float32 (n, D)

TTA: ``none`` embeds the chip; ``flip`` embeds the chip and its left-right mirror in the
same forward pass, averages the two normalised vectors and normalises again (a cheap,
deterministic stand-in for dlib's random jitter).

Device handling is faceidx.embedder.device's: "auto" resolved once here, torch threads
set to the usable cores on the CPU, pinned non-blocking channels-last batches on CUDA.
The model runs in float32 unless the caller enabled a checked autocast on it.
"""

from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F

from faceidx.embedder.device import (
    chips_to_tensor,
    configure_cpu_threads,
    prepare_model,
    resolve_device,
)

TTA_MODES = ("none", "flip")


class Encoder:
    """Chips in, normalised float32 vectors out. `model` follows the FaceModel contract."""

    def __init__(self, model, device: str | torch.device = "auto", tta: str = "none"):
        if tta not in TTA_MODES:
            raise ValueError(f"tta must be one of {TTA_MODES}, got {tta!r}")
        self.device = resolve_device(device)
        if self.device.type == "cpu":
            configure_cpu_threads()
        self.tta = tta
        self.model = prepare_model(model, self.device)
        self.dim = int(model.dim)

    def __call__(self, chips: np.ndarray) -> np.ndarray:
        """uint8 (n, H, W, 3) RGB chips -> float32 (n, D), rows of unit norm."""
        chips = np.asarray(chips)
        n = len(chips)
        if n == 0:
            return np.empty((0, self.dim), np.float32)
        x = chips_to_tensor(chips, self.device)
        if self.tta == "flip":
            x = torch.cat([x, x.flip(3)])
        with torch.inference_mode():
            y = self.model(x).float()
            if self.tta == "flip":
                y = F.normalize(y[:n] + y[n:], dim=1)
        return y.cpu().numpy().astype(np.float32, copy=False)
