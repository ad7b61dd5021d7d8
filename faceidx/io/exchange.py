"""Collections to and from the field's benchmark files: ann-benchmarks HDF5, big-ann .fbin.

    export_collection("faces", "faces.hdf5", test_size=1000, k=100)   # or "faces-bigann/"
    import_vectors("glove-100-angular.hdf5", "glove", split="train")

Export: `test_size` rows (seeded sample) become the test set, the rest the train set,
in collection order; exact ground truth (`k` nearest train rows of each test row) is
computed by a streamed scan of the written train set (groundtruth.py), so memory stays
at one block and the test set. Metric: `angular` for a normalised collection, else
`euclidean`. Writes go to a temp name renamed at the end: a killed export leaves no
half file under the final name.

Import: the chosen split(s) into a collection, read through vector_sources.py. Face ids, identities and sources come
from faceidx's extra columns when the file has them; otherwise ids are row numbers (test
rows follow the train rows) and the model is `unknown`. Angular data from other tools
is L2-normalised on the way in (faceidx ranks by cosine, which is what angular means).
"""

from __future__ import annotations

import json
import logging
import os
import shutil
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from faceidx.errors import DataError
from faceidx.io.atomic import atomic_path, tmp_path_for, write_json_atomic
from faceidx.io.groundtruth import block_rows_for, exact_knn
from faceidx.io.schema import UNKNOWN_MODEL, CollectionMeta
from faceidx.io.validate import check_vectors
from faceidx.io.vector_sources import (
    BIGANN_META,
    HDF5_SUFFIXES,
    open_vector_source,
)

log = logging.getLogger(__name__)

BATCH_ROWS = 65_536


@dataclass
class ExportSummary:
    path: str
    format: str
    train: int
    test: int
    k: int
    dim: int
    metric: str
    seconds: float

    def to_json(self) -> dict:
        return dict(self.__dict__)


def export_collection(collection: str | os.PathLike, out: str | os.PathLike,
                      test_size: int = 1000, k: int = 100, seed: int = 0,
                      batch_rows: int = BATCH_ROWS) -> ExportSummary:
    """Write `collection` as an ann-benchmarks HDF5 file (.h5/.hdf5) or a big-ann folder."""
    from faceidx.io import open_collection

    t0 = time.perf_counter()
    coll = open_collection(collection)
    n, dim = coll.num_rows, coll.dim
    if not 0 <= test_size < n:
        raise DataError(f"test size {test_size} must be below the collection's {n} rows",
                        coll.path)
    k = min(k, n - test_size) if test_size else 0
    test_pos = np.sort(np.random.default_rng(seed).choice(n, test_size, replace=False))
    metric = "angular" if coll.meta.normalized else "euclidean"
    out = Path(out)
    fmt = "hdf5" if out.suffix.lower() in HDF5_SUFFIXES else "fbin"
    sink = _Hdf5Sink if fmt == "hdf5" else _BigAnnSink
    with sink(out, n - test_size, dim, metric, coll.meta.to_json()) as s:
        test = _split_rows(coll, test_pos, s, batch_rows)
        s.write_test(*test)
        if test_size:
            ids, dist = exact_knn(test[0], s.train_blocks(block_rows_for(test_size)), k, metric)
            s.write_truth(ids, dist)
    return ExportSummary(str(out), fmt, n - test_size, test_size, k, dim, metric,
                         round(time.perf_counter() - t0, 3))


def _split_rows(coll, test_pos: np.ndarray, sink, batch_rows: int):
    """Stream the collection: train rows to `sink`, test rows gathered and returned."""
    parts: list[tuple] = []
    pos = 0
    for b in coll.iter_batches(batch_rows, columns=["face_id", "identity", "source", "embedding"]):
        rows = np.arange(pos, pos + len(b))
        is_test = np.isin(rows, test_pos)
        keep = ~is_test
        sink.append_train(b.embeddings[keep], b.face_ids[keep], b.identities[keep],
                          b.sources[keep])
        if is_test.any():
            parts.append((b.embeddings[is_test], b.face_ids[is_test], b.identities[is_test],
                          b.sources[is_test]))
        pos += len(b)
    if not parts:
        return (np.empty((0, coll.dim), np.float32), np.empty(0, np.int64),
                np.empty(0, object), np.empty(0, object))
    return tuple(np.concatenate(col) for col in zip(*parts, strict=True))


class _Hdf5Sink:
    def __init__(self, out: Path, n_train: int, dim: int, metric: str, meta: dict):
        from faceidx.io.hdf5 import AnnHdf5Writer

        self._atomic = atomic_path(out)
        tmp = self._atomic.__enter__()
        self.w = AnnHdf5Writer(tmp, n_train, dim, metric, meta)

    def __enter__(self):
        return self

    def append_train(self, *cols) -> None:
        self.w.append_train(*cols)

    def write_test(self, *cols) -> None:
        self.w.write_test(*cols)

    def train_blocks(self, rows: int) -> Iterator[np.ndarray]:
        return self.w.train_blocks(rows)

    def write_truth(self, ids, dist) -> None:
        self.w.write_truth(ids, dist)

    def __exit__(self, exc_type, exc, tb) -> None:
        self.w.__exit__(exc_type, exc, tb)
        self._atomic.__exit__(exc_type, exc, tb)


