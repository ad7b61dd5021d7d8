"""CollectionWriter: stream embeddings into parquet shards with an atomic finish.

    with CollectionWriter(out, CollectionMeta(model="dlib-resnet-v1", dim=128)) as w:
        w.write(vectors, identities=names, sources=paths)
    print(w.result.rows)

Rows are buffered (bounded by `buffer_rows`), written as row groups, and a shard is
closed and renamed from its temp name when it reaches `shard_rows`. `collection.json`
is rewritten after every finished shard (``complete: false``) and last of all on a
clean exit (``complete: true``). A crash leaves only finished shards; reopening with
``resume=True`` continues numbering shards and face ids where they stopped.
"""

from __future__ import annotations

import logging
import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from faceidx.errors import DataError
from faceidx.io.atomic import sha256_file, tmp_path_for, write_json_atomic
from faceidx.io.manifest import MANIFEST_NAME, CollectionManifest, ShardEntry, shard_name
from faceidx.io.schema import CollectionMeta, make_schema
from faceidx.io.validate import check_face_ids, check_vectors

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class WriteResult:
    """What a writer produced: rows and shards in total (including resumed ones)."""

    path: Path
    rows: int
    shards: int
    rows_this_run: int


class CollectionWriter:
    """Context manager writing a collection directory. See the module docstring.

    Args:
        out_dir: the collection directory (created if missing).
        meta: model, D, dtype (float32 or float16) and normalisation shared by all rows.
        shard_rows: rows per shard file before rolling over to the next.
        buffer_rows: rows held in memory before a row group is written.
        extra_fields: optional extra arrow columns (e.g. the embedder's box and score).
        resume: continue an unfinished (or finished) collection instead of refusing it.
        validate: check every vector for NaN/inf/zero norm (on by default).
    """

    def __init__(
        self,
        out_dir: str | os.PathLike,
        meta: CollectionMeta,
        *,
        shard_rows: int = 1_000_000,
        buffer_rows: int = 65_536,
        extra_fields: tuple[pa.Field, ...] = (),
        resume: bool = False,
        validate: bool = True,
    ):
        if shard_rows <= 0 or buffer_rows <= 0:
            raise ValueError("shard_rows and buffer_rows must be positive")
        self.out_dir = Path(out_dir)
        self.meta = meta
        self.shard_rows = shard_rows
        self.buffer_rows = min(buffer_rows, shard_rows)
        self.schema = make_schema(meta, tuple(extra_fields))
        self.extra_names = [f.name for f in extra_fields]
        self.validate = validate
        self.result: WriteResult | None = None

        self.out_dir.mkdir(parents=True, exist_ok=True)
        manifest_path = self.out_dir / MANIFEST_NAME
        if manifest_path.exists():
            if not resume:
                raise DataError(
                    "a collection already exists here; pass resume=True (or --resume) to "
                    "continue it, or choose another output directory",
                    self.out_dir,
                )
            self.manifest = CollectionManifest.load(manifest_path)
            self.manifest.meta.check_compatible(meta, manifest_path)
            if self.manifest.extra_columns != self.extra_names:
                raise DataError(
                    f"extra columns {self.extra_names} differ from the existing "
                    f"{self.manifest.extra_columns}",
                    manifest_path,
                )
        else:
            stray = sorted(self.out_dir.glob("part-*.parquet"))
            if stray:
                raise DataError(
                    f"holds {len(stray)} shard file(s) but no {MANIFEST_NAME}; "
                    "refusing to mix collections",
                    self.out_dir,
                )
            self.manifest = CollectionManifest(meta=meta, extra_columns=self.extra_names)
        self.manifest.complete = False
        self._remove_stale_temps()

        self._buffer: list[pa.RecordBatch] = []
        self._buffered = 0
        self._writer: pq.ParquetWriter | None = None
        self._shard_rows_written = 0
        self._shard_fid_range: list[int] = []
        self._rows_this_run = 0
        self._closed = False

    # -- public API -------------------------------------------------------------------

    @property
    def next_face_id(self) -> int:
        """The face_id the next row gets when `write` assigns ids."""
        return self.manifest.next_face_id

    def write(
        self,
        embeddings: np.ndarray,
        identities: list | np.ndarray | None = None,
        sources: list | np.ndarray | None = None,
        face_ids: np.ndarray | None = None,
        extra: dict[str, list | np.ndarray | pa.Array] | None = None,
    ) -> np.ndarray:
        """Append rows; returns their face_ids (assigned sequentially when not given).

        embeddings: float array of shape (n, D). identities, sources: length-n
        sequences of str or None. face_ids: optional int64 array; the caller then
        guarantees uniqueness. extra: arrays for the extra columns given at creation.
        """
        if self._closed:
            raise RuntimeError("writer is closed")
        emb = np.asarray(embeddings)
        if emb.ndim != 2 or emb.shape[1] != self.meta.dim:
            raise DataError(
                f"expected embeddings of shape (n, {self.meta.dim}), got {emb.shape}", self.out_dir
            )
        n = emb.shape[0]
        if n == 0:
            return np.empty(0, dtype=np.int64)
        if self.validate:
            check_vectors(emb, self.out_dir, row_offset=self.manifest.rows + self._buffered)
        if face_ids is None:
            fids = np.arange(self.next_face_id, self.next_face_id + n, dtype=np.int64)
        else:
            fids = np.asarray(face_ids, dtype=np.int64)
            if fids.shape != (n,):
                raise DataError(f"face_ids has shape {fids.shape}, expected ({n},)", self.out_dir)
            check_face_ids(fids, self.out_dir, self.manifest.rows + self._buffered)
        self.manifest.next_face_id = max(self.next_face_id, int(fids.max()) + 1)

        columns = {
            "face_id": pa.array(fids, pa.int64()),
            "identity": _string_column(identities, n, "identities"),
            "source": _string_column(sources, n, "sources"),
            "embedding": _embedding_column(emb, self.schema.field("embedding").type),
        }
        extra = extra or {}
        unknown = set(extra) - set(self.extra_names)
        if unknown:
            raise DataError(f"unknown extra column(s) {sorted(unknown)}", self.out_dir)
        for name in self.extra_names:
            if name not in extra:
                raise DataError(f"extra column {name!r} not given", self.out_dir)
            columns[name] = pa.array(extra[name], self.schema.field(name).type)
        batch = pa.RecordBatch.from_arrays(list(columns.values()), schema=self.schema)
        self._buffer.append(batch)
        self._buffered += n
        self._rows_this_run += n
        while self._buffered >= self.buffer_rows:
            self._flush(self.buffer_rows)
        return fids

    def close(self) -> WriteResult:
        """Flush, finish the last shard and mark the collection complete."""
        if not self._closed:
            while self._buffered:
                self._flush(self._buffered)
            self._finish_shard()
            self.manifest.complete = True
            self.manifest.save(self.out_dir / MANIFEST_NAME)
            self._closed = True
            self.result = WriteResult(
                self.out_dir, self.manifest.rows, len(self.manifest.shards), self._rows_this_run
            )
        assert self.result is not None
        return self.result

    def abort(self) -> None:
        """Drop the unfinished shard and buffer; finished shards stay (resumable)."""
        if self._closed:
            return
        if self._writer is not None:
            self._writer.close()
            self._writer = None
        tmp = tmp_path_for(self._current_shard_path())
        if tmp.exists():
            tmp.unlink()
        self._buffer, self._buffered = [], 0
        if self.manifest.shards or (self.out_dir / MANIFEST_NAME).exists():
            self.manifest.save(self.out_dir / MANIFEST_NAME)
        self._closed = True

    def __enter__(self) -> CollectionWriter:
        return self

    def __exit__(self, exc_type, exc, tb) -> None:
        if exc_type is None:
            self.close()
        else:
            self.abort()

    # -- internals --------------------------------------------------------------------

    def _current_shard_path(self) -> Path:
        return self.out_dir / shard_name(len(self.manifest.shards))

    def _remove_stale_temps(self) -> None:
        for tmp in self.out_dir.glob(".part-*.tmp"):
            log.info("removing unfinished shard %s", tmp)
            tmp.unlink()

    def _flush(self, rows: int) -> None:
        """Write up to `rows` buffered rows, rolling shards over at shard_rows."""
        table = pa.Table.from_batches(self._buffer, schema=self.schema)
        while rows > 0:
            room = self.shard_rows - self._shard_rows_written
            take = min(rows, room)
            part, table = table.slice(0, take), table.slice(take)
            if self._writer is None:
                self._writer = pq.ParquetWriter(
                    tmp_path_for(self._current_shard_path()), self.schema,
                    **parquet_options(self.extra_names))
            self._writer.write_table(part, row_group_size=self.buffer_rows)
            fid = part.column("face_id")
            self._shard_fid_range.append(int(pc.min(fid).as_py()))
            self._shard_fid_range.append(int(pc.max(fid).as_py()))
            self._shard_rows_written += take
            self._buffered -= take
            rows -= take
            if self._shard_rows_written >= self.shard_rows:
                self._finish_shard()
        self._buffer = table.to_batches() if table.num_rows else []

    def _finish_shard(self) -> None:
        if self._writer is None:
            return
        self._writer.close()
        self._writer = None
        final = self._current_shard_path()
        tmp = tmp_path_for(final)
        with open(tmp, "rb+") as fh:
            os.fsync(fh.fileno())
        os.replace(tmp, final)
        self.manifest.shards.append(
            ShardEntry(
                file=final.name,
                rows=self._shard_rows_written,
                bytes=final.stat().st_size,
                sha256=sha256_file(final),
                face_id_min=min(self._shard_fid_range),
                face_id_max=max(self._shard_fid_range),
            )
        )
        self._shard_rows_written = 0
        self._shard_fid_range = []
        self.manifest.save(self.out_dir / MANIFEST_NAME)


