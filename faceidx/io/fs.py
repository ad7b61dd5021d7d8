"""The one file-system layer stages read and write through: local paths now.

    fs = filesystem("/shared/faces.index")          # or "file:///shared/faces.index"
    with fs.atomic_write(path) as tmp:              # temp file beside it, fsync, rename
        tmp.write_bytes(data)
    fs.rmtree(folder); fs.replace(tmp_dir, final)

A cluster shares data through a path every node sees (NFS, Lustre, a FUSE-mounted
bucket), as autofaiss and clip-retrieval assume. Object storage would be a second class
with these methods, chosen by URL scheme in :func:`filesystem`; FAISS and numpy memory
maps need real files, so such a class stages them through `local_path`.
"""

from __future__ import annotations

import contextlib
import hashlib
import os
import shutil
import threading
from collections.abc import Iterator
from pathlib import Path
from urllib.parse import urlparse

from faceidx.errors import DataError


class LocalFileSystem:
    """Paths on this machine (or on a shared mount every node sees)."""

    scheme = "file"

    def path(self, url: str | os.PathLike) -> Path:
        """The Path of a plain path or a file:// URL."""
        text = os.fspath(url)
        return Path(urlparse(text).path) if text.startswith("file://") else Path(text)

    def local_path(self, url: str | os.PathLike) -> Path:
        """A path FAISS and numpy can open (memory-map): the file itself here."""
        return self.path(url)

    def open(self, url: str | os.PathLike, mode: str = "rb"):
        return open(self.path(url), mode)

    def exists(self, url: str | os.PathLike) -> bool:
        return self.path(url).exists()

    def makedirs(self, url: str | os.PathLike) -> Path:
        p = self.path(url)
        p.mkdir(parents=True, exist_ok=True)
        return p

    def replace(self, src: str | os.PathLike, dst: str | os.PathLike) -> None:
        """Atomic rename (a file or a folder) within one file system."""
        os.replace(self.path(src), self.path(dst))

    def remove(self, url: str | os.PathLike) -> None:
        self.path(url).unlink(missing_ok=True)

    def rmtree(self, url: str | os.PathLike) -> None:
        """Remove a folder and what it holds; a missing folder is fine."""
        if self.exists(url):
            shutil.rmtree(self.path(url))

    def temp_path(self, url: str | os.PathLike) -> Path:
        """The temp name used while `url` is written (same folder, so a rename is atomic)."""
        path = self.path(url)
        return path.with_name(f".{path.name}.{os.getpid()}.tmp")

    @contextlib.contextmanager
    def atomic_write(self, url: str | os.PathLike) -> Iterator[Path]:
        """Yield a temp path beside `url`; on success fsync it and rename it onto `url`,
        on error delete it. Readers see the old file or the new one, never a part."""
        path = self.path(url)
        tmp = self.temp_path(path)
        try:
            yield tmp
            with open(tmp, "rb+") as fh:
                os.fsync(fh.fileno())
            os.replace(tmp, path)
        finally:
            if tmp.exists():
                tmp.unlink()

    def sha256(self, url: str | os.PathLike, chunk: int = 1 << 20) -> str:
        """Hex SHA-256 of a file, streamed in `chunk`-byte reads."""
        h = hashlib.sha256()
        with self.open(url, "rb") as fh:
            while block := fh.read(chunk):
                h.update(block)
        return h.hexdigest()


LOCAL = LocalFileSystem()


def filesystem(url: str | os.PathLike) -> LocalFileSystem:
    """The file system holding `url`: a plain path or file:// (others raise DataError)."""
    text = os.fspath(url)
    scheme = urlparse(text).scheme if "://" in text else ""
    if scheme in ("", "file"):
        return LOCAL
    raise DataError(f"{scheme}:// is not supported: put collections and indexes on a path "
                    "every node sees (a shared file system, or the bucket mounted with FUSE)",
                    text)


_NPY_HEADER = threading.Lock()


def load_npy(path: str | os.PathLike, mmap_mode: str | None = None):
    """np.load of a .npy file (no pickles), memory-mapped when `mmap_mode` is given.

    Serialised: numpy parses .npy headers with ast.literal_eval, and CPython 3.11's
    compiler is not thread-safe ("SystemError: AST constructor recursion depth mismatch"
    when two threads parse at once, seen with a reader reopening a new generation while
    another thread opened one). Only the header parse and the mmap are under the lock.
    """
    import numpy as np

    with _NPY_HEADER:
        return np.load(path, mmap_mode=mmap_mode, allow_pickle=False)
