"""Rewrite a collection without some rows (erasure): `faceidx erase --collection C`.

    dropped = drop_rows("faces/", lambda batch: np.isin(batch.identities, ["person_17"]))

Each shard file holding a dropped row is written again without it (same schema and
writer options, page checksums on), the old file's bytes are overwritten with zeros
and the new file renamed over it; collection.json is updated last (rows, bytes,
checksums). A shard left with no row stays as an empty file, so shard names keep
their numbering. ``failures.jsonl`` records of dropped sources are removed too.
"""

from __future__ import annotations

import json
import os
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from faceidx.io.atomic import atomic_path, sha256_file, tmp_path_for
from faceidx.io.manifest import MANIFEST_NAME
from faceidx.io.reader import EmbeddingBatch, open_collection
from faceidx.io.writer import parquet_options

FAILURES_NAME = "failures.jsonl"


def drop_rows(path: str | os.PathLike, drop: Callable[[EmbeddingBatch], np.ndarray],
              failure_paths: Callable[[str], bool] | None = None) -> int:
    """Remove the rows for which `drop(batch)` is True; returns how many were removed.

    failure_paths: a predicate on failures.jsonl's "path" values to remove as well.
    """
    coll = open_collection(path)
    manifest = coll.manifest
    removed = 0
    for no, shard in enumerate(coll.shards):
        pf = pq.ParquetFile(shard.path, page_checksum_verification=True)
        masks, offset = [], 0
        for rb in pf.iter_batches(batch_size=65_536):
            batch = coll._to_batch(rb, shard.path, offset, validate=False)
            masks.append(np.asarray(drop(batch), bool))
            offset += rb.num_rows
        mask = np.concatenate(masks) if masks else np.zeros(0, bool)
        if not mask.any():
            continue
        removed += int(mask.sum())
        table = pf.read().filter(pa.array(~mask))
        extra = [n for n in table.schema.names if n not in ("face_id", "identity", "source",
                                                            "embedding")]
        tmp = tmp_path_for(shard.path)
        with pq.ParquetWriter(tmp, table.schema, **parquet_options(extra)) as w:
            w.write_table(table, row_group_size=65_536)
        with open(tmp, "rb+") as fh:
            os.fsync(fh.fileno())
        with open(shard.path, "r+b") as old:  # the replaced bytes are wiped, not just unlinked
            os.replace(tmp, shard.path)
            _zero_file(old)
        if manifest is not None:
            entry = manifest.shards[no]
            entry.rows = table.num_rows
            entry.bytes = shard.path.stat().st_size
            entry.sha256 = sha256_file(shard.path)
            fid = table.column("face_id")
            entry.face_id_min = int(pc.min(fid).as_py()) if table.num_rows else 0
            entry.face_id_max = int(pc.max(fid).as_py()) if table.num_rows else -1
            manifest.save(Path(path) / MANIFEST_NAME)
    if failure_paths is not None and Path(path).is_dir():
        removed += drop_failure_records(Path(path) / FAILURES_NAME, failure_paths)
    return removed


def _zero_file(fh) -> None:
    """Overwrite an open file's bytes with zeros (fsynced)."""
    size = os.fstat(fh.fileno()).st_size
    fh.seek(0)
    for at in range(0, size, 1 << 20):
        fh.write(b"\0" * min(1 << 20, size - at))
    fh.flush()
    os.fsync(fh.fileno())


def drop_failure_records(path: Path, gone: Callable[[str], bool]) -> int:
    """Rewrite a failures.jsonl (atomically) without the records whose "path" `gone`
    accepts; returns how many were dropped. Unparsable lines are kept as they are."""
    if not path.exists():
        return 0
    keep, dropped = [], 0
    for line in path.read_text(errors="replace").splitlines():
        try:
            row = json.loads(line)
        except ValueError:
            keep.append(line)
            continue
        if isinstance(row, dict) and isinstance(row.get("path"), str) and gone(row["path"]):
            dropped += 1
        else:
            keep.append(line)
    if dropped:
        with atomic_path(path) as tmp:
            tmp.write_text("".join(x + "\n" for x in keep))
    return dropped


__all__ = ["drop_failure_records", "drop_rows"]
