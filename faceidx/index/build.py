"""Streaming index build: train once, add shard by shard, tune, optionally merge.

    manifest = build_index("faces/", "faces.index", BuildOptions(index_spec="auto"))
    manifest = add_collection("faces.index", "new-faces/")     # no retraining

Memory is bounded by one batch of vectors, one shard's codes and the training
sample, whatever the collection's size. Every stage leaves a file behind, written
atomically, and a rerun resumes after the last finished one: ``trained.index``, then
``shard-00000/`` ... (each written to a temp folder and renamed), then the tuned
search defaults, then ``merged/``. manifest.json says ``complete: true`` last.
"""

from __future__ import annotations

import logging
import queue
import shutil
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, replace
from pathlib import Path

import numpy as np

from faceidx.errors import DataError
from faceidx.index.fill import LocalFiller, ShardJob
from faceidx.index.gpu import use_gpu
from faceidx.index.manifest import (
    MANIFEST_NAME,
    SHARD_INDEX,
    IndexManifest,
    ShardInfo,
    load_mean,
    shard_dir_name,
)
from faceidx.index.params import DEFAULT_MAX_TRAIN, params_for_spec
from faceidx.index.staging import staging_dir
from faceidx.index.store import ShardStore, identity_names_of, vector_dtype_of
from faceidx.index.train import install_trained, train_stage
from faceidx.io import Collection, open_collection
from faceidx.io.atomic import sha256_file
from faceidx.progress import Counter

log = logging.getLogger(__name__)


@dataclass
class BuildOptions:
    """How to build. index_spec: "auto" or a FAISS index_factory string."""

    index_spec: str = "auto"
    max_memory: int | None = None
    train_size: int | None = None
    shard_rows: int = 1_000_000
    batch_size: int = 65_536
    target_agreement: float = 0.995
    max_latency_ms: float | None = None  # single-query latency cap for the tuned defaults
    tune_queries: int = 1000
    center: bool = False
    merge: bool = False
    device: str = "auto"
    trained: str | Path | None = None  # a trained.index made elsewhere (e.g. on a GPU)
    vectors: str = "float32"  # dtype of the exact re-rank vectors on disk: float32 | float16
    seed: int = 0
    progress: bool = False
    engine: object = None  # fills shard folders: None = LocalFiller (this process);
    # faceidx.distributed.build.RayFiller fills them in Ray tasks (same files)


def build_index(collection: str | Path, out_dir: str | Path,
                options: BuildOptions | None = None) -> IndexManifest:
    """Build (or resume building) an index of `collection` in `out_dir`. See module doc."""
    from faceidx.index.lock import LOCK_NAME, writer_lock
    from faceidx.index.merge import merge_index
    from faceidx.index.tune import tune_search

    opts = options or BuildOptions()
    coll = open_collection(collection)
    out = Path(out_dir)
    if coll.num_rows == 0:
        raise DataError("collection is empty: nothing to index", coll.path)
    coll.verify()  # every byte against collection.json: damage the page CRCs miss
    fresh = not out.exists() or all(p.name == LOCK_NAME for p in out.iterdir())
    out.mkdir(parents=True, exist_ok=True)
    with writer_lock(out, "faceidx build"):
        manifest = _start_or_resume(coll, out, opts, fresh)
        _build_stages(coll, out, manifest, opts, merge_index, tune_search)
    return IndexManifest.load(out)


def _build_stages(coll: Collection, out: Path, manifest: IndexManifest, opts: BuildOptions,
                  merge_index, tune_search) -> None:
    gpu = use_gpu(opts.device)
    t0 = time.perf_counter()
    train = getattr(opts.engine, "train", None) or (lambda fn, *args: fn(*args))
    installed = install_trained(opts.trained, out, _params(manifest), coll.dim) \
        if opts.trained else {}
    sha, stats = train(train_stage, coll, out, _params(manifest), coll.dim, manifest.center,
                       opts.seed, opts.device)
    if manifest.trained_sha256 and manifest.trained_sha256 != sha:
        raise DataError("trained.index differs from the one this build started with",
                        out / "trained.index")
    manifest.trained_sha256 = sha
    if installed.get("trained_from"):
        manifest.build["train"] = installed
    elif not stats.get("reused"):
        manifest.build["train"] = stats
    manifest.save(out)
    add_shards(coll, out, manifest, opts, gpu=gpu)
    manifest.build["total_seconds"] = round(time.perf_counter() - t0, 3)
    manifest.collections[0]["done"] = True
    tune_search(out, manifest, opts.target_agreement, opts.tune_queries, opts.seed,
                max_latency_ms=opts.max_latency_ms)
    manifest.complete = not opts.merge
    manifest.save(out)
    if opts.merge:
        merge_index(out)
        manifest = IndexManifest.load(out)
        manifest.complete = True
        manifest.save(out)


