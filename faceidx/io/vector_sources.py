"""Benchmark vector files read with one interface: ann-benchmarks HDF5 and big-ann .fbin.

    with open_vector_source("glove-100-angular.hdf5") as src:
        for lo, block in src.iter_vectors("train", 65_536): ...
        truth = src.truth()                                   # neighbors, distances

faceidx's own exports carry extra columns (face ids, identities, sources) and a
collection's metadata; other tools' files give row numbers and the `unknown` model.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

import numpy as np

from faceidx.errors import DataError
from faceidx.io.schema import UNKNOWN_MODEL, CollectionMeta

HDF5_SUFFIXES = (".h5", ".hdf5")
BIGANN_META = "faceidx.json"
SPLIT_FILES = {"train": "base", "test": "query"}


def vector_file_format(path: str | os.PathLike) -> str | None:
    """"hdf5", "fbin" or None: whether `path` is a benchmark file faceidx can read."""
    p = Path(path)
    if p.suffix.lower() in HDF5_SUFFIXES:
        return "hdf5"
    if p.suffix.lower() in (".fbin", ".u8bin", ".i8bin") or (p.is_dir() and (p / "base.fbin").exists()):
        return "fbin"
    return None



def open_vector_source(path: str | os.PathLike):
    """An HDF5 or big-ann source with one reading interface (rows, iter_vectors, column)."""
    fmt = vector_file_format(path)
    if fmt == "hdf5":
        from faceidx.io.hdf5 import open_hdf5

        return _Hdf5Source(open_hdf5(path))
    if fmt == "fbin":
        return _BigAnnSource(Path(path))
    raise DataError("not a benchmark vector file (.h5/.hdf5, .fbin, or a folder with "
                    "base.fbin)", path)


class _Hdf5Source:
    def __init__(self, ann):
        self.ann, self.metric, self.path = ann, ann.metric, ann.path

    def rows(self, split: str) -> int:
        return self.ann.rows(split)

    def path_of(self, split: str) -> Path:
        return self.ann.path

    def iter_vectors(self, split: str, batch_rows: int):
        return self.ann.iter_vectors(split, batch_rows)

    def column(self, split: str, name: str, lo: int, hi: int):
        return self.ann.column(split, name, lo, hi)

    def truth(self):
        return self.ann.truth()

    def collection_meta(self) -> CollectionMeta:
        return _meta(self.ann.meta, self.ann.dim, self.path)

    def __enter__(self):
        return self

    def __exit__(self, *exc) -> None:
        self.ann.close()


class _BigAnnSource:
    """A big-ann folder (base.fbin, query.fbin, groundtruth.ibin) or a lone .fbin."""

    def __init__(self, path: Path):
        from faceidx.io.fbin import Fbin

        self.path = path
        folder = path if path.is_dir() else None
        self.files = {"train": Fbin(path / "base.fbin" if folder else path)}
        if folder and (folder / "query.fbin").exists():
            self.files["test"] = Fbin(folder / "query.fbin")
        self.folder = folder
        info = {}
        if folder and (folder / BIGANN_META).exists():
            try:
                info = json.loads((folder / BIGANN_META).read_text())
            except (OSError, ValueError) as err:
                raise DataError(f"unreadable: {err}", folder / BIGANN_META) from err
        self.metric = info.get("metric", "euclidean")
        self.meta = info.get("meta")
        dims = {f.dim for f in self.files.values()}
        if len(dims) > 1:
            raise DataError(f"base and query vectors differ in D ({sorted(dims)})", path)
        self.dim = dims.pop()
        self._rows = {}

    def rows(self, split: str) -> int:
        return self.files[split].n if split in self.files else 0

    def path_of(self, split: str) -> Path:
        return self.files[split].path

    def iter_vectors(self, split: str, batch_rows: int):
        return self.files[split].iter_vectors(batch_rows)

    def column(self, split: str, name: str, lo: int, hi: int):
        table = self._rows_table(split)
        if table is None:
            return None
        values = table.column(name).slice(lo, hi - lo).to_numpy(zero_copy_only=False)
        return values.astype(np.int64) if name == "face_id" else values.astype(object)

    def _rows_table(self, split: str):
        if split not in self._rows:
            import pyarrow.parquet as pq

            f = self.folder / f"{SPLIT_FILES[split]}.rows.parquet" if self.folder else None
            table = pq.read_table(f) if f is not None and f.exists() else None
            if table is not None and table.num_rows != self.rows(split):
                raise DataError(f"{table.num_rows} rows but {self.rows(split)} vectors", f)
            self._rows[split] = table
        return self._rows[split]

    def truth(self):
        from faceidx.io.fbin import read_ibin

        if self.folder is None or not (self.folder / "groundtruth.ibin").exists():
            raise DataError("no groundtruth.ibin (no ground truth)", self.path)
        ids, dist = read_ibin(self.folder / "groundtruth.ibin")
        if len(ids) != self.rows("test"):
            raise DataError(f"ground truth has {len(ids)} rows, query.fbin {self.rows('test')}",
                            self.folder / "groundtruth.ibin")
        return ids, dist

    def collection_meta(self) -> CollectionMeta:
        return _meta(self.meta, self.dim, self.path)

    def __enter__(self):
        return self

    def __exit__(self, *exc) -> None:
        return None


def _meta(raw: dict | None, dim: int, path) -> CollectionMeta:
    if raw is None:
        return CollectionMeta(model=UNKNOWN_MODEL, dim=dim, normalized=False)
    try:
        meta = CollectionMeta.from_json(raw)
    except (TypeError, ValueError) as err:
        raise DataError(f"unreadable faceidx metadata: {err}", path) from err
    if meta.dim != dim:
        raise DataError(f"faceidx metadata says D={meta.dim}, the vectors have {dim}", path)
    return meta
