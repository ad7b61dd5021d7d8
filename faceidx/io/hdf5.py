"""The ann-benchmarks HDF5 layout, read and written in row blocks (bounded memory).

    with AnnHdf5Writer(path, n_train, dim, metric="angular", meta=...) as w:
        w.append_train(vectors, face_ids, identities, sources)
        w.write_test(vectors, face_ids, identities, sources)
        w.write_truth(neighbors, distances)
    ann = open_hdf5(path)                 # validated; DataError naming the file otherwise
    for lo, block in ann.iter_vectors("train", 65_536): ...

Layout (ann-benchmarks): datasets `train` (n, d) and `test` (q, d) float32, `neighbors`
(q, k) int32 rows of `train`, nearest first, `distances` (q, k) float32; attributes
`distance` ("angular" = 1 - cosine, or "euclidean"), `dimension` (d) and `point_type`
("float"). Other tools read only these. faceidx adds, for a lossless round trip:
`<split>_face_id` int64, `<split>_identity` and `<split>_source` (UTF-8 strings; "" is
null), and the attribute `faceidx_meta` (the collection metadata as JSON).
"""

from __future__ import annotations

import json
import os
from collections.abc import Iterator
from pathlib import Path

import numpy as np

from faceidx.errors import DataError

SPLITS = ("train", "test")
METRICS = ("angular", "euclidean")
CHUNK_ROWS = 8192


def _h5py():
    import h5py

    return h5py


class AnnHdf5:
    """A validated ann-benchmarks file, open for reading. Use as a context manager."""

    def __init__(self, path: str | os.PathLike):
        h5py = _h5py()
        self.path = Path(path)
        try:
            self._f = h5py.File(self.path, "r")
        except (OSError, ValueError) as err:
            raise DataError(f"not a readable HDF5 file: {err}", self.path) from err
        try:
            self._validate()
        except Exception:
            self._f.close()
            raise

    def _validate(self) -> None:
        f = self._f
        if "train" not in f:
            raise DataError("no 'train' dataset: not an ann-benchmarks file", self.path)
        self.shapes = {}
        for split in SPLITS:
            if split not in f:
                continue
            ds = f[split]
            if ds.ndim != 2 or ds.dtype.kind != "f":
                raise DataError(f"dataset {split!r} must be 2-D floats, found {ds.dtype} "
                                f"{ds.shape}", self.path)
            self.shapes[split] = ds.shape
        self.dim = self.shapes["train"][1]
        if "test" in self.shapes and self.shapes["test"][1] != self.dim:
            raise DataError(f"test vectors have D={self.shapes['test'][1]}, train D={self.dim}",
                            self.path)
        attr_dim = f.attrs.get("dimension")
        if attr_dim is not None and int(attr_dim) != self.dim:
            raise DataError(f"attribute dimension={int(attr_dim)} but the vectors have "
                            f"D={self.dim}", self.path)
        metric = f.attrs.get("distance", "angular")
        self.metric = metric.decode() if isinstance(metric, bytes) else str(metric)
        if self.metric not in METRICS:
            raise DataError(f"distance {self.metric!r} is not supported (faceidx: "
                            f"{', '.join(METRICS)})", self.path)
        self.k = 0
        if "neighbors" in f:
            nb = f["neighbors"]
            q = self.shapes.get("test", (None,))[0]
            if nb.ndim != 2 or nb.dtype.kind not in "iu" or nb.shape[0] != q:
                raise DataError(f"neighbors {nb.dtype} {nb.shape} must be integers with one "
                                f"row per test vector ({q})", self.path)
            if "distances" in f and f["distances"].shape != nb.shape:
                raise DataError(f"distances {f['distances'].shape} and neighbors {nb.shape} "
                                "differ in shape", self.path)
            self.k = nb.shape[1]
        raw = f.attrs.get("faceidx_meta")
        try:
            self.meta = json.loads(raw) if raw is not None else None
        except ValueError as err:
            raise DataError(f"unreadable faceidx_meta attribute: {err}", self.path) from err

    def rows(self, split: str) -> int:
        return self.shapes[split][0] if split in self.shapes else 0

    def iter_vectors(self, split: str, batch_rows: int = 65_536
                     ) -> Iterator[tuple[int, np.ndarray]]:
        """(first row, float32 block) over `split`, in order."""
        ds = self._f[split]
        for lo in range(0, ds.shape[0], batch_rows):
            yield lo, np.asarray(ds[lo:lo + batch_rows], dtype=np.float32)

    def column(self, split: str, name: str, lo: int, hi: int) -> np.ndarray | None:
        """faceidx's `<split>_<name>` rows lo:hi (face_id, identity, source), or None."""
        key = f"{split}_{name}"
        if key not in self._f:
            return None
        values = self._f[key][lo:hi]
        if name == "face_id":
            return np.asarray(values, np.int64)
        out = np.array([v.decode() if isinstance(v, bytes) else v for v in values], object)
        out[out == ""] = None
        return out

    def truth(self) -> tuple[np.ndarray, np.ndarray | None]:
        """(neighbors int64 (q, k), distances float32 or None)."""
        if "neighbors" not in self._f:
            raise DataError("no 'neighbors' dataset (no ground truth)", self.path)
        d = self._f["distances"][:] if "distances" in self._f else None
        return np.asarray(self._f["neighbors"][:], np.int64), d

    def close(self) -> None:
        self._f.close()

    def __enter__(self) -> AnnHdf5:
        return self

    def __exit__(self, *exc) -> None:
        self.close()


