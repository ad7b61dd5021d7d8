"""Per-shard row store: face ids, identities, sources and exact vectors, memory-mapped.

A shard directory holds, row-aligned (row r of the shard = FAISS id row_offset + r):

    face_ids.npy          int64 (n,)        the collection's face ids
    vectors.npy           float32 (n, D)    unit vectors, for exact re-ranking (float16 when
                                            built with --vectors float16: half the disk and
                                            page cache; read back as float32)
    identity_codes.npy    int32 (n,)        index into the shard's identity names, -1 = none
    identity_names.bin    utf-8 bytes       concatenated names
    identity_offsets.npy  int64 (k+1,)      name i = bin[off[i]:off[i+1]]
    sources.bin / source_offsets.npy        same for each row's source
    sorted_face_ids.npy / sorted_rows.npy   face ids ascending, and their local rows

An erased row keeps its slot (so FAISS ids, which are global rows, stay stable) but
holds nothing: face id -1, identity code -1, a zero vector, an empty source; it is
absent from the sorted arrays and from every FAISS part (faceidx/index/erase.py).

Everything opens with ``np.load(mmap_mode="r")``: lookups touch only the rows asked
for, whatever the gallery size.
"""

from __future__ import annotations

import mmap
import os
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from faceidx.errors import DataError
from faceidx.io.fs import load_npy

VECTOR_DTYPES = ("float32", "float16")


def vector_dtype_of(manifest) -> str:
    """The dtype an index stores its exact vectors in (IndexManifest or its JSON dict)."""
    params = manifest.params if hasattr(manifest, "params") else manifest.get("params", {})
    return params.get("vector_dtype", "float32")


FILES = ("face_ids.npy", "vectors.npy", "identity_codes.npy", "identity_names.bin",
         "identity_offsets.npy", "sources.bin", "source_offsets.npy", "sorted_face_ids.npy",
         "sorted_rows.npy")


class StringBlobWriter:
    """Append strings to `<name>.bin`; `finish()` writes `<prefix>_offsets.npy`."""

    def __init__(self, blob: Path, offsets: Path):
        self._fh = open(blob, "wb")
        self._offsets_path = offsets
        self._offsets = [np.zeros(1, np.int64)]
        self._end = 0

    def extend(self, values: Sequence[str | None]) -> None:
        """Append strings (None is stored as the empty string), vectorised with arrow."""
        arr = pa.array(values, type=pa.large_string(), from_pandas=True)
        if arr.null_count:
            arr = pc.fill_null(arr, "")
        n = len(arr)
        _, offsets_buf, data_buf = arr.buffers()
        offsets = np.frombuffer(offsets_buf, np.int64)[arr.offset:arr.offset + n + 1]
        start = int(offsets[0]) if n else 0
        end = int(offsets[-1]) if n else 0
        if end > start:
            self._fh.write(memoryview(data_buf)[start:end])
        self._offsets.append(offsets[1:] - start + self._end)
        self._end += end - start

    def finish(self) -> None:
        self._fh.close()
        np.save(self._offsets_path, np.concatenate(self._offsets))

    def abort(self) -> None:
        self._fh.close()


class ShardStoreWriter:
    """Writes one shard's row store into `folder` (a temp dir the caller renames)."""

    def __init__(self, folder: Path, rows: int, dim: int, vector_dtype: str = "float32"):
        if vector_dtype not in VECTOR_DTYPES:
            raise ValueError(f"vector dtype must be one of {', '.join(VECTOR_DTYPES)}, "
                             f"got {vector_dtype!r}")
        self.folder = folder
        self.rows = rows
        self.filled = 0
        self.vectors = np.lib.format.open_memmap(folder / "vectors.npy", mode="w+",
                                                 dtype=np.dtype(vector_dtype), shape=(rows, dim))
        self.face_ids = np.empty(rows, np.int64)
        self.codes = np.empty(rows, np.int32)
        self._names: dict[str, int] = {}
        self._sources = StringBlobWriter(folder / "sources.bin", folder / "source_offsets.npy")

    def append(self, face_ids: np.ndarray, identities: np.ndarray | None,
               sources: np.ndarray | None, vectors: np.ndarray) -> None:
        n = len(face_ids)
        lo, hi = self.filled, self.filled + n
        if hi > self.rows:
            raise ValueError(f"shard store overflow: {hi} > {self.rows} rows")
        self.vectors[lo:hi] = vectors
        self.face_ids[lo:hi] = face_ids
        if identities is None:
            self.codes[lo:hi] = -1
        else:
            enc = pa.array(identities, type=pa.string(), from_pandas=True).dictionary_encode()
            names = self._names
            lut = np.asarray([names.setdefault(x, len(names)) for x in enc.dictionary.to_pylist()]
                             + [-1], np.int32)
            idx = enc.indices.fill_null(-1).to_numpy(zero_copy_only=False)
            self.codes[lo:hi] = lut[idx]
        self._sources.extend([None] * n if sources is None else sources)
        self.filled = hi

    @property
    def identity_names(self) -> list[str]:
        return list(self._names)

    def finish(self) -> None:
        if self.filled != self.rows:
            raise ValueError(f"shard store holds {self.filled} rows, expected {self.rows}")
        self.vectors.flush()
        del self.vectors
        self._sources.finish()
        np.save(self.folder / "face_ids.npy", self.face_ids)
        np.save(self.folder / "identity_codes.npy", self.codes)
        names = StringBlobWriter(self.folder / "identity_names.bin",
                                 self.folder / "identity_offsets.npy")
        names.extend(self.identity_names)
        names.finish()
        order = np.argsort(self.face_ids, kind="stable")
        np.save(self.folder / "sorted_face_ids.npy", self.face_ids[order])
        np.save(self.folder / "sorted_rows.npy", order.astype(np.int64))

    def abort(self) -> None:
        self._sources.abort()


