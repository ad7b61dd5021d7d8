"""A small CNN for training from scratch on small face sets (ORL-sized), fast on a CPU.

Same input contract as the dlib ResNet: float (N, 3, 150, 150) RGB in 0..255. The chip
is shrunk to 64x64 first, then four stride-2 conv blocks and a linear head give the raw
embedding (not normalised; the model wrapper normalises).
"""

from __future__ import annotations

import torch
from torch import nn

SMALL_CNN = "small-cnn"
INPUT_SIZE = 64


def _block(cin: int, cout: int) -> nn.Sequential:
    return nn.Sequential(
        nn.Conv2d(cin, cout, 3, stride=2, padding=1, bias=False),
        nn.BatchNorm2d(cout),
        nn.ReLU(inplace=True),
        nn.Conv2d(cout, cout, 3, padding=1, bias=False),
        nn.BatchNorm2d(cout),
        nn.ReLU(inplace=True),
    )


class SmallCNN(nn.Module):
    """(N, 3, 150, 150) 0..255 -> raw (N, embedding_dim)."""

    def __init__(self, embedding_dim: int = 128, width: int = 16):
        super().__init__()
        if embedding_dim < 1:
            raise ValueError(f"embedding_dim must be >= 1, got {embedding_dim}")
        self.embedding_dim = embedding_dim
        w = width
        self.features = nn.Sequential(_block(3, w), _block(w, 2 * w), _block(2 * w, 4 * w),
                                      _block(4 * w, 8 * w))
        self.head = nn.Linear(8 * w, embedding_dim)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = torch.nn.functional.interpolate(x, size=(INPUT_SIZE, INPUT_SIZE), mode="bilinear",
                                            align_corners=False, antialias=True)
        x = x / 127.5 - 1.0
        x = self.features(x)
        return self.head(x.mean(dim=(2, 3)))


def build_small_cnn(embedding_dim: int) -> nn.Module:
    """Builder for the registry's ARCHITECTURES table."""
    return SmallCNN(embedding_dim)
