"""Where the model runs: resolve "auto" | "cpu" | "cuda" once, and run batches well there.

CPU and CUDA: channels-last inputs (and the inference copy of the network, see
registry.FaceModel.runner), measured faster on this CPU too (benchmarks/embed_speed.py).
CPU: torch's intra-op threads set to the cores this process may use (both of a 2-core
box). CUDA: pinned host memory and non-blocking copies, and mixed precision (fp16/bf16
autocast) only when a parity check against fp32 on real inputs keeps every row's
cosine >= 0.9999.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Callable

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from faceidx.errors import FaceidxError

log = logging.getLogger(__name__)

DEVICES = ("auto", "cpu", "cuda")
AUTOCAST_MIN_COSINE = 0.9999
AUTOCAST_CANDIDATES = (torch.float16, torch.bfloat16)  # fp16 keeps 3 more mantissa bits


class DeviceUnavailableError(FaceidxError):
    """The requested device (e.g. cuda) is not present on this machine."""


def resolve_device(spec: str | torch.device = "auto") -> torch.device:
    """"auto" -> cuda when a CUDA GPU is visible, else cpu; "cuda" without one is an error."""
    if isinstance(spec, torch.device):
        spec = str(spec)
    name = spec.split(":", 1)[0]
    if name not in DEVICES:
        raise ValueError(f"unknown device {spec!r}; choose one of {', '.join(DEVICES)}")
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if name == "cuda" and not torch.cuda.is_available():
        raise DeviceUnavailableError("device 'cuda' requested but no CUDA GPU is available "
                                     "to torch here; use --device cpu or auto")
    return torch.device(spec)


def usable_cores() -> int:
    """Cores this process may run on (affinity-aware where the OS tells)."""
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except (AttributeError, OSError):
        return max(1, os.cpu_count() or 1)


def cpu_threads_for(cores: int, reserve: int = 0) -> int:
    """Torch threads for `cores` usable cores when `reserve` of them are kept for other work
    (e.g. decode/detect worker processes): the rest, at least one."""
    return max(1, cores - max(0, reserve))


def configure_cpu_threads(threads: int | None = None, reserve: int = 0) -> int:
    """Set torch's intra-op threads; return the number set.

    Default: the usable cores minus `reserve` (2 on an idle 2-core box; 1 when one core
    is reserved for a detection worker). More threads than free cores hurts a lot with
    OpenMP's default busy-waiting: run with OMP_WAIT_POLICY=PASSIVE (the Makefile sets
    it), measured in benchmarks/embed_speed.py on a loaded 2-core box: 2 threads fell to
    1.4-14 faces/s without it and stayed at ~29 faces/s with it.
    """
    n = threads if threads and threads > 0 else cpu_threads_for(usable_cores(), reserve)
    if torch.get_num_threads() != n:
        torch.set_num_threads(n)
    return n


def prepare_model(model: nn.Module, device: torch.device) -> nn.Module:
    """Move `model` to `device` in eval mode; channels-last weights on CUDA."""
    model = model.to(device).eval()
    if device.type == "cuda":
        model = model.to(memory_format=torch.channels_last)
    return model


def chips_to_tensor(chips: np.ndarray, device: torch.device) -> torch.Tensor:
    """uint8 (N, H, W, 3) RGB chips -> float32 (N, 3, H, W) on `device`, values 0..255.

    On CUDA the uint8 batch (4x smaller than float) goes through pinned memory with a
    non-blocking copy and is converted on the GPU. The result is channels-last.
    """
    if chips.ndim != 4 or chips.shape[3] != 3 or chips.dtype != np.uint8:
        raise ValueError(f"chips must be uint8 (N, H, W, 3), got {chips.dtype} {chips.shape}")
    t = torch.from_numpy(np.ascontiguousarray(chips))
    if device.type == "cuda":
        t = t.pin_memory().to(device, non_blocking=True)
    # NHWC viewed as NCHW is channels-last already; .float() keeps that layout.
    return t.permute(0, 3, 1, 2).float().contiguous(memory_format=torch.channels_last)


def autocast_cosines(net: Callable[[torch.Tensor], torch.Tensor], x: torch.Tensor,
                     dtype: torch.dtype) -> torch.Tensor:
    """Per-row cosine between `net(x)` in fp32 and under autocast(`dtype`) on x's device."""
    with torch.inference_mode():
        ref = net(x).float()
        with torch.autocast(device_type=x.device.type, dtype=dtype):
            low = net(x).float()
    return F.cosine_similarity(ref, low, dim=1)


def choose_autocast(net: Callable[[torch.Tensor], torch.Tensor], x: torch.Tensor,
                    min_cosine: float = AUTOCAST_MIN_COSINE,
                    candidates: tuple[torch.dtype, ...] = AUTOCAST_CANDIDATES,
                    ) -> tuple[torch.dtype | None, dict[str, float]]:
    """The first autocast dtype whose worst-row cosine vs fp32 on `x` is >= `min_cosine`.

    Returns (dtype or None for "stay fp32", {dtype name: measured worst cosine}). Only
    CUDA is considered. On this project's CPU (no AVX-512 BF16) bf16 autocast passes the
    parity check (worst cosine 0.99996 on 16 LFW chips) but costs 84 ms of CPU per face
    against 9.4 ms in fp32, so the CPU stays fp32. `x` should be real chips, not noise.
    """
    measured: dict[str, float] = {}
    if x.device.type != "cuda":
        return None, measured
    for dtype in candidates:
        if dtype == torch.bfloat16 and not torch.cuda.is_bf16_supported():
            continue
        worst = float(autocast_cosines(net, x, dtype).min())
        measured[str(dtype).replace("torch.", "")] = worst
        log.info("autocast %s: worst cosine vs fp32 %.6f on %d chips", dtype, worst, len(x))
        if worst >= min_cosine:
            return dtype, measured
    return None, measured
