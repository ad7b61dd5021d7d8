"""Decode + detect + align images, in this process or in DataLoader worker processes.

    for result in iter_detections(items, detector="hog", policy="largest", workers=2):
        result.chips        # list[Chip]; empty with result.reason set on failure

Results come back in the order of `items`. Each process (this one, or each worker) builds
its own :class:`~faceidx.embedder.align.Aligner` once per call of `iter_detections`, so
no model is cached at module level; the caller's process only receives chips
(150x150x3 uint8 each), so the model can run there undisturbed.

JPEGs are decoded as dlib decodes them (``decoder="dlib"``, faceidx.embedder.jpeg_dlib)
so that chips equal dlib's reference pipeline's; ``decoder="pil"`` keeps Pillow's pixels.
"""

from __future__ import annotations

import logging
import sys
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field

from faceidx.embedder.align import DETECTORS, Aligner, Chip
from faceidx.embedder.decode import ImageError, load_image
from faceidx.embedder.faces import check_policy
from faceidx.embedder.jpeg_dlib import DECODERS, dlib_pixels
from faceidx.embedder.sources import SourceItem
from faceidx.errors import DataError

log = logging.getLogger(__name__)

NO_FACE = "no_face"


@dataclass
class Detection:
    """The outcome for one image: its chips, or the reason it gave none."""

    item: SourceItem
    chips: list[Chip] = field(default_factory=list)
    reason: str | None = None
    detail: str = ""


def detect_one(item: SourceItem, aligner: Aligner | str, policy: str = "largest",
               decoder: str = "dlib") -> Detection:
    """Decode `item.path` and cut its face chips; failures are returned, not raised.

    `aligner`: an Aligner to reuse (hold one per process or task), or a detector name
    (an Aligner is then built for this call: ~0.1 s, fine for one image, slow for many).
    """
    if isinstance(aligner, str):
        aligner = Aligner(aligner)
    try:
        image = load_image(item.path)
    except ImageError as err:
        return Detection(item, reason=err.code, detail=str(err))
    if decoder == "dlib" and aligner.detector != "none":
        image = dlib_pixels(item.path, image)
    chips = aligner(image, policy)
    if not chips:
        h, w = image.shape[:2]
        return Detection(item, reason=NO_FACE, detail=f"{item.path}: no face found in {w}x{h} image")
    return Detection(item, chips=chips)


class _DetectDataset:
    """Map-style dataset for torch's DataLoader: index -> Detection."""

    def __init__(self, items: Sequence[SourceItem], detector: str, policy: str, decoder: str,
                 template: str = "dlib-150"):
        self.items, self.detector, self.policy, self.decoder = items, detector, policy, decoder
        self.template = template
        self.aligner: Aligner | None = None    # built in each worker on first use

    def __len__(self) -> int:
        return len(self.items)

    def __getitem__(self, i: int) -> Detection:
        if self.aligner is None:
            self.aligner = make_aligner(self.detector, self.template)
        return detect_one(self.items[i], self.aligner, self.policy, self.decoder)


def _keep(x):
    return x


def _die_with_parent(_worker_id: int) -> None:
    """Linux: a worker gets SIGKILL when its parent dies (kill -9 leaves no orphan)."""
    if sys.platform.startswith("linux"):
        import ctypes
        import signal

        try:
            ctypes.CDLL("libc.so.6", use_errno=True).prctl(1, signal.SIGKILL)  # PR_SET_PDEATHSIG
        except OSError:
            log.debug("prctl unavailable; orphaned workers will not be killed")


def make_aligner(detector: str, template: str = "dlib-150") -> Aligner:
    """An Aligner whose chips follow the model's alignment template (templates.py)."""
    from faceidx.embedder.templates import chip_fn_for

    if detector == "none" and template != "dlib-150":
        raise DataError(f"--detector none passes 150x150 crops, but the model's template is "
                        f"{template!r}: use a detector that finds landmarks (hog)")
    return Aligner(detector, chip_fn=chip_fn_for(template))


def iter_detections(items: Sequence[SourceItem], detector: str = "hog", policy: str = "largest",
                    workers: int = 0, prefetch: int = 8, decoder: str = "dlib",
                    template: str = "dlib-150") -> Iterator[Detection]:
    """Detections for `items`, in order; `workers` > 0 runs them in worker processes.
    Chips follow `template` (the model card's: dlib-150, arcface-112, facenet-160)."""
    if detector not in DETECTORS:
        raise ValueError(f"detector must be one of {DETECTORS}, got {detector!r}")
    check_policy(policy)
    if decoder not in DECODERS:
        raise ValueError(f"decoder must be one of {DECODERS}, got {decoder!r}")
    aligner = make_aligner(detector, template)  # fails early on a missing model
    if workers <= 0 or len(items) < 2:
        for item in items:
            yield detect_one(item, aligner, policy, decoder)
        return
    from torch.utils.data import DataLoader

    loader = DataLoader(
        _DetectDataset(items, detector, policy, decoder, template),
        batch_size=None,
        shuffle=False,
        num_workers=workers,
        collate_fn=_keep,
        prefetch_factor=prefetch,
        worker_init_fn=_die_with_parent,
    )
    yield from loader
