"""The batch runner: images -> decode + detect -> model -> collection shards.

    summary = embed_source(list_source("lfw"), "out", model="dlib-resnet-v1", workers=2)
    result = embed_paths(["a.jpg", "b.jpg"])        # in memory, for queries

Reader (a list of SourceItem) -> mapper (detect.iter_detections, optionally in worker
processes) -> model (encode.Encoder, in this process) -> writer (CollectionWriter).

Output folder of :func:`embed_source`:

    collection.json, part-*.parquet   the collection; extra columns ``box``
                                      (fixed_size_list<int32>[4]: left, top, right,
                                      bottom, dlib's inclusive convention) and
                                      ``det_score`` (float32, NaN with detector none)
    failures.jsonl                    one JSON object per image without a face row:
                                      {"path", "identity", "reason", "detail"}
    embed.json                        the settings that shaped the vectors (detector,
                                      faces policy, tta, model); a rerun must match them

Resume: rows become durable when a shard is finished (``shard_rows``). A rerun lists
the sources already in the finished shards and in failures.jsonl and skips them, so a
run killed at any point continues with no duplicate and no missing row. Only the last
source of the finished shards can be partial (policy ``all``, split at a shard
boundary); it is detected again and only its missing faces are written.
"""

from __future__ import annotations

import json
import logging
import os
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pyarrow as pa

from faceidx.embedder.detect import Detection, iter_detections
from faceidx.embedder.device import resolve_device
from faceidx.embedder.encode import TTA_MODES, Encoder
from faceidx.embedder.quality import chip_scores
from faceidx.embedder.resume import (  # noqa: F401  (read_failures: part of this module's API)
    FAILURES_NAME,
    SETTINGS_NAME,
    check_labels,
    check_settings,
    done_sources,
    failed_sources,
    old_settings,
    read_failures,
)
from faceidx.embedder.sources import SourceItem
from faceidx.io import MANIFEST_NAME, CollectionMeta, CollectionWriter
from faceidx.io.atomic import write_json_atomic
from faceidx.progress import Counter

log = logging.getLogger(__name__)

DEFAULT_MODEL = "dlib-resnet-v1"
EXTRA_FIELDS = (
    pa.field("box", pa.list_(pa.int32(), 4)),
    pa.field("det_score", pa.float32()),
    pa.field("quality", pa.float32()),   # faceidx.embedder.quality score; NaN: not measured
)


@dataclass
class EmbedSummary:
    """What a run did. `failures` counts reasons of this run's failed images."""

    out: str
    images: int
    skipped: int = 0
    processed: int = 0
    faces: int = 0
    failures: dict[str, int] = field(default_factory=dict)
    rows_total: int = 0
    seconds: float = 0.0
    nodes: dict[str, dict[str, int]] = field(default_factory=dict)  # Ray engine: work per node

    @property
    def images_per_s(self) -> float:
        return self.processed / self.seconds if self.seconds > 0 else 0.0

    def to_json(self) -> dict:
        return {"out": self.out, "images": self.images, "skipped": self.skipped,
                "processed": self.processed, "faces": self.faces,
                "failed": sum(self.failures.values()), "failures": dict(self.failures),
                "rows_total": self.rows_total, "seconds": round(self.seconds, 3),
                "images_per_s": round(self.images_per_s, 2),
                **({"nodes": self.nodes} if self.nodes else {})}


@dataclass
class EmbedResult:
    """In-memory embeddings of :func:`embed_paths`; row i belongs to sources[i]."""

    embeddings: np.ndarray
    sources: list[str]
    boxes: np.ndarray
    scores: np.ndarray
    failures: list[tuple[str, str]]
    meta: CollectionMeta


def open_model(model, device: str = "auto"):
    """A FaceModel from a registry spec (name or MODEL_DIR), or `model` itself if loaded."""
    if not isinstance(model, (str, os.PathLike)):
        return model
    from faceidx.embedder.registry import load_model

    return load_model(os.fspath(model), device=resolve_device(device))


def model_meta(model) -> CollectionMeta:
    return CollectionMeta(model=model.name, dim=int(model.dim), model_version=str(model.version),
                          normalized=True)


def embed_paths(paths: Sequence[str | os.PathLike], model=DEFAULT_MODEL, detector: str = "hog",
                device: str = "auto", batch_size: int = 64, tta: str = "none",
                policy: str = "largest", workers: int = 0) -> EmbedResult:
    """Embed images in memory: one row per face kept by `policy`, failures listed."""
    face_model = open_model(model, device)
    encoder = Encoder(face_model, device, tta)
    items = [SourceItem(os.fspath(p), None) for p in paths]
    vectors, sources, boxes, scores, failures = [], [], [], [], []
    detections = iter_detections(items, detector, policy, workers,
                                 template=getattr(face_model, "template", "dlib-150"))
    for chips, dets in _batches(detections, batch_size):
        for det in dets:
            if det.reason is not None:
                failures.append((det.item.path, det.reason))
        if chips:
            vectors.append(encoder(np.stack([c.chip for c, _ in chips])))
            sources.extend(item.path for _, item in chips)
            boxes.extend(c.box for c, _ in chips)
            scores.extend(c.score for c, _ in chips)
    dim = encoder.dim
    return EmbedResult(
        embeddings=np.concatenate(vectors) if vectors else np.empty((0, dim), np.float32),
        sources=sources,
        boxes=np.asarray(boxes, np.int32).reshape(-1, 4),
        scores=np.asarray(scores, np.float32),
        failures=failures,
        meta=model_meta(face_model),
    )


