"""Probes for a gallery: image files, image bytes and RGB arrays embedded with the index's
model and detector, or embeddings collections read as they are.

    embedder = ImageEmbedder(reader, device="cpu")        # the index's model, checked
    faces = embedder.embed([Path("a.jpg"), b"...jpeg bytes..."], faces="all")
    faces[0].vectors, faces[0].boxes, faces[1].reason     # (n, D), (n, 4), or "no_face"

The embedder holds its model, encoder and (one per thread) face aligners: nothing is
cached at module level, and any number of threads may call it at once.
"""

from __future__ import annotations

import json
import os
import tempfile
import threading
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from faceidx.errors import DataError, ModelMismatchError

FACE_POLICIES = ("largest", "all")
EMBED_CHUNK = 256  # images detected and embedded per model batch when loading probe folders


@dataclass
class FaceSet:
    """The faces of one image: unit vectors (n, D) and boxes (n, 4), or why there is none."""

    source: str
    vectors: np.ndarray
    boxes: np.ndarray
    reason: str | None = None
    detail: str = ""
    quality: np.ndarray | None = None   # (n,) faceidx.embedder.quality scores


@dataclass
class Probes:
    """Probe faces in input order: row i of `vectors` came from sources[i] (truth[i] is
    who it is when known, boxes[i] the face box in its image or None); images without a
    usable face are listed in `skipped` as (source, truth, reason)."""

    vectors: np.ndarray
    sources: list[str] = field(default_factory=list)
    truth: list[str | None] = field(default_factory=list)
    boxes: list[tuple | None] = field(default_factory=list)
    skipped: list[tuple[str, str | None, str]] = field(default_factory=list)
    quality: list[float] = field(default_factory=list)   # per row; NaN: none (not gated)
    embed_seconds: float = 0.0
    images: int = 0


def is_collection(path: Path) -> bool:
    """An embeddings collection (folder with collection.json / parquet, or a parquet file)."""
    if path.is_file():
        return path.suffix.lower() in (".parquet", ".pq")
    return (path / "collection.json").exists() or any(path.glob("*.parquet"))


def index_detector(reader) -> str | None:
    """The detector the index's first collection was embedded with (embed.json), if known."""
    for c in reader.manifest.get("collections", []):
        settings = Path(c.get("path", "")) / "embed.json"
        if settings.exists():
            try:
                return json.loads(settings.read_text()).get("detector")
            except (OSError, ValueError):
                return None
    return None


class ImageEmbedder:
    """Embeds probe images with the index's model (or `model`, which must match it).

    The model loads once, here; a model that cannot be loaded raises DataError saying
    how to proceed, one of another name/version/dimension ModelMismatchError.
    """

    def __init__(self, reader, model: str | os.PathLike | None = None, detector: str | None = None,
                 device: str = "auto"):
        from faceidx.embedder.encode import Encoder
        from faceidx.embedder.pipeline import model_meta, open_model

        meta = reader.meta
        try:
            face_model = open_model(model or meta.model, device)
        except DataError as err:
            if model is None:
                raise DataError(f"probe images need the index's model {meta.model!r} to embed "
                                f"them, and it cannot be loaded ({err.reason}); pass --model "
                                "MODEL_DIR, or give an embeddings collection as PROBE",
                                reader.path) from err
            raise
        got = model_meta(face_model)
        if (got.model, got.model_version, got.dim) != (meta.model, meta.model_version, meta.dim):
            raise ModelMismatchError(
                f"probe model {got.model!r} (version {got.model_version!r}, D={got.dim}) is not "
                f"the index's {meta.model!r} (version {meta.model_version!r}, D={meta.dim})",
                reader.path)
        self.detector = detector or index_detector(reader) or "hog"
        self.encoder = Encoder(face_model, device)
        self.template = getattr(face_model, "template", "dlib-150")  # the card's chips
        self.dim = int(meta.dim)
        self._local = threading.local()

    def _aligner(self):
        from faceidx.embedder.detect import make_aligner

        aligner = getattr(self._local, "aligner", None)
        if aligner is None:
            aligner = self._local.aligner = make_aligner(self.detector, self.template)
        return aligner

    def detect(self, image, faces: str = "largest", source: str | None = None):
        """(chips, boxes, reason, detail): the aligned chips of an image file path, bytes or
        RGB array."""
        chips, boxes, reason, detail, _ = self.detect_faces(image, faces)
        return chips, boxes, reason, detail

    def detect_faces(self, image, faces: str = "largest"):
        """detect's answer plus each face's quality score (n,)."""
        from faceidx.embedder.decode import ImageError
        from faceidx.embedder.quality import face_quality

        if faces not in FACE_POLICIES:
            raise ValueError(f"faces must be one of {FACE_POLICIES}, got {faces!r}")
        try:
            if isinstance(image, np.ndarray):
                rgb = image
            elif isinstance(image, (bytes, bytearray, memoryview)):
                rgb = _decode_bytes(bytes(image), self.detector)
            else:
                rgb = _decode_path(image, self.detector)
        except ImageError as err:
            return [], np.empty((0, 4), np.int32), err.code, str(err), np.empty(0)
        chips = self._aligner()(rgb, faces)
        if not chips:
            h, w = rgb.shape[:2]
            return ([], np.empty((0, 4), np.int32), "no_face", f"no face found in {w}x{h} image",
                    np.empty(0))
        boxes = np.asarray([c.box for c in chips], np.int32).reshape(-1, 4)
        quality = np.array([face_quality(c, rgb.shape[:2]).score for c in chips], np.float64)
        return [c.chip for c in chips], boxes, None, "", quality

    def encode(self, chips) -> np.ndarray:
        """uint8 chips (n, 150, 150, 3) -> unit float32 vectors (n, D)."""
        if not len(chips):
            return np.empty((0, self.dim), np.float32)
        return self.encoder(np.stack(chips))

    def embed(self, images, faces: str = "largest", sources=None) -> list[FaceSet]:
        """One FaceSet per image (path, bytes or RGB array), in order, in one model batch."""
        found = [self.detect_faces(im, faces) for im in images]
        vectors = self.encode([c for chips, *_ in found for c in chips])
        out, at = [], 0
        for i, (chips, boxes, reason, detail, quality) in enumerate(found):
            src = sources[i] if sources is not None else (
                str(images[i]) if isinstance(images[i], (str, os.PathLike)) else f"image {i}")
            out.append(FaceSet(src, vectors[at:at + len(chips)], boxes, reason, detail, quality))
            at += len(chips)
        return out