def _load(path: Path) -> np.ndarray:
    try:
        return load_npy(path, mmap_mode="r")
    except (OSError, ValueError) as err:
        raise DataError(f"cannot read index row store file: {err}", path) from err


class StringBlob:
    """Read strings i from a blob + offsets pair, memory-mapped."""

    def __init__(self, blob: Path, offsets: Path):
        self.path = blob
        self.offsets = _load(offsets)
        if self.offsets.ndim != 1 or not len(self.offsets) or self.offsets.dtype.kind != "i":
            raise DataError("string offsets must be a non-empty 1-D integer array", offsets)
        if blob.stat().st_size == 0:
            self.blob = np.empty(0, np.uint8)
        else:
            self.blob = np.memmap(blob, dtype=np.uint8, mode="r")
        if int(self.offsets[-1]) != len(self.blob):
            raise DataError("string blob is shorter than its offsets say (truncated)", blob)

    def __len__(self) -> int:
        return len(self.offsets) - 1

    def all(self) -> list[str]:
        """Every string, decoded in one pass; bad offsets or UTF-8 raise DataError."""
        off = np.asarray(self.offsets, np.int64)
        if len(off) > 1 and (off[0] < 0 or (np.diff(off) < 0).any() or off[-1] > len(self.blob)):
            raise DataError("string offsets are not ascending within the blob", self.path)
        data = bytes(self.blob)
        try:
            return [data[a:b].decode() for a, b in zip(off[:-1], off[1:], strict=True)]
        except UnicodeDecodeError as err:
            raise DataError(f"holds a string that is not valid UTF-8 ({err.reason})",
                            self.path) from err

    def get(self, i: int) -> str:
        a, b = int(self.offsets[i]), int(self.offsets[i + 1])
        if not 0 <= a <= b <= len(self.blob):
            raise DataError(f"string {i} has offsets {a}..{b} outside the blob", self.path)
        try:
            return bytes(self.blob[a:b]).decode()
        except UnicodeDecodeError as err:
            raise DataError(f"string {i} is not valid UTF-8 ({err.reason})", self.path) from err