def add_collection(index_dir: str | Path, collection: str | Path,
                   options: BuildOptions | None = None) -> IndexManifest:
    """Add a collection's faces to a finished index as new shards, without retraining.

    Takes the index's writer lock (faceidx/index/writer.py): the new shards are built
    beside the published index and published together in one manifest swap, so the
    index keeps serving throughout. Refuses another model or D (ModelMismatchError).
    Face ids that collide with indexed ones are renumbered from the index's next free
    face id (logged, and recorded in the shard's entry). A collection already added is
    recognised and not added again.
    """
    from faceidx.index.writer import open_writer

    opts = options or BuildOptions()
    with open_writer(index_dir, "faceidx add") as writer:
        writer.add_collection(collection, options=opts)
    return IndexManifest.load(index_dir)


def _params(manifest: IndexManifest):
    from faceidx.index.params import IndexParams

    return IndexParams(**manifest.params)


def _start_or_resume(coll: Collection, out: Path, opts: BuildOptions,
                     fresh: bool) -> IndexManifest:
    # a trained index made elsewhere needs no sample here: its list count is not lowered
    max_train = opts.train_size or (coll.num_rows if opts.trained else DEFAULT_MAX_TRAIN)
    params = replace(params_for_spec(opts.index_spec, coll.num_rows, coll.dim, opts.max_memory,
                                     max_train), vector_dtype=opts.vectors)
    if (out / MANIFEST_NAME).exists():
        manifest = IndexManifest.load(out)
        if manifest.complete:
            raise DataError("already holds a finished index; use `faceidx add` to enrol more "
                            "faces, or choose another --out", out)
        first = manifest.collections[0] if manifest.collections else {}
        if (first.get("path") != str(coll.path.resolve()) or first.get("rows") != coll.num_rows
                or first.get("key", collection_key(coll)) != collection_key(coll)
                or manifest.params.get("factory") != params.factory
                or vector_dtype_of(manifest) != params.vector_dtype):
            raise DataError("holds an unfinished build of another collection or index spec; "
                            "remove it or rerun with the same arguments", out)
        log.info("resuming the build in %s (%d shard(s) done)", out, len(manifest.shards))
        return manifest
    if not fresh:
        raise DataError("output directory exists, is not empty and is not an index", out)
    if params.fallback:
        log.warning("%s", params.fallback)
    for note in params.notes:
        log.info("%s", note)
    manifest = IndexManifest(meta=coll.meta, factory=params.factory, params=params.to_json(),
                             dim=coll.dim, center=opts.center)
    manifest.collections.append({"path": str(coll.path.resolve()), "rows": coll.num_rows,
                                 "key": collection_key(coll), "first_shard": 0, "done": False})
    manifest.save(out)
    return manifest


def collection_key(coll: Collection) -> str:
    """A fingerprint of a collection's content: its shards' names, rows and checksums
    (sizes and mtimes for a bare folder of parquet files). Recognises a collection
    already added, and a collection changed between an interrupted run and its rerun."""
    import hashlib

    h = hashlib.sha256(str(coll.path.resolve()).encode())
    for s in coll.shards:
        st = s.path.stat()
        h.update(f"|{s.path.name}|{s.rows}|{s.sha256 or (st.st_size, st.st_mtime_ns)}".encode())
    return h.hexdigest()[:32]


def add_shards(coll: Collection, out: Path, manifest: IndexManifest, opts: BuildOptions,
               gpu: bool = False, staged: list[ShardInfo] | None = None,
               save=None) -> None:
    """Add `coll` (manifest.collections[-1]) as shards of at most opts.shard_rows rows.

    Resumes after the shards already finished, whatever shard_rows they were cut with
    (the next shard starts at the first row not yet indexed). New shards go to
    `manifest.shards` (a build) or to `staged` (an add, published later by the
    caller); `save()` records progress after each shard (default: manifest.save).
    """
    entry = manifest.collections[-1]
    shards = manifest.shards if staged is None else staged
    mine = shards[entry["first_shard"]:] if staged is None else staged
    save = save or (lambda: manifest.save(out))
    n = coll.num_rows
    start = sum(s.rows for s in mine)
    bounds = list(range(start, n, opts.shard_rows)) + [n]
    if start >= n:
        return
    mean = load_mean(out, manifest.dim) if manifest.center else None
    renumber = entry.get("renumber_from")
    t_add = time.perf_counter()
    faiss_s = 0.0
    bar = Counter(opts.progress, total=n - start, desc="add", unit="vec")
    number0 = len(manifest.shards) + (0 if staged is None else len(staged))
    row0 = manifest.rows + (0 if staged is None else sum(x.rows for x in staged))
    jobs = []
    for s in range(len(bounds) - 1):
        folder = out / shard_dir_name(number0 + s)
        tmp = staging_dir(out, folder.name, create=False)
        jobs.append(ShardJob(number0 + s, bounds[s], bounds[s + 1],
                             row0 + bounds[s] - bounds[0], tmp))
    engine = opts.engine or LocalFiller()
    filled = engine.fill(coll, jobs, out / "trained.index", renumber, mean, opts.batch_size, gpu,
                         vector_dtype_of(manifest))
    for job, stats in filled:
        faiss_s += stats["faiss_seconds"]
        folder = out / shard_dir_name(job.number)
        view = manifest if staged is None else replace(manifest, shards=manifest.shards + staged)
        info = _finish_shard(coll, out, job.folder, folder, job.number, job.row0,
                             job.hi - job.lo, view, renumber)
        shards.append(info)
        manifest.next_face_id = max(manifest.next_face_id, info.face_id_max + 1)
        if staged is None:
            manifest.num_identities = _count_identities(out, manifest)
        # add_seconds: the whole streaming stage; faiss_add_seconds: inside FAISS add only
        manifest.build["add_seconds"] = round(time.perf_counter() - t_add, 3)
        manifest.build["faiss_add_seconds"] = round(faiss_s, 3)
        save()
        bar.update(job.hi - job.lo)
        log.info("shard %s: %d vectors", folder.name, info.rows)
    bar.close()


