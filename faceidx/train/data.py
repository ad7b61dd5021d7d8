"""Training chips: detect and align once, cache on disk, augment per batch.

Faces are found and aligned exactly as `faceidx embed` does it (faceidx/embedder/detect.py),
for the alignment template the model is trained for (dlib-150, facenet-160, arcface-112;
faceidx/embedder/templates.py), then stored as one uint8 array (N, S, S, 3) per data set,
detector and template in a `.npy` file beside a JSON list of labels and sources. The cache
key hashes the detector, the template and every source's path, size and mtime, so a
changed data set is chipped again and an unchanged one never is. Epochs read the array
memory-mapped.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch

from faceidx.embedder.align import CHIP_SIZE
from faceidx.embedder.modelcard import DEFAULT_TEMPLATE, TEMPLATE_SIZES
from faceidx.errors import DataError
from faceidx.io.atomic import atomic_path, write_json_atomic
from faceidx.progress import progress

log = logging.getLogger(__name__)


@dataclass
class ChipSet:
    """Aligned chips uint8 (N, S, S, 3) RGB with their identity labels and source paths."""

    chips: np.ndarray
    labels: list[str]
    sources: list[str]
    failures: list[tuple[str, str]] = field(default_factory=list)
    rows: np.ndarray | None = None  # which rows of `chips` this set holds (None: the first len)

    def __len__(self) -> int:
        return len(self.labels)

    def take(self, idx: Sequence[int]) -> np.ndarray:
        """uint8 (len(idx), S, S, 3) chips at positions `idx` of this set."""
        idx = np.asarray(idx, dtype=np.int64)
        rows = idx if self.rows is None else self.rows[idx]
        order = np.argsort(rows)  # memory-mapped reads in file order
        out = np.empty((idx.size, *self.chips.shape[1:]), dtype=np.uint8)
        out[order] = self.chips[rows[order]]
        return out

    def subset(self, mask: np.ndarray) -> ChipSet:
        """The rows where `mask` is true, sharing the (memory-mapped) chip array."""
        idx = np.flatnonzero(mask)
        rows = idx if self.rows is None else self.rows[idx]
        return ChipSet(self.chips, [self.labels[i] for i in idx], [self.sources[i] for i in idx],
                       rows=rows)


def cache_key(items: Sequence[tuple[str, str]], detector: str, template: str = DEFAULT_TEMPLATE) -> str:
    """A short hash of the detector, the template and every (path, identity, size, mtime)."""
    head = f"chips-v1|{detector}|{CHIP_SIZE}" if template == DEFAULT_TEMPLATE else \
        f"chips-v1|{detector}|{template}|{TEMPLATE_SIZES[template]}"
    h = hashlib.sha256(head.encode())
    for path, identity in items:
        st = os.stat(path)
        h.update(f"{path}|{identity}|{st.st_size}|{st.st_mtime_ns}\n".encode())
    return h.hexdigest()[:16]


def list_training_items(data: str | os.PathLike, identity_regex: str | None = None
                        ) -> list[tuple[str, str]]:
    """[(path, identity)] of DATA as `faceidx embed` lists it; images without identity dropped."""
    from faceidx.embedder.sources import list_source

    items = list_source(data, identity_regex)
    labelled = [(it.path, it.identity) for it in items if it.identity is not None]
    if len(labelled) < len(items):
        log.warning("%d of %d images in %s have no identity and are not used for training",
                    len(items) - len(labelled), len(items), data)
    if not labelled:
        raise DataError("no image has an identity (use a folder per identity, a manifest with an "
                        "identity column, or --identity-regex)", data)
    return labelled


def load_chips(items: Sequence[tuple[str, str]], cache_dir: str | os.PathLike, detector: str = "hog",
               workers: int = 0, show_progress: bool = False, template: str = DEFAULT_TEMPLATE) -> ChipSet:
    """Chips for `items` [(path, identity)], from the cache in `cache_dir` or made and cached now.

    `template` is the model's alignment (modelcard.TEMPLATE_SIZES); chips are its size.

    Detection and alignment are `faceidx embed`'s (faceidx.embedder.detect, largest face);
    images that fail to decode or hold no face are left out and listed in `failures`.
    """
    from faceidx.embedder.detect import iter_detections
    from faceidx.embedder.sources import SourceItem

    cache_dir = Path(cache_dir)
    cache_dir.mkdir(parents=True, exist_ok=True)
    if template not in TEMPLATE_SIZES:
        raise DataError(f"unknown alignment template {template!r} (known: {', '.join(TEMPLATE_SIZES)})")
    size = TEMPLATE_SIZES[template]
    key = cache_key(items, detector, template)
    npy, meta_path = cache_dir / f"chips-{key}.npy", cache_dir / f"chips-{key}.json"
    if npy.exists() and meta_path.exists():
        meta = json.loads(meta_path.read_text())
        log.info("chips: %d from cache %s", len(meta["labels"]), npy)
        return ChipSet(np.load(npy, mmap_mode="r"), meta["labels"], meta["sources"],
                       [tuple(f) for f in meta["failures"]])
    labels, sources, failures = [], [], []
    sources_in = [SourceItem(path, identity) for path, identity in items]
    # rows past the usable count (images without a face) stay zero and are never read
    with atomic_path(npy) as tmp:
        out = np.lib.format.open_memmap(tmp, mode="w+", dtype=np.uint8,
                                        shape=(max(1, len(items)), size, size, 3))
        n = 0
        detections = iter_detections(sources_in, detector=detector, policy="largest", workers=workers,
                                     template=template)
        for det in progress(detections, show_progress, total=len(items), desc="chips", unit="img"):
            if not det.chips:
                failures.append((det.item.path, det.reason or "no_face"))
                continue
            out[n] = det.chips[0].chip
            labels.append(det.item.identity)
            sources.append(det.item.path)
            n += 1
        out.flush()
        del out
    write_json_atomic(meta_path, {"detector": detector, "template": template, "key": key, "labels": labels,
                                  "sources": sources, "failures": failures})
    if failures:
        log.warning("chips: %d of %d images gave no face (first: %s: %s)", len(failures),
                    len(items), *failures[0])
    return ChipSet(np.load(npy, mmap_mode="r"), labels, sources, failures)


def check_trainable(labels: Sequence[str], path: str | os.PathLike) -> None:
    """DataError unless there are >= 2 identities and one of them has >= 2 images."""
    counts: dict[str, int] = {}
    for lab in labels:
        counts[lab] = counts.get(lab, 0) + 1
    if len(counts) < 2:
        raise DataError(f"triplets need at least 2 identities, found {len(counts)} "
                        f"(in {len(labels)} usable faces)", path)
    if max(counts.values()) < 2:
        raise DataError(f"triplets need an identity with at least 2 images; all {len(counts)} "
                        "identities have one", path)


def split_identities(labels: Sequence[str], fraction: float, seed: int = 0) -> np.ndarray:
    """Boolean mask of the held-out rows: a seeded `fraction` of the identities with >= 2 images.

    At least 2 identities are held out (a verification pair set needs impostors) and at
    least 2 identities with >= 2 images stay for training.
    """
    if not 0 < fraction < 1:
        raise ValueError(f"validation fraction must be in (0, 1), got {fraction}")
    counts: dict[str, int] = {}
    for lab in labels:
        counts[lab] = counts.get(lab, 0) + 1
    multi = sorted(lab for lab, c in counts.items() if c >= 2)
    n_val = max(2, round(fraction * len(multi)))
    if len(multi) - n_val < 2:
        raise DataError(f"holding out {n_val} of {len(multi)} identities with >= 2 images "
                        "leaves fewer than 2 to train on")
    rng = np.random.default_rng(seed)
    held = {multi[i] for i in rng.choice(len(multi), size=n_val, replace=False)}
    return np.array([lab in held for lab in labels], dtype=bool)


def to_input(chips: np.ndarray, device: torch.device | str = "cpu") -> torch.Tensor:
    """uint8 (N, H, W, 3) -> float (N, 3, H, W) in 0..255 on `device`."""
    t = torch.from_numpy(np.ascontiguousarray(chips))
    return t.to(device).permute(0, 3, 1, 2).float()


def augment(x: torch.Tensor, generator: torch.Generator, max_crop: float = 0.1,
            jitter: float = 0.2) -> torch.Tensor:
    """Random flip, a small random crop resized back, brightness/contrast jitter.

    `x` is float (N, 3, H, W) in 0..255; the result has the same shape and range. All
    randomness comes from `generator` (CPU), so a seeded run repeats.
    """
    n, _, h, w = x.shape
    r = torch.rand(n, 5, generator=generator)
    out = torch.empty_like(x)
    for i in range(n):
        img = x[i]
        if r[i, 0] < 0.5:
            img = img.flip(-1)
        scale = 1.0 - max_crop * float(r[i, 1])
        ch, cw = max(1, round(h * scale)), max(1, round(w * scale))
        top, left = int(float(r[i, 2]) * (h - ch + 1)), int(float(r[i, 3]) * (w - cw + 1))
        img = img[:, top:top + ch, left:left + cw]
        if (ch, cw) != (h, w):
            img = torch.nn.functional.interpolate(img[None], size=(h, w), mode="bilinear",
                                                  align_corners=False)[0]
        out[i] = img
    gain = 1.0 + jitter * (torch.rand(n, 2, generator=generator) * 2 - 1)
    mean = out.mean(dim=(1, 2, 3), keepdim=True)
    out = (out - mean) * gain[:, 0].view(n, 1, 1, 1).to(x.device) + mean * gain[:, 1].view(n, 1, 1, 1).to(x.device)
    return out.clamp_(0.0, 255.0)
