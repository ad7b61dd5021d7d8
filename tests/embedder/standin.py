"""A tiny stand-in FaceModel for pipeline tests (the real ResNet is tested on its own).

Follows the FaceModel contract: float (N, 3, 150, 150) RGB 0..255 in, L2-normalised
(N, dim) out, with .raw(), .name, .version, .dim. Deterministic (seeded weights), and
sensitive to the chip's content and left-right orientation.
"""

from __future__ import annotations

import torch
from torch import nn


class TinyFaceModel(nn.Module):
    def __init__(self, dim: int = 16, seed: int = 0):
        super().__init__()
        self.name, self.version, self.dim = "tiny-standin", "1", dim
        self.pool = nn.AdaptiveAvgPool2d((6, 6))
        self.proj = nn.Linear(3 * 36, dim, bias=False)
        with torch.no_grad():
            self.proj.weight.copy_(torch.randn(dim, 3 * 36, generator=torch.Generator().manual_seed(seed)))

    def raw(self, x: torch.Tensor) -> torch.Tensor:
        return self.proj(self.pool((x - 128.0) / 64.0).flatten(1))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return nn.functional.normalize(self.raw(x), dim=1)