def prefetch(items: Iterator, depth: int = 2) -> Iterator:
    """Run `items` in a daemon thread, `depth` ahead: parquet decoding overlaps FAISS add.

    Errors raised by `items` re-raise in the consumer.
    """
    q: queue.Queue = queue.Queue(maxsize=depth)
    end = object()
    stop = threading.Event()

    def put(entry) -> bool:
        while not stop.is_set():
            try:
                q.put(entry, timeout=0.2)
                return True
            except queue.Full:
                continue
        return False

    def run() -> None:
        try:
            for item in items:
                if not put((item, None)):
                    return
            put((end, None))
        except BaseException as err:  # handed to the consumer
            put((end, err))

    threading.Thread(target=run, daemon=True, name="faceidx-prefetch").start()
    try:
        while True:
            item, err = q.get()
            if err is not None:
                raise err
            if item is end:
                return
            yield item
    finally:
        stop.set()


def _finish_shard(coll: Collection, out: Path, tmp: Path, folder: Path, number: int,
                  row0: int, rows: int, manifest: IndexManifest, renumber: int | None) -> ShardInfo:
    """Check face id uniqueness, checksum, and rename the shard's temp folder into place.

    Only earlier shards whose face-id range (manifest) overlaps this one's are opened:
    with ids assigned in order, none, whatever the number of shards.
    """
    sorted_ids = np.load(tmp / "sorted_face_ids.npy")
    dup = np.flatnonzero(sorted_ids[1:] == sorted_ids[:-1])
    if len(dup):
        shutil.rmtree(tmp)
        raise DataError(f"face_id {int(sorted_ids[dup[0]])} appears more than once; face ids "
                        "must be unique", coll.path)
    for prev in overlapping(manifest.shards, int(sorted_ids[0]), int(sorted_ids[-1])):
        store = ShardStore(out / prev.dir, prev.row_offset, prev.rows, manifest.dim)
        lo, hi = np.searchsorted(sorted_ids, [prev.face_id_min, prev.face_id_max + 1])
        hit = store.find(sorted_ids[lo:hi])
        if (hit >= 0).any():
            fid = int(sorted_ids[lo + np.flatnonzero(hit >= 0)[0]])
            shutil.rmtree(tmp)
            raise DataError(f"face_id {fid} appears more than once (already in {prev.dir}); "
                            "face ids must be unique", coll.path)
    sha = {name: sha256_file(tmp / name) for name in (SHARD_INDEX, "face_ids.npy")}
    names = identity_names_of(tmp)
    tmp.rename(folder)
    return ShardInfo(dir=folder.name, rows=rows, row_offset=row0,
                     face_id_min=int(sorted_ids[0]), face_id_max=int(sorted_ids[-1]),
                     identities=len(names), collection=str(coll.path.resolve()), sha256=sha,
                     renumbered_from=renumber)


def overlapping(shards: list[ShardInfo], lo: int, hi: int) -> list[ShardInfo]:
    """The shards whose face-id range [face_id_min, face_id_max] meets [lo, hi]."""
    return [s for s in shards if s.face_id_min <= hi and s.face_id_max >= lo
            and s.face_id_max >= 0]


def _count_identities(out: Path, manifest: IndexManifest) -> int:
    """Distinct identities of the manifest's shards, reading only shards not yet counted
    (faceidx/index/identities.py keeps the count's set beside the index)."""
    from faceidx.index.identities import count_identities

    return count_identities(out, manifest)