@dataclass
class EmbedPlan:
    """What a run must do: the images left after resuming, and the settings it writes."""

    out: Path
    meta: CollectionMeta
    settings: dict
    resuming: bool
    todo: list[SourceItem]
    skip_faces: dict[str, int]
    summary: EmbedSummary
    stored: dict[str, str] = field(default_factory=dict)  # image path -> source stored
    retry: set[str] = field(default_factory=set)  # failed sources tried again (stored names)


@dataclass
class EmbeddedBatch:
    """Faces embedded from consecutive images of the plan, and those images' failures.

    Row i of `vectors` came from image sources[i]; `images` counts the images the batch
    finishes (with or without a face), for progress and the summary.
    """

    vectors: np.ndarray
    identities: list
    sources: list
    boxes: list
    scores: list
    failures: list[Detection]
    images: int
    quality: np.ndarray | None = None    # per face (NaN or None: not measured)


def plan_embed(items: Sequence[SourceItem], out_dir: str | os.PathLike, meta: CollectionMeta, *,
               tta: str = "none", detector: str = "hog", policy: str = "largest",
               labelling: dict | None = None, retry_failed: bool = False) -> EmbedPlan:
    """Check the settings against a previous run of `out_dir` and list what is left to do.

    `labelling` (e.g. {"identity_regex": ..., "naming": ...}) is recorded with the
    settings. A rerun with other settings, or that would give faces already written
    another identity, is refused (DataError saying what differs and how to start over).

    Sources are stored as `SourceItem.stored` (relative to the embedded root), failures
    too; a collection begun before sources were relative keeps full paths (settings
    "sources": "absolute"), so resuming it neither duplicates nor misses an image.
    An image listed in failures.jsonl is skipped, unless `retry_failed`: then it is
    tried again and its old failure record dropped when the writing starts.
    """
    if tta not in TTA_MODES:
        raise ValueError(f"tta must be one of {TTA_MODES}, got {tta!r}")
    out = Path(out_dir)
    old = old_settings(out)
    mode = "absolute" if old is not None and "sources" not in old else "relative"
    settings = {"model": meta.model, "model_version": meta.model_version, "detector": detector,
                "faces": policy, "tta": tta, **(labelling or {}), "sources": mode}
    resuming = (out / MANIFEST_NAME).exists()
    check_settings(out, old, settings, set(labelling or {}))
    stored = {it.path: (it.stored if mode == "relative" else it.path) for it in items}
    done, partial, labels = done_sources(out) if resuming else ({}, None, {})
    check_labels(out, items, labels, stored)
    if policy == "largest":
        partial = None  # one row per image: a source in a finished shard is complete
    failed = failed_sources(out / FAILURES_NAME)

    todo, skip_faces, seen, retry = [], {}, set(), set()
    for item in items:
        key = stored[item.path]
        if key in seen:
            continue
        seen.add(key)
        if key in failed and retry_failed and key not in done:
            retry.add(key)
        elif key in failed or (key in done and key != partial):
            continue
        if key == partial:
            skip_faces[item.path] = done[key]
        todo.append(item)
    summary = EmbedSummary(out=str(out), images=len(seen), skipped=len(seen) - len(todo))
    if summary.skipped:
        log.info("resuming %s: %d of %d images already done", out, summary.skipped, len(seen))
    if retry:
        log.info("retrying %d image(s) that failed before", len(retry))
    return EmbedPlan(out, meta, settings, resuming, todo, skip_faces, summary, stored, retry)


