"""`faceidx embed --ray`: the embed stage as a Ray Data pipeline, same collection as local.

    summary = embed_source_ray(list_source("lfw"), "lfw-emb", "dlib-resnet-v1")

    image list (driver) --> decode + detect + align   (CPU actors, `images_per_task` a call)
                        --> embed                      (actor pool: one model per actor,
                                                        num_gpus=1 each on a GPU cluster)
                        --> CollectionWriter           (driver, rows in input order)

On a cluster without GPUs each actor detects, then embeds, in one process (one actor per
CPU; chips never leave it). With GPUs, detection runs in CPU actors and only chips (67 KB
a face) travel to the GPU actors. Every actor builds its aligner and model once.

The resume plan and the writer are the local engine's (faceidx.embedder.pipeline
plan_embed / write_embedded): Ray Data keeps rows in input order, so the collection has
the same shard files (part-00000.parquet, ...), face ids, failures.jsonl and embed.json
as a local run of the same images, and a rerun skips what finished shards and
failures.jsonl already hold. A task or actor lost with its node is retried by Ray; its
rows reach the writer once, in order. Images are read by the workers: SOURCE must be on
a path every node sees.
"""

from __future__ import annotations

import logging
import os
from collections import Counter
from collections.abc import Iterator, Sequence

import numpy as np

from faceidx.distributed.cluster import data_context, node_id, require_ray
from faceidx.embedder.detect import Detection, detect_one
from faceidx.embedder.pipeline import (
    DEFAULT_MODEL,
    EmbeddedBatch,
    EmbedSummary,
    model_meta,
    open_model,
    plan_embed,
    write_embedded,
)
from faceidx.embedder.sources import SourceItem
from faceidx.embedder.templates import TEMPLATES

log = logging.getLogger(__name__)

FACE, FAILED, DONE = "face", "failed", "done"  # row kinds: a face; a failure; an image with
# no row left to write (the rest of an image a previous run split at a shard boundary)


class DetectActor:
    """Ray Data actor: holds one Aligner; image rows -> one row per face kept, or one row
    per failed image (chips follow the model card's template)."""

    def __init__(self, detector: str, policy: str, template: str):
        from faceidx.embedder.detect import make_aligner

        self.aligner = make_aligner(detector, template)
        self.policy = policy
        self.blank = np.zeros((TEMPLATES[template].size,) * 2 + (3,), np.uint8)
        self.node = node_id()

    def __call__(self, batch: dict) -> dict:
        rows: list[tuple] = []
        for path, identity, skip in zip(batch["path"], batch["identity"], batch["skip"],
                                        strict=True):
            det = detect_one(SourceItem(str(path), identity), self.aligner, self.policy)
            if det.reason is not None:
                rows.append((path, identity, FAILED, det.reason, det.detail, None))
                continue
            chips = det.chips[int(skip):]
            rows.extend((path, identity, FACE, "", "", c) for c in chips)
            if not chips:
                rows.append((path, identity, DONE, "", "", None))
        first = [i == 0 or rows[i][0] != rows[i - 1][0] for i in range(len(rows))]
        return {
            "path": np.asarray([r[0] for r in rows], object),
            "identity": np.asarray([r[1] for r in rows], object),
            "kind": np.asarray([r[2] for r in rows], object),
            "reason": np.asarray([r[3] for r in rows], object),
            "detail": np.asarray([r[4] for r in rows], object),
            "first": np.asarray(first, bool),
            "chip": np.stack([self.blank if r[5] is None else r[5].chip for r in rows]),
            "box": np.asarray([(0, 0, 0, 0) if r[5] is None else r[5].box for r in rows],
                              np.int32).reshape(-1, 4),
            "score": np.asarray([np.nan if r[5] is None else r[5].score for r in rows],
                                np.float32),
            "detect_node": np.asarray([self.node] * len(rows), object),
        }


class EmbedActor:
    """Ray Data actor: loads the model once, embeds the face rows of each batch."""

    def __init__(self, model, tta: str, device: str, threads: int):
        from faceidx.embedder.device import configure_cpu_threads
        from faceidx.embedder.encode import Encoder

        self.encoder = Encoder(open_model(model, device), device, tta)
        if self.encoder.device.type == "cpu":
            configure_cpu_threads(threads)  # the CPUs Ray gave this actor, not the machine's
        self.node = node_id()

    def __call__(self, batch: dict) -> dict:
        faces = batch["kind"] == FACE
        vectors = np.zeros((len(faces), self.encoder.dim), np.float32)
        if faces.any():
            vectors[faces] = self.encoder(batch["chip"][faces])
        out = {k: v for k, v in batch.items() if k != "chip"}
        out["vector"] = vectors
        out["embed_node"] = np.asarray([self.node] * len(faces), object)
        return out


class DetectEmbedActor:
    """Both in one actor (a CPU-only cluster): detect, then embed; chips stay in-process."""

    def __init__(self, model, tta: str, detector: str, policy: str, template: str):
        self.detect = DetectActor(detector, policy, template)
        self.embed = EmbedActor(model, tta, "cpu", 1)

    def __call__(self, batch: dict) -> dict:
        return self.embed(self.detect(batch))


