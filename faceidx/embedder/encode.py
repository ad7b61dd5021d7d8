"""Turn batches of aligned chips into L2-normalised embeddings with a FaceModel.

    enc = Encoder(load_model("dlib-resnet-v1"), device="cpu", tta="flip")
    vectors = enc(chips)            # chips uint8 (n, 150, 150, 3) -> float32 (n, D)

TTA: ``none`` embeds the chip; ``flip`` embeds the chip and its left-right mirror in the
same forward pass, averages the two normalised vectors and normalises again (a cheap,
deterministic stand-in for dlib's random jitter).

On CUDA the batch is copied from pinned memory without blocking, in channels-last
layout. The model runs in float32.
"""

from __future__ import annotations

import numpy as np

TTA_MODES = ("none", "flip")


def resolve_device(device: str = "auto") -> str:
    """"auto" -> "cuda" when a CUDA GPU is visible, else "cpu"; others unchanged."""
    if device != "auto":
        return device
    import torch

    return "cuda" if torch.cuda.is_available() else "cpu"


class Encoder:
    """Chips in, normalised float32 vectors out. `model` follows the FaceModel contract."""

    def __init__(self, model, device: str = "cpu", tta: str = "none"):
        import torch

        if tta not in TTA_MODES:
            raise ValueError(f"tta must be one of {TTA_MODES}, got {tta!r}")
        self.device = torch.device(resolve_device(device))
        self.tta = tta
        self.model = model.to(self.device).eval()
        if self.device.type == "cuda":
            self.model = self.model.to(memory_format=torch.channels_last)
        self.dim = int(model.dim)

    def __call__(self, chips: np.ndarray) -> np.ndarray:
        """uint8 (n, H, W, 3) RGB chips -> float32 (n, D), rows of unit norm."""
        import torch

        chips = np.asarray(chips)
        if chips.ndim != 4 or chips.shape[3] != 3:
            raise ValueError(f"expected chips of shape (n, H, W, 3), got {chips.shape}")
        n = chips.shape[0]
        if n == 0:
            return np.empty((0, self.dim), np.float32)
        x = torch.from_numpy(np.ascontiguousarray(chips))
        if self.device.type == "cuda":
            x = x.pin_memory().to(self.device, non_blocking=True)
        x = x.permute(0, 3, 1, 2).float()
        if self.device.type == "cuda":
            x = x.contiguous(memory_format=torch.channels_last)
        if self.tta == "flip":
            x = torch.cat([x, x.flip(3)])
        with torch.inference_mode():
            y = self.model(x).float()
            if self.tta == "flip":
                y = torch.nn.functional.normalize(y[:n] + y[n:], dim=1)
        return y.cpu().numpy().astype(np.float32, copy=False)
