"""Write a faceidx model (dlib-resnet-v1, a .dat file, a MODEL_DIR) as ONNX and TorchScript.

    results = export_model("dlib-resnet-v1", "dlib-onnx", formats=("onnx", "torchscript"))
    # dlib-onnx/onnx/{model.onnx, faceidx-model.json}, dlib-onnx/torchscript/{model.pt, ...}

Each output folder is a model with its card, loadable by `registry.load_model` and
`faceidx embed --model`. The card keeps the source's name, version, dimension and
template: the exported network computes the same vectors, so an index built from
either accepts probes from the other. That claim is checked before the card is
written: a seeded set of structured chips goes through the source and the export, and
the export is refused (DataError) unless every cosine is >= PARITY_MIN_COSINE; the
measured figures are stored in the card under `parity`.

The network is exported with the input normalisation inside (float RGB 0..255 in, the
raw descriptor out), so the card says mean 0, std 1, RGB. Models with affine layers are
exported in their inference form (affine folded into the conv), as `FaceModel` runs them.
"""

from __future__ import annotations

import os
import warnings
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

from faceidx.embedder.modelcard import DEFAULT_FILES, ModelCard
from faceidx.errors import DataError
from faceidx.io.atomic import atomic_path

EXPORT_FORMATS = ("onnx", "torchscript")
PARITY_MIN_COSINE = 0.99999
ONNX_OPSET = 17
TRACE_BATCH = 2


@dataclass
class ExportResult:
    format: str
    folder: Path
    card: ModelCard
    min_cosine: float
    max_abs_raw: float


def check_chips(size: int, n: int = 16, seed: int = 0) -> np.ndarray:
    """uint8 (n, size, size, 3): seeded smooth colour fields with edges, not white noise."""
    rng = np.random.default_rng(seed)
    coarse = rng.uniform(0, 255, size=(n, 3, 6, 6)).astype(np.float32)
    x = F.interpolate(torch.from_numpy(coarse), size=(size, size), mode="bicubic",
                      align_corners=False)
    x = x + torch.from_numpy(rng.normal(0, 12, size=(n, 3, size, size)).astype(np.float32))
    return x.clamp(0, 255).round().to(torch.uint8).permute(0, 2, 3, 1).contiguous().numpy()


def export_model(spec: str | os.PathLike, out_dir: str | os.PathLike,
                 formats: tuple[str, ...] = EXPORT_FORMATS) -> list[ExportResult]:
    """Export the model `spec` (registry spec) into out_dir/<format>/ for each format."""
    from faceidx.embedder.registry import load_model

    unknown = [f for f in formats if f not in EXPORT_FORMATS]
    if unknown:
        raise ValueError(f"unknown export format(s) {unknown}; choose from {EXPORT_FORMATS}")
    source = load_model(spec, device="cpu")
    if source.card.format in EXPORT_FORMATS:
        raise DataError(f"{spec} is already an exported {source.card.format} model; export the model "
                        "it was made from", os.fspath(spec))
    with torch.no_grad():
        net = source.runner() if hasattr(source.net, "inference_copy") else source.net
    net = net.eval().to(memory_format=torch.contiguous_format)
    chips = check_chips(source.input_size)
    results, failed = [], []
    for fmt in formats:
        folder = Path(out_dir) / fmt
        folder.mkdir(parents=True, exist_ok=True)
        weights = folder / DEFAULT_FILES[fmt]
        try:
            with atomic_path(weights) as tmp:
                _write(fmt, net, source.input_size, tmp)
        except Exception as err:  # the exporters raise their own types (unsupported operator)
            failed.append(f"{fmt}: {str(err).strip().splitlines()[0]}")
            if not any(folder.iterdir()):
                folder.rmdir()
            continue
        results.append(_card_after_parity(source, os.fspath(spec), fmt, folder, chips))
    if failed:
        done = f"; written: {', '.join(r.format for r in results)}" if results else ""
        raise DataError(f"cannot export {'; '.join(failed)}{done}", os.fspath(spec))
    return results


def _write(fmt: str, net: torch.nn.Module, size: int, path: Path) -> None:
    example = torch.full((TRACE_BATCH, 3, size, size), 128.0)
    # The tracer warns about Python branches on tensor shapes (dlib's padded add): they
    # depend on the chip size, fixed by the card, and not on the batch, which stays free.
    with warnings.catch_warnings(), torch.no_grad():
        warnings.simplefilter("ignore", torch.jit.TracerWarning)
        warnings.simplefilter("ignore", DeprecationWarning)
        if fmt == "onnx":
            # The legacy (TorchScript-based) exporter: the dynamo one needs onnxscript.
            torch.onnx.export(net, (example,), str(path), dynamo=False, opset_version=ONNX_OPSET,
                              input_names=["chips"], output_names=["embedding"],
                              dynamic_axes={"chips": {0: "n"}, "embedding": {0: "n"}})
        else:
            torch.jit.save(torch.jit.trace(net, example, check_trace=False), str(path))


def _card_after_parity(source, spec: str, fmt: str, folder: Path, chips: np.ndarray
                       ) -> ExportResult:
    """Load the export, compare it with `source` on `chips`, then write its card."""
    from faceidx.embedder.registry import FaceModel, _load_card

    card = ModelCard(name=source.name, version=source.version, format=fmt,
                     embedding_dim=source.dim, file=DEFAULT_FILES[fmt],
                     input_size=source.input_size, template=source.template,
                     extra={"exported_from": {"spec": spec, "format": source.card.format}},
                     folder=folder)
    exported: FaceModel = _load_card(card, torch.device("cpu"), "cpu").eval()
    want = source.embed_chips(chips, raw=True)
    got = exported.embed_chips(chips, raw=True)
    cos = np.sum(want * got, 1) / (np.linalg.norm(want, axis=1) * np.linalg.norm(got, axis=1))
    min_cos, max_abs = float(cos.min()), float(np.abs(want - got).max())
    if min_cos < PARITY_MIN_COSINE:
        raise DataError(f"exported {fmt} model disagrees with {source.name}: worst cosine "
                        f"{min_cos:.7f} < {PARITY_MIN_COSINE}", card.weights)
    card.extra["parity"] = {"chips": len(chips), "min_cosine": round(min_cos, 8),
                            "max_abs_raw": max_abs, "min_cosine_required": PARITY_MIN_COSINE}
    card.save(folder)
    return ExportResult(fmt, folder, card, min_cos, max_abs)
