"""Model registry: a name, a model card or a MODEL_DIR -> FaceModel.

`load_model(spec, device)` accepts a registered pretrained name (`dlib-resnet-v1`), a
dlib face ResNet `.dat` file given by path, or a model with a card (modelcard.py): a
folder holding `faceidx-model.json`, the card file itself, or a model file with its card
beside it (`model.onnx` + `model.onnx.json`). Card formats: `faceidx` (a trained
MODEL_DIR: the state dict of `ARCHITECTURES[architecture](embedding_dim)` in
`model.safetensors`), `dlib-dat`, `onnx` and `torchscript` (runtimes.py). Nothing is
loaded at import time and nothing is cached between calls: each call builds its model.

A FaceModel takes float (N, 3, S, S) RGB in 0..255 (S = its card's input_size, 150 for
dlib's template) and returns L2-normalised (N, D); `.raw(x)` is the un-normalised
descriptor (for parity with dlib), `.net` the network, `.card` its ModelCard.
"""

from __future__ import annotations

import importlib
import itertools
import logging
import os
from collections.abc import Callable
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from faceidx.embedder.align import CHIP_SIZE as INPUT_SIZE
from faceidx.embedder.device import (
    chips_to_tensor,
    choose_autocast,
    prepare_model,
    resolve_device,
)
from faceidx.embedder.modelcard import CARD_NAME, ModelCard, card_path, read_card
from faceidx.errors import DataError

log = logging.getLogger(__name__)

CONFIG_NAME = CARD_NAME
WEIGHTS_NAME = "model.safetensors"
DLIB_RESNET_V1 = "dlib-resnet-v1"


def _lazy(module: str, attr: str) -> Callable[[int], nn.Module]:
    """A builder that imports its module only when called."""

    def build(embedding_dim: int) -> nn.Module:
        return getattr(importlib.import_module(module), attr)(embedding_dim)

    build.__name__ = f"{module}.{attr}"
    return build


# Architecture name -> builder(embedding_dim) returning the raw (un-normalised) network.
ARCHITECTURES: dict[str, Callable[[int], nn.Module]] = {
    "dlib-resnet": _lazy("faceidx.embedder.resnet", "build_dlib_resnet"),
    "small-cnn": _lazy("faceidx.embedder.nets_small", "build_small_cnn"),
    "inception-resnet-v1": _lazy("faceidx.embedder.inception_resnet", "build_inception_resnet_v1"),
}


def _load_dlib_resnet_v1() -> tuple[nn.Module, str]:
    from faceidx.embedder.weights import load_dlib_resnet

    return load_dlib_resnet(), "1"


# Registered pretrained name -> loader returning (raw network, version).
PRETRAINED: dict[str, Callable[[], tuple[nn.Module, str]]] = {
    DLIB_RESNET_V1: _load_dlib_resnet_v1,
}


def register(name: str, builder: Callable[[int], nn.Module], replace: bool = False) -> None:
    """Add an architecture builder (embedding_dim -> raw nn.Module) under `name`."""
    if name in ARCHITECTURES and not replace:
        raise ValueError(f"architecture {name!r} is already registered")
    ARCHITECTURES[name] = builder


def available_models() -> list[str]:
    """The registered pretrained model names."""
    return sorted(PRETRAINED)


class FaceModel(nn.Module):
    """A face embedding network with its identity (name, version, dim).

    forward(x) -> L2-normalised (N, dim) float32; raw(x) -> the network's own output.
    `autocast_dtype` (CUDA only) is set by `enable_autocast` after a parity check.
    """

    def __init__(self, net: nn.Module, name: str, version: str, dim: int,
                 card: ModelCard | None = None):
        super().__init__()
        self.net = net
        self.name = name
        self.version = str(version)
        self.dim = int(dim)
        self.card = card or ModelCard(name=name, version=str(version), format="faceidx",
                                      embedding_dim=int(dim))
        self.autocast_dtype: torch.dtype | None = None
        self._fast: tuple | None = None  # (weights key, inference copy); not a submodule

    @property
    def device(self) -> torch.device:
        for t in itertools.chain(self.net.parameters(), self.net.buffers()):
            return t.device
        return torch.device("cpu")

    @property
    def template(self) -> str:
        """The alignment template its chips must follow (modelcard.TEMPLATE_SIZES)."""
        return self.card.template

    @property
    def input_size(self) -> int:
        return self.card.input_size

    def runner(self) -> nn.Module:
        """The module that computes `raw`: `.net` itself, or for inference its fast copy.

        When `.net` is in eval mode, gradients are off and the net offers
        `inference_copy()` (the dlib ResNet folds its affine layers into the convs), that
        copy runs instead, channels-last. It is rebuilt whenever `.net`'s weights change
        (in-place updates, load_state_dict, a move to another device), so training `.net`
        and then embedding never uses stale weights.
        """
        net = self.net
        if net.training or torch.is_grad_enabled() or not hasattr(net, "inference_copy"):
            return net
        key = tuple((p.data_ptr(), p._version) for p in net.parameters())
        cached = self._fast
        if cached is None or cached[0] != key:
            fast = net.inference_copy().to(memory_format=torch.channels_last)
            self._fast = cached = (key, fast)
        return cached[1]

    def raw(self, x: torch.Tensor) -> torch.Tensor:
        run = self.runner()
        if self.autocast_dtype is not None and x.device.type == "cuda":
            with torch.autocast(device_type="cuda", dtype=self.autocast_dtype):
                return run(x).float()
        return run(x)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.normalize(self.raw(x), dim=1)

    def enable_autocast(self, sample_chips: np.ndarray) -> dict[str, float]:
        """On CUDA, switch to fp16/bf16 autocast if its parity with fp32 on these chips holds.

        Returns the measured worst cosine per dtype tried (empty on the CPU).
        """
        x = chips_to_tensor(sample_chips, self.device)
        self.autocast_dtype = None  # so self.raw is plain fp32 outside the autocast context
        dtype, measured = choose_autocast(self.raw, x)
        self.autocast_dtype = dtype
        return measured

    def embed_chips(self, chips: np.ndarray, batch_size: int = 64, raw: bool = False
                    ) -> np.ndarray:
        """uint8 (N, S, S, 3) RGB chips (S = input_size) -> float32 (N, dim), normalised unless `raw`."""
        if batch_size < 1:
            raise ValueError(f"batch_size must be >= 1, got {batch_size}")
        out = np.empty((len(chips), self.dim), dtype=np.float32)
        device = self.device
        with torch.inference_mode():
            for start in range(0, len(chips), batch_size):
                x = chips_to_tensor(chips[start:start + batch_size], device)
                y = self.raw(x) if raw else self(x)
                out[start:start + len(x)] = y.float().cpu().numpy()
        return out

    def extra_repr(self) -> str:
        return f"name={self.name!r}, version={self.version!r}, dim={self.dim}"


