"""Model cards: what a face model is, in one JSON file beside its weights.

A card says everything faceidx needs to run a model it did not train:

    {"name": "arcface-r100", "version": "2024.1", "format": "onnx", "file": "model.onnx",
     "embedding_dim": 512, "input_size": 112, "template": "arcface-112",
     "channel_order": "RGB", "mean": [127.5, 127.5, 127.5], "std": [128.0, 128.0, 128.0]}

| field | meaning |
| --- | --- |
| name, version | the model's identity: vectors of two cards mix only when both agree (and D) |
| format | `onnx` (onnxruntime), `torchscript` (torch.jit), `dlib-dat` (dlib's face ResNet file), `faceidx` (a trained MODEL_DIR: `architecture` + model.safetensors) |
| file | the weights, relative to the card's folder (default per format) |
| embedding_dim | D, checked against the network's output when it loads |
| input_size | the chip side in pixels; must be the template's |
| template | how faces are aligned: `dlib-150`, `arcface-112`, `facenet-160` (templates.py) |
| channel_order | `RGB` or `BGR`: the order the network expects |
| mean, std | per channel (in channel_order), applied to 0..255 pixels: (x - mean) / std |

A MODEL_DIR written before cards existed (no `format`) reads as a `faceidx` card with
the dlib template, RGB, mean 0, std 1 (its normalisation is inside the network).
Every problem is a DataError naming the card file.
"""

from __future__ import annotations

import dataclasses
import json
import os
from dataclasses import dataclass
from pathlib import Path

from faceidx.embedder.templates import TEMPLATES
from faceidx.errors import DataError
from faceidx.io.atomic import write_json_atomic

CARD_NAME = "faceidx-model.json"
FORMATS = ("faceidx", "onnx", "torchscript", "dlib-dat")
DEFAULT_FILES = {"faceidx": "model.safetensors", "onnx": "model.onnx",
                 "torchscript": "model.pt", "dlib-dat": "model.dat"}
TEMPLATE_SIZES = {name: t.size for name, t in TEMPLATES.items()}  # name -> chip side
DEFAULT_TEMPLATE = "dlib-150"
REQUIRED = ("name", "version", "embedding_dim")


@dataclass(frozen=True)
class ModelCard:
    """A validated card. `folder` is where relative `file` paths start (not serialised)."""

    name: str
    version: str
    format: str
    embedding_dim: int
    file: str = ""
    input_size: int = 150
    template: str = DEFAULT_TEMPLATE
    channel_order: str = "RGB"
    mean: tuple[float, float, float] = (0.0, 0.0, 0.0)
    std: tuple[float, float, float] = (1.0, 1.0, 1.0)
    architecture: str | None = None
    base: str | None = None
    extra: dict = dataclasses.field(default_factory=dict, compare=False)
    folder: Path = dataclasses.field(default=Path("."), compare=False)

    @property
    def weights(self) -> Path:
        return self.folder / (self.file or DEFAULT_FILES[self.format])

    @property
    def identity(self) -> tuple[str, str, int]:
        """(name, version, D): what an index compares against its probes."""
        return self.name, self.version, self.embedding_dim

    def to_json(self) -> dict:
        out = {"name": self.name, "version": self.version, "format": self.format,
               "file": self.file or DEFAULT_FILES[self.format],
               "embedding_dim": self.embedding_dim, "input_size": self.input_size,
               "template": self.template, "channel_order": self.channel_order,
               "mean": list(self.mean), "std": list(self.std)}
        if self.architecture is not None:
            out["architecture"] = self.architecture
        if self.base is not None:
            out["base"] = self.base
        out.update({k: v for k, v in self.extra.items() if k not in out})
        return out

    def save(self, folder: str | os.PathLike) -> Path:
        """Write the card as `folder`/faceidx-model.json (atomically); return its path."""
        path = Path(folder) / CARD_NAME
        write_json_atomic(path, self.to_json())
        return path


