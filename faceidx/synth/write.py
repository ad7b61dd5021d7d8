"""Write synthetic faces as a collection, resumably, and report their statistics.

    summary = write_synthetic("faces/", 100_000, 10, seed=0)

Generation of the next chunk runs in a worker thread while the current one is written
(numpy and arrow both release the GIL), so the two overlap on a multi-core machine.
"""

from __future__ import annotations

import json
import math
import os
import queue
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import TypeVar

import numpy as np

from faceidx.errors import DataError
from faceidx.io import CollectionWriter
from faceidx.io.atomic import write_json_atomic
from faceidx.synth.generator import CHUNK_ROWS, SyntheticFaces, sample_raw
from faceidx.synth.model import GENERATOR_VERSION, MODEL_NAME
from faceidx.synth.stats import report_stats, target_stats

T = TypeVar("T")
REQUEST_NAME = "synth.json"


def write_synthetic(out_dir: str | os.PathLike, identities: int, per_identity: float,
                    dim: int = 128, seed: int = 0, shard_rows: int = 1_000_000,
                    progress: bool = False, dtype: str = "float32", fixed_counts: bool = False,
                    resume: bool = False) -> dict:
    """Write a synthetic collection to `out_dir`; returns a JSON-able summary.

    See write_faces; this builds the generator from the arguments.
    """
    gen = SyntheticFaces(identities, per_identity, dim, seed, fixed_counts)
    return write_faces(gen, out_dir, shard_rows=shard_rows, progress=progress, dtype=dtype,
                       resume=resume)


def write_faces(gen: SyntheticFaces, out_dir: str | os.PathLike, shard_rows: int = 1_000_000,
                progress: bool = False, dtype: str = "float32", resume: bool = False) -> dict:
    """Write `gen`'s rows as a collection; returns a JSON-able summary.

    Memory: about two chunks (~CHUNK_ROWS rows each: one being generated, one being
    written) plus the writer's buffer, whatever the total. The request is kept in
    OUT/synth.json; with resume=True an unfinished run with the same request continues:
    whole blocks already on disk are skipped using the counts streams alone, and the
    vectors regenerate identically.
    """
    from faceidx.progress import Counter

    out = Path(out_dir)
    request = gen.request()
    _check_request(out / REQUEST_NAME, request, resume)
    total = gen.num_rows() if progress else None  # a pass over the counts streams
    started = time.perf_counter()
    with CollectionWriter(out, gen.meta(dtype), shard_rows=shard_rows, resume=resume,
                          validate=False) as writer:  # finite unit rows by construction
        write_json_atomic(out / REQUEST_NAME, request)
        done = writer.manifest.rows
        start_block, skip = _resume_point(gen, done)
        with Counter(progress, total=total, desc="synth", unit="rows") as bar:
            bar.update(done)
            named = ((c.vectors, gen.identity_names(c), gen.source_names(c))
                     for c in gen.chunks(CHUNK_ROWS, normalize=True, start_block=start_block))
            for vectors, names, sources in _prefetch(named):
                if skip:
                    names, sources, vectors = names[skip:], sources[skip:], vectors[skip:]
                    skip = 0
                # face_id = row number, so a resumed run equals an uninterrupted one
                writer.write(vectors, identities=names, sources=sources,
                             face_ids=np.arange(done, done + len(vectors), dtype=np.int64))
                done += len(vectors)
                bar.update(len(vectors))
    result = writer.result
    seconds = time.perf_counter() - started
    return {
        "path": str(out), "rows": result.rows, "rows_this_run": result.rows_this_run,
        **{k: request[k] for k in ("identities", "per_identity", "dim", "seed")},
        "shards": result.shards,
        "bytes": sum(p.stat().st_size for p in out.glob("part-*.parquet")),
        "seconds": round(seconds, 3),
        "rows_per_s": round(result.rows_this_run / seconds, 1) if seconds > 0 else None,
        "model": MODEL_NAME, "model_version": GENERATOR_VERSION, "dtype": dtype,
    }


def synth_report(gen: SyntheticFaces, max_rows: int = 20_000, max_identities: int = 2_000
                 ) -> dict:
    """Achieved statistics on a regenerated sample (sample_raw), raw and L2-normalised,
    next to the targets and the solved model parameters."""
    raw, labels = sample_raw(gen, max_rows, max_identities)
    stored = raw / np.linalg.norm(raw, axis=1, keepdims=True)
    return {"targets": target_stats(gen.model.targets), "raw": _json_safe(report_stats(raw, labels)),
            "stored": _json_safe(report_stats(stored, labels)), "model": gen.model.describe()}


def _json_safe(stats: dict) -> dict:
    """NaN (a statistic with no pairs, e.g. same-person cosine at one image each) as None."""
    return {k: None if isinstance(v, float) and math.isnan(v) else v for k, v in stats.items()}


def _check_request(path: Path, request: dict, resume: bool) -> None:
    if not (resume and path.exists()):
        return
    try:
        previous = json.loads(path.read_text())
    except (OSError, ValueError) as err:
        raise DataError(f"unreadable synth request: {err}", path) from err
    if previous != request:
        changed = sorted(k for k in request if previous.get(k) != request[k])
        raise DataError(f"cannot resume: this run differs in {', '.join(changed)} "
                        f"(on disk: {previous})", path)


def _prefetch(items: Iterator[T]) -> Iterator[T]:
    """Iterate `items` produced one step ahead in a worker thread, so that generating the
    next chunk (numpy, GIL released) overlaps writing this one (arrow, GIL released)."""
    done = object()
    slots: queue.Queue = queue.Queue(maxsize=1)
    stop = threading.Event()

    def produce() -> None:
        try:
            for item in items:
                if stop.is_set():
                    return
                slots.put(item)
            slots.put(done)
        except BaseException as err:  # handed to the consumer, raised there
            slots.put(_Failure(err))

    worker = threading.Thread(target=produce, name="synth-prefetch", daemon=True)
    worker.start()
    try:
        while (item := slots.get()) is not done:
            if isinstance(item, _Failure):
                raise item.error
            yield item
    finally:
        stop.set()
        while worker.is_alive():  # unblock a producer waiting on a full queue
            try:
                slots.get(timeout=0.1)
            except queue.Empty:
                pass
        worker.join()


@dataclass
class _Failure:
    error: BaseException


def _resume_point(gen: SyntheticFaces, done: int) -> tuple[int, int]:
    """(first block to generate, rows of it already written) for `done` rows on disk."""
    block, rows = 0, 0
    while block < gen.num_blocks:
        n = int(gen.block_counts(block).sum())
        if rows + n > done:
            break
        rows += n
        block += 1
    return block, done - rows
