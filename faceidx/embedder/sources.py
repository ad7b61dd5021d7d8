"""List the images of an embed SOURCE, with their identities, in a deterministic order.

A SOURCE is one of:

    folder-per-identity tree   SOURCE/<identity>/<image> (LFW, ORL); files deeper in an
                               identity folder belong to it too. Loose images beside the
                               identity folders (a mixed folder) are listed too, with a
                               warning saying how each got its identity; loose files that
                               are not images (a README) are skipped
    flat folder + regex        every file under SOURCE; the identity is group 1 of
                               `identity_regex` searched in the file name (Yale:
                               ``subject(\\d+)\\.``), or the whole match when the regex
                               has no group; files that do not match get no identity
    flat folder, no regex      every file; identities by `naming` (below)
    CSV or parquet manifest    a file with a ``path`` column (relative paths are taken
                               from the manifest's folder) and an optional ``identity``
    one image file             itself; identity by `naming`

`naming` says what names a file that no folder or regex names (flat folders, loose
images, single files):

    "folders"   nothing: no identity (queries: no truth). The default.
    "files"     the file name, the face_recognition convention (``known/Barack_Obama.jpg``):
                the stem with a trailing number such as ``_0001``, ``-2`` or `` (3)``
                removed (``Barack_Obama_0001.jpg`` -> ``Barack_Obama``). A stem of digits
                only (``0001.jpg``) or a camera's (``IMG_1234.jpg``) names nobody.

Files are not filtered by extension (formats are sniffed when decoding), only hidden
files (``.name``) are skipped. Order: sorted by path, so reruns list the same sequence.
:func:`list_labelled` also says how identities were derived (``Listing.explain()``).

What a collection stores as an image's ``source`` (``SourceItem.source``): its path
relative to the embedded root (SOURCE, or a single file's folder), so collections carry
no absolute paths of the machine that embedded them; a manifest's rows as it writes them.
"""

from __future__ import annotations

import csv
import logging
import os
import re
from dataclasses import dataclass, field
from pathlib import Path

from faceidx.errors import DataError

log = logging.getLogger(__name__)

MANIFEST_SUFFIXES = (".csv", ".parquet", ".pq")


@dataclass(frozen=True)
class SourceItem:
    """One image to embed: its path (as a string), identity (None when unknown), and the
    name a collection stores for it (`source`, relative to the embedded root; None: the
    path). `source` takes no part in comparisons."""

    path: str
    identity: str | None
    source: str | None = field(default=None, compare=False)

    @property
    def stored(self) -> str:
        """The name a collection keeps for this image: `source`, else `path`."""
        return self.source if self.source is not None else self.path


def relative_to(items: list[SourceItem], root: str | os.PathLike) -> list[SourceItem]:
    """`items` with `source` set to their path relative to `root` (POSIX separators), so a
    collection neither leaks nor depends on where the photos lay when they were embedded."""
    root = os.path.abspath(root)
    return [SourceItem(it.path, it.identity,
                       Path(os.path.relpath(os.path.abspath(it.path), root)).as_posix())
            for it in items]


NAMINGS = ("folders", "files")
# camera and app file names (IMG_1234.jpg -> "IMG") name nobody
_CAMERA_STEMS = frozenset({"img", "image", "dsc", "dscn", "dscf", "pxl", "mvimg", "photo",
                           "picture", "pic", "scan", "screenshot", "dji", "gopr", "vid"})
_TRAILING_NUMBER = re.compile(r"(?:[ _\-.]+\d+|\s*\(\d+\))$")

# how an item got its identity, as Listing.how counts it
FOLDER, FILE_NAME, REGEX, MANIFEST, NONE = ("folder name", "file name", "--identity-regex",
                                            "manifest", "none")


@dataclass
class Listing:
    """The images of a SOURCE and how their identities were derived.

    how: {rule: images} with rules FOLDER, FILE_NAME, REGEX, MANIFEST, NONE;
    rules: {path: rule} of the named images; mixed: loose images beside identity
    folders were listed.
    """

    source: str
    items: list[SourceItem]
    how: dict[str, int]
    rules: dict[str, str]
    mixed: bool = False

    @property
    def unlabelled(self) -> int:
        return sum(item.identity is None for item in self.items)

    def explain(self) -> str:
        """One line: e.g. '12 images named by folder name (3 people), 2 without identity'."""
        names: dict[str, set] = {}
        for item in self.items:
            names.setdefault(self.rules.get(item.path, NONE), set()).add(item.identity)
        parts = []
        for rule, n in self.how.items():
            if rule == NONE:
                parts.append(f"{n} without identity")
            else:
                people = len(names.get(rule, ()))
                parts.append(f"{n} named by {rule} ({people} {'person' if people == 1 else 'people'})")
        return f"{self.source}: " + ", ".join(parts)


