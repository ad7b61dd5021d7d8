"""FaceNet's Inception-ResNet-v1 backbone (Schroff et al. 2015; Szegedy et al. 2016).

    net = InceptionResNetV1(embedding_dim=128)
    y = net(x)          # x float (N, 3, H, W) RGB 0..255 -> (N, 128), rows of unit norm

The network works on 160x160 RGB crops; chips of another size are resized to 160x160
(bilinear) first, so a MODEL_DIR trained on the pipeline's chips embeds them the same way
at `faceidx embed` time. Pixels are standardised as FaceNet does, (x - 127.5) / 128.

    stem (3x3/2 32, 3x3 32, 3x3 64, maxpool/2, 1x1 80, 3x3 192, 3x3/2 256)   160 -> 17x17x256
    5 x block35 (scale 0.17) -> reduction A                                  -> 8x8x896
    10 x block17 (scale 0.10) -> reduction B                                 -> 3x3x1792
    5 x block8 (scale 0.20) + block8 without ReLU -> global average pool     -> 1792
    linear 1792 -> embedding_dim (no bias) + batch norm -> L2 normalisation

No auxiliary classifier, and no dropout before the bottleneck (FaceNet used it for
softmax pre-training; it would draw from torch's global RNG and break seeded runs).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

INCEPTION_RESNET_V1 = "inception-resnet-v1"
INPUT_SIZE = 160
BN_EPS = 1e-3


class ConvBN(nn.Module):
    """Conv (no bias) + batch norm + ReLU."""

    def __init__(self, cin: int, cout: int, kernel, stride: int = 1, padding=0):
        super().__init__()
        self.conv = nn.Conv2d(cin, cout, kernel, stride=stride, padding=padding, bias=False)
        self.bn = nn.BatchNorm2d(cout, eps=BN_EPS)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.relu(self.bn(self.conv(x)))


class Block35(nn.Module):
    """Inception-ResNet-A on 35x35 grids (17x17 at 160 input), 256 channels."""

    def __init__(self, scale: float = 0.17):
        super().__init__()
        self.scale = scale
        self.branch0 = ConvBN(256, 32, 1)
        self.branch1 = nn.Sequential(ConvBN(256, 32, 1), ConvBN(32, 32, 3, padding=1))
        self.branch2 = nn.Sequential(ConvBN(256, 32, 1), ConvBN(32, 32, 3, padding=1),
                                     ConvBN(32, 32, 3, padding=1))
        self.up = nn.Conv2d(96, 256, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = torch.cat([self.branch0(x), self.branch1(x), self.branch2(x)], 1)
        return F.relu(x + self.scale * self.up(out))


class Block17(nn.Module):
    """Inception-ResNet-B, 896 channels, factorised 1x7 / 7x1 convolutions."""

    def __init__(self, scale: float = 0.10):
        super().__init__()
        self.scale = scale
        self.branch0 = ConvBN(896, 128, 1)
        self.branch1 = nn.Sequential(ConvBN(896, 128, 1), ConvBN(128, 128, (1, 7), padding=(0, 3)),
                                     ConvBN(128, 128, (7, 1), padding=(3, 0)))
        self.up = nn.Conv2d(256, 896, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = torch.cat([self.branch0(x), self.branch1(x)], 1)
        return F.relu(x + self.scale * self.up(out))


class Block8(nn.Module):
    """Inception-ResNet-C, 1792 channels, factorised 1x3 / 3x1 convolutions."""

    def __init__(self, scale: float = 0.20, relu: bool = True):
        super().__init__()
        self.scale, self.relu = scale, relu
        self.branch0 = ConvBN(1792, 192, 1)
        self.branch1 = nn.Sequential(ConvBN(1792, 192, 1), ConvBN(192, 192, (1, 3), padding=(0, 1)),
                                     ConvBN(192, 192, (3, 1), padding=(1, 0)))
        self.up = nn.Conv2d(384, 1792, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = x + self.scale * self.up(torch.cat([self.branch0(x), self.branch1(x)], 1))
        return F.relu(out) if self.relu else out


class ReductionA(nn.Module):
    """256 -> 896 channels, grid halved (17 -> 8)."""

    def __init__(self):
        super().__init__()
        self.branch0 = ConvBN(256, 384, 3, stride=2)
        self.branch1 = nn.Sequential(ConvBN(256, 192, 1), ConvBN(192, 192, 3, padding=1),
                                     ConvBN(192, 256, 3, stride=2))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.cat([self.branch0(x), self.branch1(x), F.max_pool2d(x, 3, stride=2)], 1)


class ReductionB(nn.Module):
    """896 -> 1792 channels, grid halved (8 -> 3)."""

    def __init__(self):
        super().__init__()
        self.branch0 = nn.Sequential(ConvBN(896, 256, 1), ConvBN(256, 384, 3, stride=2))
        self.branch1 = nn.Sequential(ConvBN(896, 256, 1), ConvBN(256, 256, 3, stride=2))
        self.branch2 = nn.Sequential(ConvBN(896, 256, 1), ConvBN(256, 256, 3, padding=1),
                                     ConvBN(256, 256, 3, stride=2))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.cat([self.branch0(x), self.branch1(x), self.branch2(x),
                          F.max_pool2d(x, 3, stride=2)], 1)


class InceptionResNetV1(nn.Module):
    """(N, 3, H, W) RGB 0..255 -> (N, embedding_dim) L2-normalised embeddings."""

    def __init__(self, embedding_dim: int = 128, repeats: tuple[int, int, int] = (5, 10, 5)):
        super().__init__()
        if embedding_dim < 1:
            raise ValueError(f"embedding_dim must be >= 1, got {embedding_dim}")
        self.embedding_dim = embedding_dim
        self.network_input_size = INPUT_SIZE
        self.stem = nn.Sequential(
            ConvBN(3, 32, 3, stride=2), ConvBN(32, 32, 3), ConvBN(32, 64, 3, padding=1),
            nn.MaxPool2d(3, stride=2), ConvBN(64, 80, 1), ConvBN(80, 192, 3),
            ConvBN(192, 256, 3, stride=2))
        self.block35 = nn.Sequential(*[Block35() for _ in range(repeats[0])])
        self.reduction_a = ReductionA()
        self.block17 = nn.Sequential(*[Block17() for _ in range(repeats[1])])
        self.reduction_b = ReductionB()
        self.block8 = nn.Sequential(*[Block8() for _ in range(repeats[2])], Block8(scale=1.0, relu=False))
        self.bottleneck = nn.Linear(1792, embedding_dim, bias=False)
        self.bottleneck_bn = nn.BatchNorm1d(embedding_dim, eps=BN_EPS)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if x.shape[-2:] != (INPUT_SIZE, INPUT_SIZE):
            x = F.interpolate(x, size=(INPUT_SIZE, INPUT_SIZE), mode="bilinear", align_corners=False)
        x = (x - 127.5) / 128.0
        x = self.block8(self.reduction_b(self.block17(self.reduction_a(self.block35(self.stem(x))))))
        x = self.bottleneck_bn(self.bottleneck(x.mean(dim=(2, 3))))
        return F.normalize(x, dim=1)


def build_inception_resnet_v1(embedding_dim: int) -> nn.Module:
    """Builder for the registry's ARCHITECTURES table."""
    return InceptionResNetV1(embedding_dim)
