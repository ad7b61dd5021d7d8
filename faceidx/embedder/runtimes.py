"""Running models faceidx did not build: ONNX (onnxruntime) and TorchScript (torch.jit).

    net = load_runtime_net(card, device)       # nn.Module: float (N,3,S,S) RGB 0..255 -> raw (N, D)

The returned module puts the card's preprocessing (channel order, (x - mean) / std) in
front of the network, so every model meets the FaceModel contract of the registry.

ONNX runs on onnxruntime: the CUDA provider when the device is CUDA, the CPU provider
otherwise. The provider a session really uses is logged; asking for CUDA where
onnxruntime has no CUDA provider is an error (pip install onnxruntime-gpu), never a
quiet run on the CPU. "auto" picks CUDA only when both torch and onnxruntime see it,
and says which it picked.

At load, one zero chip goes through the network: an input size or embedding dimension
that disagrees with the card is a DataError naming the weights file.
"""

from __future__ import annotations

import logging

import numpy as np
import torch
from torch import nn

from faceidx.embedder.device import DeviceUnavailableError
from faceidx.embedder.modelcard import ModelCard
from faceidx.errors import DataError

log = logging.getLogger(__name__)

CUDA_PROVIDER = "CUDAExecutionProvider"
CPU_PROVIDER = "CPUExecutionProvider"


class Preprocess(nn.Module):
    """float (N, 3, H, W) RGB 0..255 -> the card's channel order, (x - mean) / std."""

    def __init__(self, card: ModelCard):
        super().__init__()
        self.bgr = card.channel_order == "BGR"
        self.register_buffer("mean", torch.tensor(card.mean).view(1, 3, 1, 1), persistent=False)
        self.register_buffer("inv_std", 1.0 / torch.tensor(card.std).view(1, 3, 1, 1),
                             persistent=False)
        self.identity = card.mean == (0.0, 0.0, 0.0) and card.std == (1.0, 1.0, 1.0)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.bgr:
            x = x.flip(1)
        if self.identity:
            return x
        return (x - self.mean) * self.inv_std


class OnnxNet(nn.Module):
    """An onnxruntime session as a module: float tensor in, float tensor out (same device)."""

    def __init__(self, session, path: str):
        super().__init__()
        self.session = session
        self.path = path
        inp = session.get_inputs()[0]
        self.input_name = inp.name
        self.input_shape = list(inp.shape)
        self.output_name = session.get_outputs()[0].name
        self.providers = session.get_providers()
        # Some exports fix the batch at 1: feed them one chip at a time.
        self.batch_one = self.input_shape[:1] == [1]

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        arr = x.detach().float().cpu().contiguous().numpy()
        if self.batch_one:
            out = np.concatenate([self._run(arr[i:i + 1]) for i in range(len(arr))]) \
                if len(arr) else np.empty((0, 0), np.float32)
        else:
            out = self._run(arr)
        return torch.from_numpy(np.ascontiguousarray(out, dtype=np.float32)).to(x.device)

    def _run(self, arr: np.ndarray) -> np.ndarray:
        return self.session.run([self.output_name], {self.input_name: arr})[0]


def onnx_providers(device: torch.device, requested: str) -> list[str]:
    """Providers for a session on `device`; CUDA without onnxruntime's CUDA provider fails.

    `requested` is the user's device string: an explicit "cuda" must get CUDA, "auto"
    that torch resolved to CUDA falls back to the CPU provider with a warning.
    """
    import onnxruntime as ort

    available = ort.get_available_providers()
    if device.type != "cuda":
        return [CPU_PROVIDER]
    if CUDA_PROVIDER in available:
        return [CUDA_PROVIDER, CPU_PROVIDER]
    if str(requested).startswith("auto"):
        log.warning("device auto: torch sees a GPU but this onnxruntime has no CUDA provider "
                    "(providers: %s); the ONNX model runs on the CPU. pip install "
                    "onnxruntime-gpu to run it on the GPU", ", ".join(available))
        return [CPU_PROVIDER]
    raise DeviceUnavailableError(
        f"device {requested!r} asked for, but this onnxruntime has no CUDA provider "
        f"(providers: {', '.join(available)}); pip install onnxruntime-gpu, or use --device cpu")


