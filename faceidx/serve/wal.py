"""The service's write-ahead log: enrolments are durable once acknowledged.

    wal = WriteAheadLog(index_dir / WAL_NAME)
    wal.append(AddRecord(face_ids, "ann", [None], vectors))   # fsync'd before returning
    for rec in wal.read(): ...                                 # replay at start-up
    wal.rewrite(records_not_yet_in_the_index)                  # after a flush publishes

One record per line: 8 hex digits of the CRC-32 of the JSON that follows, a space, the
JSON, a newline. Vectors travel as base64 float32. A line cut short by a crash during
`append` was never acknowledged (the fsync had not returned): a bad LAST line is dropped
on read; a bad line before the last is damage and raises DataError naming the line.
"""

from __future__ import annotations

import base64
import json
import os
import threading
import zlib
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from faceidx.errors import DataError

WAL_NAME = "serve-wal.log"


@dataclass(frozen=True)
class AddRecord:
    """Faces acknowledged to a client: ids reserved in the index, vectors unit float32."""

    face_ids: np.ndarray
    identity: str | None
    sources: list[str | None]
    vectors: np.ndarray

    def to_json(self) -> dict:
        x = np.ascontiguousarray(self.vectors, np.float32)
        return {"op": "add", "face_ids": [int(f) for f in self.face_ids], "identity": self.identity,
                "sources": list(self.sources), "dim": int(x.shape[1]),
                "vectors": base64.b64encode(x.tobytes()).decode("ascii")}


@dataclass(frozen=True)
class EraseRecord:
    """Faces of earlier AddRecords erased before they reached the index."""

    face_ids: np.ndarray

    def to_json(self) -> dict:
        return {"op": "erase", "face_ids": [int(f) for f in self.face_ids]}


def _record(obj: dict, path: Path, line: int):
    try:
        if obj["op"] == "add":
            x = np.frombuffer(base64.b64decode(obj["vectors"]), np.float32)
            return AddRecord(np.asarray(obj["face_ids"], np.int64), obj["identity"],
                             list(obj["sources"]), x.reshape(-1, int(obj["dim"])).copy())
        if obj["op"] == "erase":
            return EraseRecord(np.asarray(obj["face_ids"], np.int64))
    except (KeyError, TypeError, ValueError) as err:
        raise DataError(f"write-ahead log record is malformed ({err})", path, line) from err
    raise DataError(f"write-ahead log record has unknown op {obj.get('op')!r}", path, line)


class WriteAheadLog:
    """Append-only, fsync'd log of acknowledged writes; one instance per file."""

    def __init__(self, path: str | os.PathLike):
        self.path = Path(path)
        self._lock = threading.Lock()
        self._fd = os.open(self.path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)

    def append(self, *records) -> None:
        """Write records and fsync: when this returns they survive a crash."""
        data = b"".join(_encode(r) for r in records)
        with self._lock:
            os.write(self._fd, data)
            os.fsync(self._fd)

    def read(self) -> list:
        """Records in order (a torn last line, from a crash mid-append, is dropped)."""
        if not self.path.exists():
            return []
        lines = self.path.read_bytes().split(b"\n")
        if lines and lines[-1] == b"":
            lines.pop()
        out = []
        for i, raw in enumerate(lines):
            obj = _decode(raw)
            if obj is None:
                if i == len(lines) - 1:
                    break
                raise DataError("write-ahead log line is damaged (CRC or JSON)", self.path, i)
            out.append(_record(obj, self.path, i))
        return out

    def rewrite(self, records) -> None:
        """Replace the log with `records` atomically (temp file, fsync, rename, dir fsync)."""
        tmp = self.path.with_name(self.path.name + ".tmp")
        with self._lock:
            with open(tmp, "wb") as fh:
                fh.write(b"".join(_encode(r) for r in records))
                fh.flush()
                os.fsync(fh.fileno())
            os.replace(tmp, self.path)
            _fsync_dir(self.path.parent)
            os.close(self._fd)
            self._fd = os.open(self.path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)

    def close(self) -> None:
        with self._lock:
            if self._fd >= 0:
                os.close(self._fd)
                self._fd = -1


def _encode(record) -> bytes:
    body = json.dumps(record.to_json(), separators=(",", ":")).encode()
    return b"%08x %s\n" % (zlib.crc32(body), body)


def _decode(raw: bytes) -> dict | None:
    if len(raw) < 10 or raw[8:9] != b" ":
        return None
    body = raw[9:]
    try:
        if int(raw[:8], 16) != zlib.crc32(body):
            return None
        return json.loads(body)
    except ValueError:
        return None


def _fsync_dir(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)