def load_model(spec: str | os.PathLike, device: str | torch.device = "cpu") -> FaceModel:
    """A registered name, a .dat file, a model card or a MODEL_DIR -> FaceModel on `device`.

    Unknown names, a card that is missing, malformed or disagrees with its network
    (input size, embedding dimension), an unknown architecture or weights that do not
    fit it raise DataError naming the file or folder.
    """
    dev = resolve_device(device)
    key = os.fspath(spec)
    card_file = None if key in PRETRAINED else card_path(key)
    if key in PRETRAINED:
        net, version = PRETRAINED[key]()
        dim = _output_dim(net, key)
        card = ModelCard(name=key, version=version, format="dlib-dat", embedding_dim=dim)
        model = FaceModel(net, key, version, dim, card)
    elif card_file is not None:
        model = _load_card(read_card(card_file), dev, str(device))
    elif key.endswith(".dat"):
        model = _load_dlib_file(Path(key))
    elif Path(key).suffix.lower() in (".onnx", ".pt", ".pth", ".ts"):
        raise DataError(f"a model file needs its card beside it ({Path(key).name}.json: name, "
                        "version, format, embedding_dim, template; see docs/INTEROP.md)", key)
    else:
        raise DataError(f"unknown model: not a registered name ({', '.join(available_models())}),"
                        " a model directory, a model card nor a dlib .dat file", key)
    model.net = prepare_model(model.net, dev)
    return model.eval()


def _load_card(card: ModelCard, device: torch.device, requested: str) -> FaceModel:
    """The network a card describes, by its format."""
    if card.format == "faceidx":
        net = _load_state_dict_net(card)
    elif card.format == "dlib-dat":
        from faceidx.embedder.weights import load_dlib_resnet

        if card.input_size != INPUT_SIZE or card.embedding_dim != 128:
            raise DataError("a dlib face ResNet takes 150x150 chips and gives 128-D vectors",
                            card.folder / CARD_NAME)
        net = load_dlib_resnet(card.weights)
    elif card.format == "onnx":
        from faceidx.embedder.runtimes import load_onnx

        net = load_onnx(card, device, requested)
    else:
        from faceidx.embedder.runtimes import load_torchscript

        net = load_torchscript(card, device)
    return FaceModel(net, card.name, card.version, card.embedding_dim, card)


def _load_dlib_file(path: Path) -> FaceModel:
    """A dlib face ResNet .dat file given by path; its version is the file's hash."""
    from faceidx.embedder.weights import load_dlib_resnet
    from faceidx.io.atomic import sha256_file

    net = load_dlib_resnet(path)  # DataError naming the file when missing or damaged
    name, version = f"dlib-resnet-file:{path.stem}", sha256_file(path)[:12]
    card = ModelCard(name=name, version=version, format="dlib-dat", embedding_dim=128,
                     file=path.name, folder=path.parent)
    return FaceModel(net, name, version, 128, card)


def _output_dim(net: nn.Module, where: str) -> int:
    dim = getattr(net, "embedding_dim", None)
    if not isinstance(dim, int):
        raise DataError("network does not declare its embedding_dim", where)
    return dim


def read_model_config(model_dir: Path) -> dict:
    """faceidx-model.json of a MODEL_DIR as JSON, checked; DataError naming the file otherwise."""
    return read_card(Path(model_dir) / CARD_NAME).to_json()


def _load_state_dict_net(card: ModelCard) -> nn.Module:
    """A `faceidx` card: ARCHITECTURES[architecture](embedding_dim) with its safetensors."""
    model_dir = card.folder
    arch = card.architecture
    builder = ARCHITECTURES.get(arch)
    if builder is None:
        raise DataError(f"unknown architecture {arch!r} (known: {', '.join(sorted(ARCHITECTURES))})",
                        model_dir)
    net = builder(card.embedding_dim)
    weights = card.weights
    try:
        from safetensors.torch import load_file

        state = load_file(str(weights))
    except FileNotFoundError as err:
        raise DataError(f"model weights {weights.name} missing", model_dir) from err
    except Exception as err:  # safetensors raises its own error types on damaged files
        raise DataError(f"cannot read model weights: {err}", weights) from err
    try:
        net.load_state_dict(state, strict=True)
    except RuntimeError as err:
        first = str(err).strip().splitlines()
        raise DataError(f"weights do not fit architecture {arch!r} "
                        f"(dim {card.embedding_dim}): {' '.join(first[:3])}",
                        model_dir) from err
    return net