def _decode_path(path, detector: str) -> np.ndarray:
    """Decode an image file as `faceidx embed` does (its limits; JPEGs with dlib's pixels
    when a detector runs), so a probe's vector equals the one embed gives the same file."""
    from faceidx.embedder.decode import load_image
    from faceidx.embedder.jpeg_dlib import dlib_pixels

    rgb = load_image(path)
    return rgb if detector == "none" else dlib_pixels(path, rgb)


def _decode_bytes(data: bytes, detector: str) -> np.ndarray:
    """Decode image bytes with embed's rules and limits (through a private temp file)."""
    with tempfile.NamedTemporaryFile(prefix="faceidx-probe-", suffix=".img") as fh:
        fh.write(data)
        fh.flush()
        return _decode_path(fh.name, detector)


def load_probes(paths, reader, embedder_factory, faces: str = "largest") -> Probes:
    """Collections are read as they are (checked against the index's model); images are
    embedded with `embedder_factory()` (called once, only when there are images)."""
    import time

    from faceidx.io import open_collection

    vecs, out = [], Probes(np.empty((0, reader.dim), np.float32))
    for p in map(Path, paths):
        if is_collection(p):
            coll = open_collection(p)
            reader.meta.check_compatible(coll.meta, p)
            cols = ["identity", "source", "embedding"]
            batch = coll.read_all(columns=cols + (["quality"] if "quality" in coll.columns else []))
            vecs.append(np.asarray(batch.embeddings, np.float32))
            out.quality += list(np.asarray(batch.extra.get("quality", np.full(len(batch), np.nan)),
                                           np.float64))
            out.sources += [str(s) for s in batch.sources]
            out.truth += list(batch.identities)
            out.boxes += [None] * len(batch.embeddings)
            continue
        from faceidx.embedder.sources import list_source

        items = list_source(p)
        if not items:
            continue
        t0 = time.perf_counter()
        embedder = embedder_factory()
        found = []
        for lo in range(0, len(items), EMBED_CHUNK):  # bounded chip memory
            found += embedder.embed([it.path for it in items[lo:lo + EMBED_CHUNK]], faces)
        for item, fs in zip(items, found, strict=True):
            if fs.reason is not None:
                out.skipped.append((item.path, item.identity, fs.reason))
                continue
            vecs.append(fs.vectors)
            out.sources += [item.path] * len(fs.vectors)
            out.truth += [item.identity] * len(fs.vectors)
            out.boxes += [tuple(int(v) for v in b) for b in fs.boxes]
            out.quality += list(fs.quality if fs.quality is not None
                                else np.full(len(fs.vectors), np.nan))
        out.embed_seconds += time.perf_counter() - t0
        out.images += len(items)
    if vecs:
        out.vectors = np.ascontiguousarray(np.concatenate(vecs), np.float32)
    return out


def count_correct(truth, results, snapshot) -> tuple[int, int | None]:
    """(labelled probes, correct answers): an enrolled person must get their name, anyone
    else "unknown". (0, None) when no probe is labelled."""
    labelled = [(t, r) for t, r in zip(truth, results, strict=True) if t is not None]
    if not labelled:
        return 0, None
    enrolled = snapshot.counts()
    return len(labelled), sum((r.decision == t) if t in enrolled else r.decision is None
                              for t, r in labelled)
