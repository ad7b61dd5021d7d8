"""Write a trained model directory (MODEL_DIR) that the embedder registry loads.

MODEL_DIR holds `faceidx-model.json` (a model card, modelcard.py: {"name", "version",
"format": "faceidx", "architecture", "embedding_dim", "template", "input_size", "base"})
and `model.safetensors`, the state dict of
`ARCHITECTURES[architecture](embedding_dim)`. The version is a hash of the weights, so
collections embedded with two different trainings never pass as compatible.
Reading is the registry's job (faceidx.embedder.registry.load_model).
"""

from __future__ import annotations

import os
from pathlib import Path

import torch

from faceidx.embedder.modelcard import DEFAULT_TEMPLATE, TEMPLATE_SIZES
from faceidx.embedder.registry import CONFIG_NAME, WEIGHTS_NAME
from faceidx.io.atomic import atomic_path, sha256_file, write_json_atomic


def export_model(out_dir: str | os.PathLike, net: torch.nn.Module, architecture: str,
                 embedding_dim: int, base: str, name: str | None = None,
                 extra: dict | None = None, template: str = DEFAULT_TEMPLATE) -> dict:
    """Write `net`'s weights and config into `out_dir` atomically; return the config.

    `base` names where training started ("scratch" or a registry spec); `name` defaults
    to "trained-<architecture>"; `extra` adds fields (training summary) to the JSON;
    `template` is the alignment the model was trained on, so `faceidx embed` cuts the same chips.
    """
    from safetensors.torch import save_file

    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    state = {k: v.detach().to("cpu").contiguous() for k, v in net.state_dict().items()}
    weights = out_dir / WEIGHTS_NAME
    with atomic_path(weights) as tmp:
        save_file(state, str(tmp), metadata={"architecture": architecture,
                                             "embedding_dim": str(embedding_dim)})
    config = {
        "name": name or f"trained-{architecture}",
        "version": sha256_file(weights)[:12],
        "architecture": architecture,
        "embedding_dim": int(embedding_dim),
        "format": "faceidx",
        "template": template,
        "input_size": TEMPLATE_SIZES[template],
        "base": base,
    }
    if extra:
        config.update(extra)
    write_json_atomic(out_dir / CONFIG_NAME, config)
    return config


HEAD_NAME = "siamese-head.safetensors"


def export_head(out_dir: str | os.PathLike, head: torch.nn.Module) -> dict:
    """Write a trained Siamese head beside the model; return what the model card records."""
    from safetensors.torch import save_file

    path = Path(out_dir) / HEAD_NAME
    state = {k: v.detach().to("cpu").contiguous() for k, v in head.state_dict().items()}
    with atomic_path(path) as tmp:
        save_file(state, str(tmp), metadata={"distance": head.distance, "dim": str(head.dim)})
    return {"file": HEAD_NAME, "distance": head.distance, "dim": int(head.dim)}


def load_head(model_dir: str | os.PathLike):
    """The Siamese head a MODEL_DIR trained with `--loss siamese` holds (DataError if none)."""
    import json

    from safetensors.torch import load_file

    from faceidx.errors import DataError
    from faceidx.train.heads import SiameseHead

    model_dir = Path(model_dir)
    info = json.loads((model_dir / CONFIG_NAME).read_text()).get("siamese_head")
    if not info:
        raise DataError("this model was not trained with a Siamese head (--loss siamese)", model_dir)
    head = SiameseHead(int(info["dim"]), info["distance"])
    try:
        head.load_state_dict(load_file(str(model_dir / info["file"])))
    except (OSError, RuntimeError) as err:
        raise DataError(f"cannot read the Siamese head: {err}", model_dir / info["file"]) from err
    return head.eval()