def card_path(spec: str | os.PathLike) -> Path | None:
    """Where the card of `spec` is, or None when `spec` has none.

    A folder holds faceidx-model.json; a `.json` file is a card; a model file
    (model.onnx) may have its card beside it as `model.onnx.json`.
    """
    p = Path(spec)
    if p.is_dir():
        return p / CARD_NAME
    if p.suffix.lower() == ".json":
        return p
    side = p.with_name(p.name + ".json")
    return side if side.is_file() else None


def read_card(path: str | os.PathLike) -> ModelCard:
    """The card at `path`, validated; DataError naming the file for any problem."""
    path = Path(path)
    try:
        raw = json.loads(path.read_text())
    except FileNotFoundError as err:
        where = path.parent if path.name == CARD_NAME else path
        raise DataError(f"not a model directory (no {CARD_NAME})" if path.name == CARD_NAME
                        else "model card not found", where) from err
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as err:
        raise DataError(f"malformed model config: {err}", path) from err
    if not isinstance(raw, dict):
        raise DataError("model config is not a JSON object", path)
    return parse_card(raw, path)


def parse_card(raw: dict, path: str | os.PathLike) -> ModelCard:
    """Validate a card's JSON object; `path` names it in errors and anchors `file`."""
    path = Path(path)
    for key in REQUIRED:
        if key not in raw:
            raise DataError(f"model config lacks {key!r}", path)
    fmt = raw.get("format", "faceidx")
    if fmt not in FORMATS:
        raise DataError(f"unknown model format {fmt!r} (known: {', '.join(FORMATS)})", path)
    if fmt == "faceidx" and "architecture" not in raw:
        raise DataError("model config lacks 'architecture'", path)
    dim = raw["embedding_dim"]
    if not _positive_int(dim):
        raise DataError(f"embedding_dim must be a positive integer, got {dim!r}", path)
    template = raw.get("template", DEFAULT_TEMPLATE)
    if template not in TEMPLATE_SIZES:
        raise DataError(f"unknown alignment template {template!r} "
                        f"(known: {', '.join(TEMPLATE_SIZES)})", path)
    size = raw.get("input_size", TEMPLATE_SIZES[template])
    if not _positive_int(size) or size != TEMPLATE_SIZES[template]:
        raise DataError(f"input_size {size!r} does not fit template {template!r} "
                        f"({TEMPLATE_SIZES[template]}x{TEMPLATE_SIZES[template]} chips)", path)
    order = raw.get("channel_order", "RGB")
    if order not in ("RGB", "BGR"):
        raise DataError(f"channel_order must be 'RGB' or 'BGR', got {order!r}", path)
    mean = _triple(raw.get("mean", 0.0), "mean", path)
    std = _triple(raw.get("std", 1.0), "std", path)
    if any(s <= 0 for s in std):
        raise DataError(f"std must be positive, got {list(std)}", path)
    file = raw.get("file", "")
    if not isinstance(file, str) or os.path.isabs(file) or ".." in Path(file).parts:
        raise DataError(f"file must be a path inside the model folder, got {file!r}", path)
    known = {f.name for f in dataclasses.fields(ModelCard)}
    return ModelCard(
        name=str(raw["name"]), version=str(raw["version"]), format=fmt, embedding_dim=dim,
        file=file, input_size=size, template=template, channel_order=order, mean=mean, std=std,
        architecture=raw.get("architecture"), base=raw.get("base"),
        extra={k: v for k, v in raw.items() if k not in known}, folder=path.parent)


def _positive_int(value) -> bool:
    return isinstance(value, int) and not isinstance(value, bool) and value >= 1


def _triple(value, key: str, path: Path) -> tuple[float, float, float]:
    """A number (same for the three channels) or a list of three numbers."""
    items = [value] * 3 if isinstance(value, (int, float)) and not isinstance(value, bool) else value
    if (not isinstance(items, list) or len(items) != 3
            or not all(isinstance(v, (int, float)) and not isinstance(v, bool) for v in items)):
        raise DataError(f"{key} must be a number or a list of 3 numbers, got {value!r}", path)
    return tuple(float(v) for v in items)
