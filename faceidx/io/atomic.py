"""Atomic file writes: write to a temp file beside the target, fsync, rename (through
faceidx.io.fs, the file-system layer)."""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

from faceidx.io.fs import LOCAL


def tmp_path_for(path: str | os.PathLike) -> Path:
    """The temp name used while `path` is being written (same folder, so rename is atomic)."""
    return LOCAL.temp_path(path)


def atomic_path(path: str | os.PathLike):
    """Context manager: a temp path to write; on success renamed onto `path`, on error deleted."""
    return LOCAL.atomic_write(path)


def write_json_atomic(path: str | os.PathLike, obj: Any) -> None:
    """Write `obj` as indented JSON to `path` atomically."""
    with atomic_path(path) as tmp:
        tmp.write_text(json.dumps(obj, indent=2, sort_keys=False) + "\n")


def sha256_file(path: str | os.PathLike, chunk: int = 1 << 20) -> str:
    """Hex SHA-256 of a file, streamed in `chunk`-byte reads."""
    return LOCAL.sha256(path, chunk)


def read_format_json(
    path: str | os.PathLike, format_name: str, format_version: int, error=None
) -> dict:
    """Read a faceidx JSON file whose "format" must be `format_name`.

    Raises `error` (DataError by default) naming the file when it cannot be read, is
    not that format, or was written by a newer format version than `format_version`.
    """
    from faceidx.errors import DataError

    error = error or DataError
    path = Path(path)
    try:
        obj = json.loads(path.read_text())
    except (OSError, ValueError) as err:
        raise error(f"cannot read {format_name} file: {err}", path) from err
    if not isinstance(obj, dict) or obj.get("format") != format_name:
        raise error(f"not a {format_name} file", path)
    version = obj.get("format_version", 0)
    if not isinstance(version, int) or isinstance(version, bool) or version < 0:
        raise error(f"format_version {version!r} is not a version number", path)
    if version > format_version:
        raise error(
            f"format version {obj['format_version']} is newer than this faceidx understands "
            f"({format_version}); upgrade faceidx",
            path,
        )
    return obj