class ShardStore:
    """Read side of one shard's row store."""

    def __init__(self, folder: Path, row_offset: int, rows: int, dim: int):
        if folder.is_symlink() or any((folder / f).is_symlink() for f in (*FILES, "index.faiss")):
            raise DataError("is (or holds) a symbolic link; an index's files must lie inside "
                            "it", folder)
        self.folder = folder
        self.row_offset = row_offset
        self.rows = rows
        self.face_ids = _load(folder / "face_ids.npy")
        self.vectors = _load(folder / "vectors.npy")
        self.codes = _load(folder / "identity_codes.npy")
        self.sorted_face_ids = _load(folder / "sorted_face_ids.npy")
        self.sorted_rows = _load(folder / "sorted_rows.npy")
        self.names = StringBlob(folder / "identity_names.bin", folder / "identity_offsets.npy")
        self.sources = StringBlob(folder / "sources.bin", folder / "source_offsets.npy")
        for name, arr in (("face_ids.npy", self.face_ids), ("identity_codes.npy", self.codes)):
            if arr.ndim != 1 or len(arr) != rows:
                raise DataError(f"holds {len(arr)} rows, manifest says {rows}", folder / name)
        for name, arr in (("sorted_face_ids.npy", self.sorted_face_ids),
                          ("sorted_rows.npy", self.sorted_rows)):
            if arr.ndim != 1 or len(arr) > rows or len(arr) != len(self.sorted_face_ids):
                raise DataError(f"holds {len(arr)} entries for a shard of {rows} rows",
                                folder / name)
        for name, arr, kind in (("face_ids.npy", self.face_ids, "i"),
                                ("identity_codes.npy", self.codes, "i"),
                                ("sorted_face_ids.npy", self.sorted_face_ids, "i"),
                                ("sorted_rows.npy", self.sorted_rows, "i"),
                                ("vectors.npy", self.vectors, "f")):
            if arr.dtype.kind != kind:
                raise DataError(f"has dtype {arr.dtype}, expected {'integers' if kind == 'i' else 'floats'}",
                                folder / name)
        if self.vectors.dtype.name not in VECTOR_DTYPES:
            raise DataError(f"has dtype {self.vectors.dtype}, expected float32 or float16",
                            folder / "vectors.npy")
        if self.vectors.shape != (rows, dim):
            raise DataError(f"vectors have shape {self.vectors.shape}, expected {(rows, dim)}",
                            folder / "vectors.npy")
        self.names.all()  # valid UTF-8 and offsets: a few bytes per identity
        if rows:  # identity codes in range: 4 bytes a row, read once at open
            lo, hi = int(np.min(self.codes)), int(np.max(self.codes))
            if lo < -1 or hi >= len(self.names):
                raise DataError(f"holds identity codes {lo}..{hi}, outside -1..{len(self.names) - 1}",
                                folder / "identity_codes.npy")
        if len(self.sources) != rows:
            raise DataError(f"holds {len(self.sources)} sources, expected {rows}",
                            folder / "source_offsets.npy")

    def vector_blocks(self, block_rows: int = 65_536):
        """Yield (local row offset, float32 block) read with plain file I/O.

        Unlike slicing the memmap, this leaves no file pages mapped into the process,
        so scanning every vector does not inflate the resident set. float16 files are
        widened block by block.
        """
        dim = self.vectors.shape[1]
        dtype = self.vectors.dtype
        with open(self.folder / "vectors.npy", "rb") as fh:
            for lo in range(0, self.rows, block_rows):
                count = min(block_rows, self.rows - lo)
                fh.seek(self.vectors.offset + lo * dim * dtype.itemsize)
                block = np.fromfile(fh, dtype=dtype, count=count * dim)
                if len(block) != count * dim:
                    raise DataError("vectors file is truncated", self.folder / "vectors.npy")
                yield lo, block.reshape(count, dim).astype(np.float32, copy=False)

    @property
    def live(self) -> int:
        """Rows not erased (the face ids this shard answers for)."""
        return len(self.sorted_face_ids)

    def find(self, face_ids: np.ndarray) -> np.ndarray:
        """Local rows of `face_ids` (-1 where absent, erased, or negative)."""
        face_ids = np.asarray(face_ids, np.int64)
        n = self.live
        if not n:
            return np.full(face_ids.shape, -1, np.int64)
        pos = np.minimum(np.searchsorted(self.sorted_face_ids, face_ids), n - 1)
        hit = (self.sorted_face_ids[pos] == face_ids) & (face_ids >= 0)
        rows = np.where(hit, self.sorted_rows[pos], -1).astype(np.int64)
        if hit.any() and (rows[hit].min() < 0 or rows[hit].max() >= self.rows):
            raise DataError(f"holds a row outside 0..{self.rows - 1}", self.folder / "sorted_rows.npy")
        return rows

    def identity(self, row: int) -> str | None:
        code = int(self.codes[row])
        if code < -1 or code >= len(self.names):
            raise DataError(f"row {row} has identity code {code}, outside -1..{len(self.names) - 1}",
                            self.folder / "identity_codes.npy")
        return None if code < 0 else self.names.get(code)

    def source(self, row: int) -> str | None:
        s = self.sources.get(row)
        return s or None


