"""dlib's face-recognition ResNet (dlib_face_recognition_resnet_model_v1) in PyTorch.

The architecture of dlib's examples/dnn_face_recognition_ex.cpp, input side first:

- input 150x150 RGB, each channel (pixel - mean) / 256, means R 122.782 G 117.001 B 104.298;
- stem: conv 7x7/2 (32, no padding) -> affine -> relu -> max-pool 3x3/2 (no padding): 32x35x35;
- residual blocks: 3 x [32]; down + 3 x [64]; down + 2 x [128]; down + 2 x [256]; down [256].
  A block is relu(x + affine(conv3x3(relu(affine(conv3x3(x)))))); a down block's first conv
  has stride 2 and no padding (dlib's `con` pads 0 whenever stride != 1) and its shortcut is
  avg-pool 2x2/2. dlib's add tolerates shape mismatch: the sum takes the larger shape and
  missing entries count as zero, aligned at the top-left (`padded_add`). That zero-pads the
  channels (32->64->128->256) and, twice, space (3x3 branch + 4x4 shortcut, 1x1 + 2x2);
- head: global average pool of 256x2x2 -> fully connected without bias (dlib stores W as
  [in, out], y = x @ W); the outputs are the raw descriptor (not normalised).

`affine` layers are batch norm already folded into y = gamma * x + beta.
"""

from __future__ import annotations

import copy

import torch
import torch.nn.functional as F
from torch import nn

from faceidx.errors import DataError

DLIB_MEAN_RGB = (122.782, 117.001, 104.298)
# (filters, down-sampling first block?, number of blocks) per level, input side first.
LEVELS = ((32, False, 3), (64, True, 4), (128, True, 3), (256, True, 3), (256, True, 1))


