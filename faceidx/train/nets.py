"""The network a run starts from: a registered architecture from scratch, or a pretrained model.

    net, arch = initial_net("scratch", 128, architecture="small-cnn")
    net, arch = initial_net("dlib-resnet-v1", 64)   # pretrained trunk, new 64-D head

The returned network maps float (N, 3, 150, 150) RGB 0..255 to raw embeddings and its
state dict fits `ARCHITECTURES[arch](embedding_dim)`, so export and the registry agree.
"""

from __future__ import annotations

import logging
import math

import torch
from torch import nn

from faceidx.errors import DataError

log = logging.getLogger(__name__)

SCRATCH = "scratch"
# The alignment a from-scratch architecture is trained and embedded with (templates.py).
SCRATCH_TEMPLATES = {"inception-resnet-v1": "facenet-160"}


def template_for(init: str, architecture: str) -> str:
    """The alignment template of a run: the architecture's from scratch, else the start model's card's."""
    from faceidx.embedder.modelcard import DEFAULT_TEMPLATE, card_path, read_card

    if init == SCRATCH:
        return SCRATCH_TEMPLATES.get(architecture, DEFAULT_TEMPLATE)
    card = card_path(init)
    return read_card(card).template if card is not None and card.is_file() else DEFAULT_TEMPLATE


def architecture_of(net: nn.Module, where: str) -> str:
    """The ARCHITECTURES name whose builder makes networks of `net`'s class."""
    from faceidx.embedder.registry import ARCHITECTURES

    for name, builder in ARCHITECTURES.items():
        if type(builder(1)) is type(net):
            return name
    raise DataError(f"network class {type(net).__name__} is not a registered architecture "
                    f"({', '.join(sorted(ARCHITECTURES))}), so it cannot be trained and exported", where)


def seeded_init(net: nn.Module, generator: torch.Generator) -> nn.Module:
    """Re-draw every conv and linear layer's weights and biases from `generator`.

    The same distributions as torch's defaults (kaiming-uniform with a = sqrt(5), bias
    uniform in +-1/sqrt(fan_in)); other parameters (norm layers, dlib's affine layers)
    start at constants already. The caller's generator, not torch's global seed, decides.
    """
    for m in net.modules():
        if isinstance(m, (nn.Conv1d, nn.Conv2d, nn.Conv3d, nn.Linear)):
            nn.init.kaiming_uniform_(m.weight, a=math.sqrt(5), generator=generator)
            if m.bias is not None:
                fan_in = m.weight[0].numel()
                bound = 1 / math.sqrt(fan_in) if fan_in > 0 else 0.0
                nn.init.uniform_(m.bias, -bound, bound, generator=generator)
    return net


def initial_net(init: str, embedding_dim: int, architecture: str = "small-cnn",
                seed: int = 0) -> tuple[nn.Module, str]:
    """(raw network in train mode on the CPU, its architecture name).

    `init` is "scratch" (random weights of `architecture`, seeded) or a registered model
    name / MODEL_DIR whose weights are copied; when `embedding_dim` differs from the
    pretrained one, every layer but the final projection is kept and that one is new.
    """
    from faceidx.embedder.registry import ARCHITECTURES, load_model

    generator = torch.Generator().manual_seed(seed)
    if init == SCRATCH:
        if architecture not in ARCHITECTURES:
            raise DataError(f"unknown architecture {architecture!r} "
                            f"(known: {', '.join(sorted(ARCHITECTURES))})")
        net = seeded_init(ARCHITECTURES[architecture](embedding_dim), generator)
        return net.train(), architecture
    pretrained = load_model(init, device="cpu")
    arch = architecture_of(pretrained.net, init)
    if pretrained.dim == embedding_dim:
        return pretrained.net.train(), arch
    net = seeded_init(ARCHITECTURES[arch](embedding_dim), generator)
    own = net.state_dict()
    kept = {k: v for k, v in pretrained.net.state_dict().items() if k in own and own[k].shape == v.shape}
    fresh = sorted(set(own) - set(kept))
    net.load_state_dict(kept, strict=False)
    log.info("%s: %d-D head replaced by a new %d-D one (new: %s)", init, pretrained.dim,
             embedding_dim, ", ".join(fresh))
    return net.train(), arch