class RowStore:
    """All shards' row stores, addressed by global row (= the FAISS id)."""

    def __init__(self, shards: list[ShardStore]):
        self.shards = shards
        self.starts = np.asarray([s.row_offset for s in shards] + [sum(s.rows for s in shards)],
                                 dtype=np.int64)
        # each shard's face-id range (an empty shard: lo > hi), so that a look-up opens only
        # the shards that may hold an id, whatever their number
        live = [len(s.sorted_face_ids) > 0 for s in shards]
        self.id_lo = np.asarray([int(s.sorted_face_ids[0]) if ok else 1
                                 for s, ok in zip(shards, live, strict=True)], np.int64)
        self.id_hi = np.asarray([int(s.sorted_face_ids[-1]) if ok else 0
                                 for s, ok in zip(shards, live, strict=True)], np.int64)

    @property
    def rows(self) -> int:
        return int(self.starts[-1])

    def locate(self, rows: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """(shard number, local row) of global rows (all must be valid)."""
        shard = np.searchsorted(self.starts, rows, side="right") - 1
        return shard, rows - self.starts[shard]

    def gather(self, rows: np.ndarray, what: str) -> np.ndarray:
        """Gather `face_ids` or `vectors` (always float32) for flat global `rows` (valid, >= 0)."""
        rows = np.asarray(rows, np.int64)
        first = getattr(self.shards[0], what)
        out = np.empty((len(rows),) + first.shape[1:], np.float32 if what == "vectors" else first.dtype)
        order = np.argsort(rows)  # read each memory-mapped file in ascending order
        ordered = rows[order]
        cuts = np.searchsorted(ordered, self.starts)
        for s, shard in enumerate(self.shards):
            a, b = cuts[s], cuts[s + 1]
            if a < b:
                out[order[a:b]] = getattr(shard, what)[ordered[a:b] - self.starts[s]]
        return out

    def release(self) -> None:
        """Unmap the vector pages this process touched (they stay in the page cache).

        Re-ranking reads rows scattered over every vectors.npy; each touched 4 KB page
        stays mapped and counts in the process's RSS (3.2 GB after tuning 10M). Long
        scans (build-time tuning) call this between steps.
        """
        for shard in self.shards:
            mapping = getattr(shard.vectors, "_mmap", None)
            if mapping is not None and hasattr(mmap, "MADV_DONTNEED"):
                mapping.madvise(mmap.MADV_DONTNEED)

    def rows_of(self, face_ids: np.ndarray) -> np.ndarray:
        """Global rows of `face_ids` (-1 where a face id is not in the index).

        Only shards whose face-id range holds one of the ids are searched: with ids
        assigned in order, one shard per id, whatever the number of shards.
        """
        face_ids = np.asarray(face_ids, np.int64)
        out = np.full(face_ids.shape, -1, np.int64)
        flat, ids = out.reshape(-1), face_ids.reshape(-1)
        order = np.argsort(ids, kind="stable")
        ordered = ids[order]
        first = np.searchsorted(ordered, self.id_lo, side="left")
        last = np.searchsorted(ordered, self.id_hi, side="right")
        for i in np.flatnonzero(first < last):
            s = self.shards[i]
            at = order[first[i]:last[i]]
            local = s.find(ids[at])
            hit = local >= 0
            flat[at[hit]] = local[hit] + s.row_offset
        return out

    def identities_sources(self, rows: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        rows = np.asarray(rows, np.int64).reshape(-1)
        ids = np.empty(len(rows), object)
        srcs = np.empty(len(rows), object)
        valid = rows >= 0
        if valid.any():
            shard, local = self.locate(rows[valid])
            vi = np.flatnonzero(valid)
            for j, s, r in zip(vi, shard, local, strict=True):
                ids[j] = self.shards[s].identity(int(r))
                srcs[j] = self.shards[s].source(int(r))
        return ids, srcs


def identity_names_of(folder: str | os.PathLike) -> list[str]:
    """All identity names of one shard directory (for counting distinct identities)."""
    folder = Path(folder)
    return StringBlob(folder / "identity_names.bin", folder / "identity_offsets.npy").all()


ERASED_NAME = "erased.npy"


def load_erased(index_dir: str | os.PathLike) -> np.ndarray:
    """Sorted global rows listed as erased by faceidx < 0.2 (empty when none).

    Erasure now removes rows physically; an old list is honoured by readers and folded
    into the next erasure, which then deletes it.
    """
    path = Path(index_dir) / ERASED_NAME
    if not path.exists():
        return np.empty(0, np.int64)
    try:
        rows = load_npy(path)
    except (OSError, ValueError) as err:
        raise DataError(f"cannot read erased rows: {err}", path) from err
    if rows.ndim != 1 or rows.dtype.kind not in "iu":
        raise DataError("erased rows must be a 1-D integer array", path)
    return np.unique(rows.astype(np.int64))