def embed_source_ray(items: Sequence[SourceItem], out_dir: str | os.PathLike,
                     model=DEFAULT_MODEL, *, batch_size: int = 64, tta: str = "none",
                     detector: str = "hog", policy: str = "largest", shard_rows: int = 50_000,
                     device: str = "auto", actors: int | None = None, images_per_task: int = 16,
                     progress: bool = False, retry_failed: bool = False,
                     labelling: dict | None = None) -> EmbedSummary:
    """Embed `items` into the collection `out_dir` on the connected Ray cluster.

    actors: embedding actors (default: one per GPU on a GPU cluster, else one per CPU,
    each also detecting). device: "auto" embeds on GPUs when the cluster has them. The
    summary's `nodes` counts the images each node detected and the faces it embedded.
    labelling, retry_failed: as faceidx.embedder.pipeline.embed_source's.
    """
    if batch_size <= 0 or images_per_task <= 0:
        raise ValueError("batch_size and images_per_task must be positive")
    ray = require_ray()
    face_model = open_model(model, "cpu")  # checks the spec before the cluster works
    meta = model_meta(face_model)
    template = getattr(face_model, "template", "dlib-150")
    del face_model
    plan = plan_embed(items, out_dir, meta, tta=tta, detector=detector, policy=policy,
                      labelling=labelling, retry_failed=retry_failed)
    gpus = int(ray.cluster_resources().get("GPU", 0)) if device != "cpu" else 0
    if device == "cuda" and not gpus:
        raise RuntimeError("--device cuda asked for, but the Ray cluster has no GPU")
    cpus = int(ray.cluster_resources().get("CPU", 1))
    actors = actors or (gpus if gpus else cpus)
    nodes: dict[str, Counter] = {}
    with data_context(progress):
        batches = _embedded_batches(ray, plan.todo, plan.skip_faces, model, tta, detector,
                                    policy, template, batch_size, images_per_task, actors,
                                    gpus, nodes)
        summary = write_embedded(plan, batches, shard_rows, progress)
    summary.nodes = {n: dict(c) for n, c in sorted(nodes.items())}
    return summary


def _embedded_batches(ray, todo: list[SourceItem], skip_faces: dict[str, int], model, tta: str,
                      detector: str, policy: str, template: str, batch_size: int,
                      images_per_task: int, actors: int, gpus: int,
                      nodes: dict[str, Counter]) -> Iterator[EmbeddedBatch]:
    if not todo:
        return
    rows = [{"path": it.path, "identity": it.identity, "skip": skip_faces.get(it.path, 0)}
            for it in todo]
    blocks = max(1, -(-len(rows) // images_per_task))
    ds = ray.data.from_items(rows, override_num_blocks=blocks)
    pool = ray.data.ActorPoolStrategy
    if gpus:  # detection on CPUs, the model on GPUs: only chips travel
        cpus = max(1, int(ray.cluster_resources().get("CPU", 1)) - gpus)
        ds = ds.map_batches(DetectActor, batch_size=images_per_task, batch_format="numpy",
                            fn_constructor_args=(detector, policy, template),
                            compute=pool(size=cpus), num_cpus=1)
        ds = ds.map_batches(EmbedActor, batch_size=batch_size, batch_format="numpy",
                            fn_constructor_args=(model, tta, "cuda", 1),
                            compute=pool(size=actors), num_gpus=1, num_cpus=1)
    else:
        ds = ds.map_batches(DetectEmbedActor, batch_size=images_per_task, batch_format="numpy",
                            fn_constructor_args=(model, tta, detector, policy, template),
                            compute=pool(size=actors), num_cpus=1)
    for b in ds.iter_batches(batch_size=None, batch_format="numpy"):
        yield _to_embedded(b, nodes)


def _to_embedded(b: dict, nodes: dict[str, Counter]) -> EmbeddedBatch:
    kind = b["kind"]
    faces = np.flatnonzero(kind == FACE)
    for n in b["detect_node"][b["first"]]:
        nodes.setdefault(str(n), Counter())["images_detected"] += 1
    for n in b["embed_node"][faces]:
        nodes.setdefault(str(n), Counter())["faces_embedded"] += 1
    failures = [Detection(SourceItem(str(p), i), reason=str(r), detail=str(d))
                for p, i, r, d in zip(b["path"][kind == FAILED], b["identity"][kind == FAILED],
                                      b["reason"][kind == FAILED], b["detail"][kind == FAILED],
                                      strict=True)]
    return EmbeddedBatch(
        vectors=np.ascontiguousarray(b["vector"][faces], np.float32),
        identities=list(b["identity"][faces]),
        sources=[str(p) for p in b["path"][faces]],
        boxes=[tuple(x) for x in b["box"][faces]],
        scores=list(b["score"][faces]),
        failures=failures,
        images=int(b["first"].sum()),
    )