def parquet_options(extra_names: list[str]) -> dict:
    """ParquetWriter options of every collection shard: zstd strings, plain float vectors
    (memory-mappable), and a CRC32 per page so that a flipped bit is an error on read."""
    return {"compression": {"face_id": "zstd", "identity": "zstd", "source": "zstd",
                            "embedding": "none", **{n: "zstd" for n in extra_names}},
            "use_dictionary": ["identity"], "write_statistics": ["face_id"],
            "write_page_checksum": True}


def _string_column(values, n: int, what: str) -> pa.Array:
    if values is None:
        return pa.nulls(n, pa.string())
    arr = values if isinstance(values, pa.Array) else pa.array(list(values) if not isinstance(values, np.ndarray) else values, pa.string(), from_pandas=True)
    if len(arr) != n:
        raise DataError(f"{what} has {len(arr)} entries for {n} embeddings")
    return arr


def _embedding_column(emb: np.ndarray, list_type: pa.FixedSizeListType) -> pa.Array:
    np_dtype = np.float16 if pa.types.is_float16(list_type.value_type) else np.float32
    flat = np.ascontiguousarray(emb, dtype=np_dtype).reshape(-1)
    return pa.FixedSizeListArray.from_arrays(pa.array(flat), type=list_type)


__all__ = ["CollectionWriter", "WriteResult", "write_json_atomic"]