def write_embedded(plan: EmbedPlan, batches, shard_rows: int = 50_000,
                   progress: bool = False) -> EmbedSummary:
    """Write EmbeddedBatch items, in plan order, into the collection and failures.jsonl.

    The one writer of both engines (local and Ray): same shards, face ids and files.
    """
    out, summary = plan.out, plan.summary
    start = time.perf_counter()
    out.mkdir(parents=True, exist_ok=True)
    if plan.retry:  # tried again: a new record is written if it fails again
        from faceidx.io.rewrite import drop_failure_records

        drop_failure_records(out / FAILURES_NAME, plan.retry.__contains__)
    fields = EXTRA_FIELDS
    if plan.resuming and (out / MANIFEST_NAME).exists():   # a collection from before `quality`
        from faceidx.io.manifest import CollectionManifest

        old = CollectionManifest.load(out / MANIFEST_NAME).extra_columns
        fields = tuple(f for f in EXTRA_FIELDS if f.name in old or f.name != "quality")
    with CollectionWriter(out, plan.meta, shard_rows=shard_rows,
                          buffer_rows=min(shard_rows, 65_536), extra_fields=fields,
                          resume=plan.resuming) as writer, \
            _FailureLog(out / FAILURES_NAME) as failure_log, \
            Counter(progress, total=len(plan.todo), desc="embed", unit="img") as bar:
        write_json_atomic(out / SETTINGS_NAME, plan.settings)
        for batch in batches:
            for det in batch.failures:
                failure_log.add(det, plan.stored.get(det.item.path, det.item.path))
                summary.failures[det.reason] = summary.failures.get(det.reason, 0) + 1
            if len(batch.vectors):
                extra = {"box": _box_column(batch.boxes),
                         "det_score": np.asarray(batch.scores, np.float32)}
                if len(fields) > 2:
                    extra["quality"] = (np.full(len(batch.vectors), np.nan, np.float32)
                                        if batch.quality is None else
                                        np.asarray(batch.quality, np.float32))
                writer.write(batch.vectors, identities=batch.identities,
                             sources=[plan.stored.get(p, p) for p in batch.sources], extra=extra)
                summary.faces += len(batch.vectors)
            summary.processed += batch.images
            bar.update(batch.images)
    summary.seconds = time.perf_counter() - start
    summary.rows_total = writer.result.rows
    return summary


def embed_source(items: Sequence[SourceItem], out_dir: str | os.PathLike, model=DEFAULT_MODEL, *,
                 device: str = "auto", batch_size: int = 64, workers: int = 0, tta: str = "none",
                 detector: str = "hog", policy: str = "largest", shard_rows: int = 50_000,
                 progress: bool = False, labelling: dict | None = None,
                 retry_failed: bool = False, precision: str = "auto") -> EmbedSummary:
    """Embed `items` into the collection `out_dir`, resuming what a previous run left
    (retry_failed: also the images failures.jsonl lists; precision: see Encoder)."""
    if batch_size <= 0:
        raise ValueError("batch_size must be positive")
    face_model = open_model(model, device)
    plan = plan_embed(items, out_dir, model_meta(face_model), tta=tta, detector=detector,
                      policy=policy, labelling=labelling, retry_failed=retry_failed)
    encoder = Encoder(face_model, device, tta, precision=precision)
    detections = iter_detections(plan.todo, detector, policy, workers,
                                 template=getattr(face_model, "template", "dlib-150"))
    return write_embedded(plan, embedded_batches(encoder, detections, batch_size, plan.skip_faces),
                          shard_rows, progress)


def embedded_batches(encoder: Encoder, detections, batch_size: int,
                     skip_faces: dict[str, int] | None = None):
    """EmbeddedBatch items, in order, for a stream of Detections (the local engine's mapper)."""
    for chips, dets in _batches(detections, batch_size, skip_faces):
        yield _embedded(encoder, chips, dets)


def _embedded(encoder: Encoder, chips: list, dets: list[Detection]) -> EmbeddedBatch:
    vectors = (encoder(np.stack([c.chip for c, _ in chips])) if chips
               else np.empty((0, encoder.dim), np.float32))
    return EmbeddedBatch(vectors, [item.identity for _, item in chips],
                         [item.path for _, item in chips], [c.box for c, _ in chips],
                         [c.score for c, _ in chips],
                         [d for d in dets if d.reason is not None], len(dets),
                         chip_scores([(c, item.path) for c, item in chips]))


def _box_column(boxes: list[tuple[int, int, int, int]]) -> pa.Array:
    flat = pa.array(np.asarray(boxes, np.int32).reshape(-1), pa.int32())
    return pa.FixedSizeListArray.from_arrays(flat, 4)


def _batches(detections, batch_size: int, skip_faces: dict[str, int] | None = None):
    """Group detections into (chips [(Chip, item)], detections) of about batch_size faces."""
    chips, dets = [], []
    for det in detections:
        dets.append(det)
        skip = (skip_faces or {}).get(det.item.path, 0)
        chips.extend((c, det.item) for c in det.chips[skip:])
        if len(chips) >= batch_size:
            yield chips, dets
            chips, dets = [], []
    if dets:
        yield chips, dets


class _FailureLog:
    """Appends failure rows to failures.jsonl, one flushed line each (survives a kill)."""

    def __init__(self, path: Path):
        self.path = path
        self._fh = None

    def __enter__(self) -> _FailureLog:
        needs_newline = False
        if self.path.exists() and self.path.stat().st_size > 0:
            with open(self.path, "rb") as fh:
                fh.seek(-1, os.SEEK_END)
                needs_newline = fh.read(1) != b"\n"
        self._fh = open(self.path, "a", encoding="utf-8")
        if needs_newline:  # a line cut by a kill: end it so the next one parses
            self._fh.write("\n")
        return self

    def add(self, det: Detection, stored: str) -> None:
        """One failure, under the name the collection stores (`stored`), never elsewhere."""
        detail = det.detail.replace(det.item.path, stored)
        self._fh.write(json.dumps({"path": stored, "identity": det.item.identity,
                                   "reason": det.reason, "detail": detail}) + "\n")
        self._fh.flush()

    def __exit__(self, *exc) -> None:
        self._fh.close()