def padded_add(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """dlib's `add_prev`: a + b over the larger shape, missing entries zero, top-left aligned.

    Both are (N, C, H, W) with the same N. The result keeps the memory format of the
    larger operand (channels-last stays channels-last).
    """
    if a.shape == b.shape:
        return a + b
    if all(x >= y for x, y in zip(b.shape, a.shape, strict=True)):
        a, b = b, a
    if all(x >= y for x, y in zip(a.shape, b.shape, strict=True)):
        out = a.clone()
    else:
        shape = tuple(max(x, y) for x, y in zip(a.shape, b.shape, strict=True))
        fmt = (torch.channels_last if a.is_contiguous(memory_format=torch.channels_last)
               and not a.is_contiguous() else torch.contiguous_format)
        out = a.new_zeros(shape).contiguous(memory_format=fmt)
        out[:, :a.shape[1], :a.shape[2], :a.shape[3]] = a
    out[:, :b.shape[1], :b.shape[2], :b.shape[3]] += b
    return out


class Affine(nn.Module):
    """Per-channel y = gamma * x + beta (dlib's `affine_` in conv mode)."""

    def __init__(self, channels: int):
        super().__init__()
        self.gamma = nn.Parameter(torch.ones(channels))
        self.beta = nn.Parameter(torch.zeros(channels))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.addcmul(self.beta[:, None, None], x, self.gamma[:, None, None])


class ResBlock(nn.Module):
    """relu(shortcut(x) (+) affine(conv(relu(affine(conv(x)))))), (+) = `padded_add`."""

    def __init__(self, cin: int, cout: int, down: bool):
        super().__init__()
        stride = 2 if down else 1
        self.down = down
        self.conv1 = nn.Conv2d(cin, cout, 3, stride=stride, padding=0 if down else 1)
        self.aff1 = Affine(cout)
        self.conv2 = nn.Conv2d(cout, cout, 3, stride=1, padding=1)
        self.aff2 = Affine(cout)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = self.aff2(self.conv2(F.relu(self.aff1(self.conv1(x)))))
        shortcut = F.avg_pool2d(x, 2, 2) if self.down else x
        return F.relu(padded_add(y, shortcut))


class DlibResNet(nn.Module):
    """(N, 3, 150, 150) float RGB in 0..255 -> raw descriptor (N, embedding_dim).

    The input normalisation is inside (a non-persistent buffer, so state dicts hold only
    weights). Returns the raw fc output; faceidx.embedder.registry.FaceModel normalises.
    """

    def __init__(self, embedding_dim: int = 128):
        super().__init__()
        if embedding_dim < 1:
            raise ValueError(f"embedding_dim must be >= 1, got {embedding_dim}")
        self.embedding_dim = embedding_dim
        self.register_buffer("mean", torch.tensor(DLIB_MEAN_RGB).view(1, 3, 1, 1),
                             persistent=False)
        self.conv = nn.Conv2d(3, 32, 7, stride=2, padding=0)
        self.aff = Affine(32)
        blocks, cin = [], 32
        for filters, down, count in LEVELS:
            for i in range(count):
                blocks.append(ResBlock(cin, filters, down=down and i == 0))
                cin = filters
        self.blocks = nn.Sequential(*blocks)
        self.fc = nn.Linear(cin, embedding_dim, bias=False)

    def stem(self, x: torch.Tensor) -> torch.Tensor:
        """Normalised input -> 32x35x35 after conv, affine, relu and max-pool."""
        x = (x - self.mean) / 256.0
        return F.max_pool2d(F.relu(self.aff(self.conv(x))), 3, 2)

    def features(self, x: torch.Tensor) -> torch.Tensor:
        """Input -> the last feature map (N, 256, 2, 2)."""
        return self.blocks(self.stem(x))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc(self.features(x).mean(dim=(2, 3)))

    def inference_copy(self) -> DlibResNet:
        """A copy for inference with each affine folded into the conv before it.

        conv(x) * gamma + beta == conv'(x) with W' = W * gamma and b' = b * gamma + beta,
        so 29 element-wise passes disappear; results agree to float rounding (~1e-6).
        The copy is in eval mode, without gradients, on the same device.
        """
        fused = copy.deepcopy(self).eval().requires_grad_(False)
        pairs = [(fused, "conv", "aff")]
        pairs += [(b, c, a) for b in fused.blocks for c, a in (("conv1", "aff1"), ("conv2", "aff2"))]
        with torch.no_grad():
            for owner, conv_name, aff_name in pairs:
                conv, aff = getattr(owner, conv_name), getattr(owner, aff_name)
                conv.weight.mul_(aff.gamma[:, None, None, None])
                conv.bias.mul_(aff.gamma).add_(aff.beta)
                setattr(owner, aff_name, nn.Identity())
        return fused


def build_dlib_resnet(embedding_dim: int) -> nn.Module:
    """Builder for the registry's ARCHITECTURES table (random weights)."""
    return DlibResNet(embedding_dim)


def dlib_layer_plan(net: DlibResNet) -> list[tuple[str, nn.Module | None, dict]]:
    """The (kind, module, attrs) sequence dlib's file holds for `net`, input side first."""
    plan: list[tuple[str, nn.Module | None, dict]] = [
        ("con", net.conv, {"stride": 2, "padding": 0}),
        ("affine", net.aff, {}),
        ("relu", None, {}),
        ("max_pool", None, {"rows": 3, "cols": 3, "stride_y": 2, "stride_x": 2,
                            "padding_y": 0, "padding_x": 0}),
    ]
    for block in net.blocks:
        stride, padding = (2, 0) if block.down else (1, 1)
        plan += [("con", block.conv1, {"stride": stride, "padding": padding}),
                 ("affine", block.aff1, {}), ("relu", None, {}),
                 ("con", block.conv2, {"stride": 1, "padding": 1}), ("affine", block.aff2, {})]
        if block.down:
            plan.append(("avg_pool", None, {"rows": 2, "cols": 2, "stride_y": 2, "stride_x": 2,
                                            "padding_y": 0, "padding_x": 0}))
        plan += [("add_prev", None, {}), ("relu", None, {})]
    plan += [("avg_pool", None, {"rows": 0, "cols": 0}), ("fc", net.fc, {})]
    return plan


def load_dat_weights(net: DlibResNet, dat) -> DlibResNet:
    """Copy the weights of a parsed dlib file (dlib_dat.DatNetwork) into `net`, in place.

    Walks dlib's layer sequence against the module's and checks every kind, kernel,
    stride, padding and shape; any disagreement is a DataError naming the file.
    """
    plan = dlib_layer_plan(net)
    if len(plan) != len(dat.layers):
        raise DataError(f"the file has {len(dat.layers)} layers, the dlib ResNet "
                        f"{len(plan)}: not the dlib face ResNet", dat.path)
    with torch.no_grad():
        for i, ((kind, module, want), layer) in enumerate(zip(plan, dat.layers, strict=True)):
            where = f"layer {i} ({layer.tag})"
            if layer.kind != kind:
                raise DataError(f"{where}: expected a {kind} layer", dat.path)
            if kind == "con":
                _check_con(module, layer, want, where, dat.path)
                module.weight.copy_(torch.from_numpy(layer.arrays["weight"]))
                module.bias.copy_(torch.from_numpy(layer.arrays["bias"]))
            elif kind == "affine":
                _copy_checked(module.gamma, layer.arrays["gamma"], where, dat.path)
                _copy_checked(module.beta, layer.arrays["beta"], where, dat.path)
            elif kind == "fc":
                if "bias" in layer.arrays:
                    raise DataError(f"{where}: fc layer has a bias, expected none", dat.path)
                _copy_checked(module.weight, layer.arrays["weight"].T, where, dat.path)
            elif kind in ("max_pool", "avg_pool"):
                got = {k: layer.attrs[k] for k in want}
                if got != want:
                    raise DataError(f"{where}: pooling {got}, expected {want}", dat.path)
    return net


def _check_con(module: nn.Conv2d, layer, want: dict, where: str, path: str) -> None:
    a = layer.attrs
    got = {"stride": a["stride_y"], "padding": a["padding_y"]}
    if a["stride_x"] != a["stride_y"] or a["padding_x"] != a["padding_y"] or got != want:
        raise DataError(f"{where}: conv stride/padding {a}, expected {want}", path)
    if tuple(layer.arrays["weight"].shape) != tuple(module.weight.shape):
        raise DataError(f"{where}: conv weight {layer.arrays['weight'].shape}, expected "
                        f"{tuple(module.weight.shape)}", path)


def _copy_checked(param: torch.Tensor, array, where: str, path: str) -> None:
    if tuple(array.shape) != tuple(param.shape):
        raise DataError(f"{where}: shape {tuple(array.shape)}, expected {tuple(param.shape)}",
                        path)
    param.copy_(torch.from_numpy(array.copy()))