def name_from_file(path: str | os.PathLike) -> str | None:
    """The face_recognition convention: file stem minus a trailing number; None if no name.

    >>> name_from_file("known/Barack_Obama_0001.jpg"), name_from_file("x/0007.png")
    ('Barack_Obama', None)
    """
    name = _TRAILING_NUMBER.sub("", Path(path).stem).strip(" _-.")
    if not name or name.isdigit() or name.casefold() in _CAMERA_STEMS:
        return None
    return name


def list_source(source: str | os.PathLike, identity_regex: str | None = None,
                naming: str = "folders") -> list[SourceItem]:
    """The images of `source` (see the module docstring), sorted by path."""
    return list_labelled(source, identity_regex, naming).items


def list_labelled(source: str | os.PathLike, identity_regex: str | None = None,
                  naming: str = "folders") -> Listing:
    """The images of `source` with how their identities were derived (module docstring).

    Warns (logging) when a folder mixes loose images with identity folders.
    """
    if naming not in NAMINGS:
        raise ValueError(f"naming must be one of {NAMINGS}, got {naming!r}")
    root = Path(source)
    if not root.exists():
        raise DataError("no such file or folder", root)
    pattern = _compile(identity_regex)
    by_file = naming == "files"
    rules: dict[str, str] = {}
    mixed = False
    if root.is_file():
        if root.suffix.lower() in MANIFEST_SUFFIXES:
            items = read_manifest(root)
            rules = {it.path: MANIFEST for it in items if it.identity is not None}
        elif pattern is not None:
            items = [SourceItem(str(root), _match(pattern, root.name))]
            rules = {it.path: REGEX for it in items if it.identity is not None}
        else:
            items = [SourceItem(str(root), name_from_file(root) if by_file else None)]
            rules = {it.path: FILE_NAME for it in items if it.identity is not None}
    elif pattern is not None:
        items = [SourceItem(str(p), _match(pattern, p.name)) for p in _walk(root)]
        rules = {it.path: REGEX for it in items if it.identity is not None}
        unmatched = sum(item.identity is None for item in items)
        if unmatched:
            log.warning("%d of %d files in %s do not match --identity-regex %r",
                        unmatched, len(items), root, identity_regex)
    elif any(child.is_dir() and not child.name.startswith(".") for child in root.iterdir()):
        items, loose = _tree(root)
        rules = {it.path: FOLDER for it in items}
        for p in loose:
            name = name_from_file(p) if by_file else None
            items.append(SourceItem(str(p), name))
            if name is not None:
                rules[str(p)] = FILE_NAME
        mixed = bool(loose)
        if loose:
            folders = len({it.identity for it in items if rules.get(it.path) == FOLDER})
            log.warning("%s mixes %d loose image(s) with %d identity folder(s): all are used; "
                        "images in a folder take the folder's name, loose ones %s", root,
                        len(loose), folders,
                        "their file's name" if by_file else "have no identity (no truth)")
    else:
        paths = list(_walk(root))
        items = [SourceItem(str(p), name_from_file(p) if by_file else None) for p in paths]
        rules = {it.path: FILE_NAME for it in items if it.identity is not None}
    if not items:
        raise DataError("holds no image files", root)
    if root.is_dir():
        items = relative_to(items, root)
    elif root.suffix.lower() not in MANIFEST_SUFFIXES:
        items = relative_to(items, root.parent)
    items = sorted(items, key=lambda item: item.path)
    how: dict[str, int] = {}
    for item in items:
        rule = rules.get(item.path, NONE) if item.identity is not None else NONE
        how[rule] = how.get(rule, 0) + 1
    return Listing(str(root), items, how, rules, mixed)


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
        items.append(SourceItem(str(full), identity if identity not in ("", None) else None,
                                p))  # stored as the manifest writes it
    return items


def _tree(root: Path) -> tuple[list[SourceItem], list[Path]]:
    """(items of the identity folders, loose image files beside them)."""
    items, loose, skipped = [], [], 0
    for child in sorted(root.iterdir()):
        if child.name.startswith("."):
            continue
        if child.is_dir():
            items.extend(SourceItem(str(p), child.name) for p in _walk(child))
        elif _is_image(child):
            loose.append(child)
        else:
            skipped += 1
    if skipped:
        log.info("%s: skipped %d loose file(s) that are not images", root, skipped)
    return items, loose


def _is_image(path: Path) -> bool:
    from faceidx.embedder.decode import sniff_format

    try:
        with open(path, "rb") as fh:
            return sniff_format(fh.read(64)) is not None
    except OSError:
        return False


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
