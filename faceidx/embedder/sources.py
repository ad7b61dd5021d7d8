"""List the images of an embed SOURCE, with their identities, in a deterministic order.

A SOURCE is one of:

    folder-per-identity tree   SOURCE/<identity>/<image> (LFW, ORL); files deeper in an
                               identity folder belong to it too; loose files at the top
                               level (a README) are skipped
    flat folder + regex        every file under SOURCE; the identity is group 1 of
                               `identity_regex` searched in the file name (Yale:
                               ``subject(\\d+)\\.``), or the whole match when the regex
                               has no group; files that do not match get no identity
    flat folder, no regex      every file, no identities
    CSV or parquet manifest    a file with a ``path`` column (relative paths are taken
                               from the manifest's folder) and an optional ``identity``
    one image file             itself, no identity

Files are not filtered by extension (formats are sniffed when decoding), only hidden
files (``.name``) are skipped. Order: sorted by path, so reruns list the same sequence.
"""

from __future__ import annotations

import csv
import logging
import os
import re
from dataclasses import dataclass
from pathlib import Path

from faceidx.errors import DataError

log = logging.getLogger(__name__)

MANIFEST_SUFFIXES = (".csv", ".parquet", ".pq")


@dataclass(frozen=True)
class SourceItem:
    """One image to embed: its path (as a string) and identity (None when unknown)."""

    path: str
    identity: str | None


def list_source(source: str | os.PathLike, identity_regex: str | None = None) -> list[SourceItem]:
    """The images of `source` (see the module docstring), sorted by path."""
    root = Path(source)
    if not root.exists():
        raise DataError("no such file or folder", root)
    pattern = _compile(identity_regex)
    if root.is_file():
        if root.suffix.lower() in MANIFEST_SUFFIXES:
            items = read_manifest(root)
        else:
            items = [SourceItem(str(root), _match(pattern, root.name))]
    elif pattern is not None:
        items = [SourceItem(str(p), _match(pattern, p.name)) for p in _walk(root)]
        unmatched = sum(item.identity is None for item in items)
        if unmatched:
            log.warning("%d of %d files in %s do not match --identity-regex %r",
                        unmatched, len(items), root, identity_regex)
    elif any(child.is_dir() and not child.name.startswith(".") for child in root.iterdir()):
        items = _tree(root)
    else:
        items = [SourceItem(str(p), None) for p in _walk(root)]
    if not items:
        raise DataError("holds no image files", root)
    return sorted(items, key=lambda item: item.path)


def read_manifest(path: str | os.PathLike) -> list[SourceItem]:
    """Rows of a CSV or parquet manifest with columns ``path`` and optional ``identity``."""
    path = Path(path)
    if path.suffix.lower() == ".csv":
        try:
            with open(path, newline="", encoding="utf-8") as fh:
                reader = csv.DictReader(fh)
                columns = reader.fieldnames or []
                rows = [(r.get("path"), r.get("identity")) for r in reader] if "path" in columns else []
        except (OSError, UnicodeDecodeError, csv.Error) as err:
            raise DataError(f"cannot read CSV manifest: {err}", path) from err
    else:
        import pyarrow.parquet as pq

        try:
            table = pq.read_table(path)
        except Exception as err:  # pyarrow raises several unrelated types
            raise DataError(f"cannot read parquet manifest: {err}", path) from err
        columns = table.column_names
        if "path" in columns:
            ids = table.column("identity").to_pylist() if "identity" in columns else [None] * len(table)
            rows = list(zip(table.column("path").to_pylist(), ids, strict=True))
    if "path" not in columns:
        raise DataError(f"manifest needs a 'path' column; found {list(columns)}", path)
    base = path.parent
    items = []
    for row, (p, identity) in enumerate(rows):
        if not p:
            raise DataError("empty path", path, row)
        full = Path(p) if os.path.isabs(p) else base / p
        items.append(SourceItem(str(full), identity if identity not in ("", None) else None))
    return items


def _tree(root: Path) -> list[SourceItem]:
    items, loose = [], 0
    for child in sorted(root.iterdir()):
        if child.name.startswith("."):
            continue
        if child.is_dir():
            items.extend(SourceItem(str(p), child.name) for p in _walk(child))
        else:
            loose += 1
    if loose:
        log.info("%s: skipped %d loose file(s) outside the identity folders", root, loose)
    return items


def _walk(root: Path):
    for dirpath, dirnames, filenames in os.walk(root):
        dirnames[:] = sorted(d for d in dirnames if not d.startswith("."))
        for name in sorted(filenames):
            if not name.startswith("."):
                yield Path(dirpath) / name


def _compile(identity_regex: str | None) -> re.Pattern | None:
    if identity_regex is None:
        return None
    try:
        return re.compile(identity_regex)
    except re.error as err:
        raise ValueError(f"invalid identity regex {identity_regex!r}: {err}") from err


def _match(pattern: re.Pattern | None, name: str) -> str | None:
    if pattern is None:
        return None
    m = pattern.search(name)
    if m is None:
        return None
    return m.group(1) if pattern.groups else m.group(0)