class _BigAnnSink:
    """A big-ann folder built under a temp name and renamed at the end."""

    def __init__(self, out: Path, n_train: int, dim: int, metric: str, meta: dict):
        from faceidx.io.fbin import FbinWriter

        if out.exists() and any(out.iterdir()):
            raise DataError("output folder exists and is not empty", out)
        self.out, self.dim = out, dim
        self.tmp = tmp_path_for(out)
        shutil.rmtree(self.tmp, ignore_errors=True)
        self.tmp.mkdir(parents=True)
        write_json_atomic(self.tmp / BIGANN_META, {"format": "faceidx-bigann", "metric": metric,
                                                   "meta": meta})
        self.base = FbinWriter(self.tmp / "base.fbin", n_train, dim)
        self.rows = _RowsWriter(self.tmp / "base.rows.parquet")

    def __enter__(self):
        return self

    def append_train(self, vectors, face_ids, identities, sources) -> None:
        self.base.append(vectors)
        self.rows.write(face_ids, identities, sources)

    def write_test(self, vectors, face_ids, identities, sources) -> None:
        from faceidx.io.fbin import write_fbin

        self.base.close()
        self.rows.close()
        write_fbin(self.tmp / "query.fbin", np.asarray(vectors, np.float32).reshape(-1, self.dim))
        rows = _RowsWriter(self.tmp / "query.rows.parquet")
        rows.write(face_ids, identities, sources)
        rows.close()

    def train_blocks(self, rows: int) -> Iterator[np.ndarray]:
        from faceidx.io.fbin import Fbin

        return (block for _, block in Fbin(self.tmp / "base.fbin").iter_vectors(rows))

    def write_truth(self, ids, dist) -> None:
        from faceidx.io.fbin import write_ibin

        write_ibin(self.tmp / "groundtruth.ibin", ids, dist)

    def __exit__(self, exc_type, exc, tb) -> None:
        if exc_type is not None:
            shutil.rmtree(self.tmp, ignore_errors=True)
            return
        if self.out.exists():
            self.out.rmdir()
        os.replace(self.tmp, self.out)


class _RowsWriter:
    """face_id / identity / source of each row, streamed to a parquet file."""

    def __init__(self, path: Path):
        import pyarrow as pa

        self.path = path
        self.schema = pa.schema([("face_id", pa.int64()), ("identity", pa.string()),
                                 ("source", pa.string())])
        self._w = None

    def write(self, face_ids, identities, sources) -> None:
        import pyarrow as pa
        import pyarrow.parquet as pq

        if self._w is None:
            self._w = pq.ParquetWriter(self.path, self.schema, compression="zstd")
        self._w.write_table(pa.table({"face_id": np.asarray(face_ids, np.int64),
                                      "identity": list(identities), "source": list(sources)},
                                     schema=self.schema))

    def close(self) -> None:
        if self._w is None:
            self.write([], [], [])
        self._w.close()


def import_vectors(path: str | os.PathLike, out_dir: str | os.PathLike, split: str = "train",
                   shard_rows: int = 1_000_000, batch_rows: int = BATCH_ROWS):
    """Write split ("train", "test" or "all") of a benchmark file as a collection."""
    from faceidx.io.writer import CollectionWriter

    if split not in ("train", "test", "all"):
        raise ValueError(f"split must be train, test or all, got {split!r}")
    source = open_vector_source(path)
    with source:
        splits = ["train", "test"] if split == "all" else [split]
        if not any(source.rows(s) for s in splits):
            raise DataError(f"the file holds no {split} vectors", path)
        meta = source.collection_meta()
        normalise = source.metric == "angular" and meta.model == UNKNOWN_MODEL
        meta = CollectionMeta(**{**meta.to_json(), "normalized": meta.normalized or normalise})
        with CollectionWriter(out_dir, meta, shard_rows=shard_rows,
                              buffer_rows=min(shard_rows, batch_rows)) as writer:
            for s in splits:
                first_id = source.rows("train") if s == "test" else 0
                for lo, block in source.iter_vectors(s, batch_rows):
                    check_vectors(block, source.path_of(s), lo)
                    if normalise:
                        block = block / np.linalg.norm(block, axis=1, keepdims=True)
                    hi = lo + len(block)
                    ids = source.column(s, "face_id", lo, hi)
                    writer.write(block.astype(np.float32, copy=False),
                                 identities=source.column(s, "identity", lo, hi),
                                 sources=source.column(s, "source", lo, hi),
                                 face_ids=ids if ids is not None else np.arange(lo, hi) + first_id)
    return writer.result


IMPORT_RECORD = "import.json"


def collection_from_vector_file(path: str | os.PathLike, work: str | os.PathLike) -> Path:
    """The train split of benchmark file `path` as a collection in `work`, imported once.

    `work`/import.json records the source (resolved path, size, mtime); a later call
    with the same unchanged file reuses the collection, a changed file is refused.
    """
    path, work = Path(path), Path(work)
    st = path.stat()
    size = st.st_size if path.is_file() else sum(p.stat().st_size for p in path.iterdir())
    record = {"source": str(path.resolve()), "bytes": size, "mtime_ns": st.st_mtime_ns,
              "split": "train"}
    done = work / IMPORT_RECORD
    if done.exists():
        try:
            old = json.loads(done.read_text())
        except (OSError, ValueError) as err:
            raise DataError(f"unreadable: {err}", done) from err
        if old != record:
            raise DataError(f"holds an import of {old.get('source')} (or an older version of "
                            "it); remove the folder or choose another --out", work)
        log.info("reusing %s, imported from %s", work, path)
        return work
    if work.exists():
        shutil.rmtree(work)  # an import killed before its record: start it again
    log.info("importing %s into the collection %s", path, work)
    import_vectors(path, work, split="train")
    write_json_atomic(done, record)
    return work