def open_hdf5(path: str | os.PathLike) -> AnnHdf5:
    return AnnHdf5(path)


class AnnHdf5Writer:
    """Writes the layout above to `path` (give a temp path and rename it when done)."""

    def __init__(self, path: str | os.PathLike, n_train: int, dim: int, metric: str,
                 meta: dict | None = None):
        if metric not in METRICS:
            raise ValueError(f"metric must be one of {METRICS}, got {metric!r}")
        h5py = _h5py()
        self.path = Path(path)
        self._f = h5py.File(self.path, "w")
        self._f.attrs["distance"] = metric
        self._f.attrs["dimension"] = int(dim)
        self._f.attrs["point_type"] = "float"
        if meta is not None:
            self._f.attrs["faceidx_meta"] = json.dumps(meta)
        self.dim, self.n_train, self._filled = dim, n_train, 0
        self._create("train", n_train)

    def _create(self, split: str, n: int) -> None:
        h5py = _h5py()
        chunk = (max(1, min(n, CHUNK_ROWS)), self.dim)
        self._f.create_dataset(split, (n, self.dim), np.float32, chunks=chunk if n else None)
        self._f.create_dataset(f"{split}_face_id", (n,), np.int64)
        for name in ("identity", "source"):
            self._f.create_dataset(f"{split}_{name}", (n,), h5py.string_dtype())

    def _put(self, split: str, lo: int, vectors, face_ids, identities, sources) -> None:
        hi = lo + len(vectors)
        self._f[split][lo:hi] = np.asarray(vectors, np.float32)
        self._f[f"{split}_face_id"][lo:hi] = np.asarray(face_ids, np.int64)
        for name, values in (("identity", identities), ("source", sources)):
            if values is not None:
                self._f[f"{split}_{name}"][lo:hi] = ["" if v is None else str(v) for v in values]

    def append_train(self, vectors, face_ids, identities=None, sources=None) -> None:
        if self._filled + len(vectors) > self.n_train:
            raise ValueError("more train rows than declared")
        self._put("train", self._filled, vectors, face_ids, identities, sources)
        self._filled += len(vectors)

    def write_test(self, vectors, face_ids, identities=None, sources=None) -> None:
        self._create("test", len(vectors))
        self._put("test", 0, vectors, face_ids, identities, sources)

    def train_blocks(self, batch_rows: int) -> Iterator[np.ndarray]:
        """The train vectors written so far, read back in blocks (for ground truth)."""
        ds = self._f["train"]
        for lo in range(0, self._filled, batch_rows):
            yield np.asarray(ds[lo:min(lo + batch_rows, self._filled)])

    def write_truth(self, neighbors: np.ndarray, distances: np.ndarray) -> None:
        self._f.create_dataset("neighbors", data=np.asarray(neighbors, np.int32))
        self._f.create_dataset("distances", data=np.asarray(distances, np.float32))

    def close(self) -> None:
        if self._filled != self.n_train:
            self._f.close()
            raise ValueError(f"{self._filled} train rows written, {self.n_train} declared")
        self._f.close()

    def __enter__(self) -> AnnHdf5Writer:
        return self

    def __exit__(self, exc_type, *rest) -> None:
        if exc_type is None:
            self.close()
        else:
            self._f.close()