def load_onnx(card: ModelCard, device: torch.device, requested: str = "cpu",
              threads: int | None = None) -> nn.Module:
    """Preprocess + an onnxruntime session of `card.weights`, checked against the card.

    `threads`: onnxruntime's intra-op threads (default: its own choice, the physical cores).
    """
    try:
        import onnxruntime as ort
    except ImportError as err:
        raise DataError("ONNX models need onnxruntime: pip install 'faceidx[onnx]'",
                        card.weights) from err
    path = card.weights
    if not path.is_file():
        raise DataError("model file not found", path)
    providers = onnx_providers(device, requested)
    options = ort.SessionOptions()
    options.log_severity_level = 3
    if threads:
        options.intra_op_num_threads = threads
    try:
        session = ort.InferenceSession(str(path), sess_options=options, providers=providers)
    except Exception as err:  # onnxruntime raises its own error types for bad graphs
        raise DataError(f"cannot load ONNX model: {str(err).splitlines()[0]}", path) from err
    used = session.get_providers()
    if device.type == "cuda" and CUDA_PROVIDER in providers and used[0] != CUDA_PROVIDER:
        raise DeviceUnavailableError(f"onnxruntime did not start its CUDA provider for {path} "
                                     f"(session providers: {', '.join(used)})")
    log.info("ONNX model %s runs on onnxruntime %s with %s", path, ort.__version__, used[0])
    onnx_net = OnnxNet(session, str(path))
    _check_input_shape(onnx_net.input_shape, card, path)
    net = nn.Sequential(Preprocess(card), onnx_net)
    check_output(net, card, path)
    return net


def load_torchscript(card: ModelCard, device: torch.device) -> nn.Module:
    """Preprocess + a TorchScript module from `card.weights`, checked against the card."""
    path = card.weights
    if not path.is_file():
        raise DataError("model file not found", path)
    try:
        scripted = torch.jit.load(str(path), map_location=device)
    except Exception as err:  # torch.jit raises RuntimeError or its own types on bad files
        raise DataError(f"cannot load TorchScript model: {str(err).splitlines()[0]}",
                        path) from err
    net = nn.Sequential(Preprocess(card), scripted).to(device).eval()
    check_output(net, card, path)
    return net


def _check_input_shape(shape: list, card: ModelCard, path) -> None:
    """A static ONNX input shape must be (N, 3, S, S) with S the card's input_size."""
    if len(shape) != 4:
        raise DataError(f"model input has {len(shape)} dimensions, expected N x 3 x H x W", path)
    fixed = [d if isinstance(d, int) else None for d in shape[1:]]
    want = [3, card.input_size, card.input_size]
    if any(f is not None and f != w for f, w in zip(fixed, want, strict=True)):
        got = "x".join("?" if f is None else str(f) for f in fixed)
        raise DataError(f"model input is {got} but the card says 3x{card.input_size}x"
                        f"{card.input_size} (input_size {card.input_size})", path)


def check_output(net: nn.Module, card: ModelCard, path) -> None:
    """Run one mid-grey chip: the output must be (1, embedding_dim) and finite."""
    device = next(iter(net.buffers())).device
    x = torch.full((1, 3, card.input_size, card.input_size), 128.0, device=device)
    try:
        with torch.inference_mode():
            y = net(x)
    except Exception as err:  # a runtime's own error on an input it does not accept
        raise DataError(f"model does not accept a 3x{card.input_size}x{card.input_size} chip "
                        f"(card input_size {card.input_size}): {str(err).splitlines()[0]}",
                        path) from err
    if y.ndim != 2 or y.shape[1] != card.embedding_dim:
        raise DataError(f"model outputs shape {tuple(y.shape)} but the card says "
                        f"embedding_dim {card.embedding_dim}", path)
    if not torch.isfinite(y).all():
        raise DataError("model outputs non-finite values on a plain grey chip", path)
