"""What index writers leave on disk between publishes: staging folders, the journal of
an interrupted `add`, and the deletion of files no manifest names.

    tmp = staging_dir(index_dir, "shard-00007")     # .shard-00007.tmp, stale ones removed
    collect_garbage(index_dir, manifest, keep={"shard-00007"})

Only a writer holding the index's lock (faceidx/index/writer.py) calls these.
"""

from __future__ import annotations

import json
import logging
import os
import shutil
from pathlib import Path

from faceidx.index.manifest import MANIFEST_NAME, IndexManifest, ShardInfo

log = logging.getLogger(__name__)

PENDING_NAME = "pending-add.json"
PENDING_FORMAT = "faceidx-pending-add"


def write_pending(index_dir: Path, pending: dict) -> None:
    from faceidx.io.atomic import write_json_atomic

    write_json_atomic(index_dir / PENDING_NAME, pending)


def read_pending(index_dir: Path) -> dict | None:
    path = index_dir / PENDING_NAME
    if not path.exists():
        return None
    try:
        obj = json.loads(path.read_text())
        if obj.get("format") != PENDING_FORMAT:
            raise ValueError("not a pending-add journal")
        [ShardInfo(**s) for s in obj["staged"]]
        return obj
    except (OSError, ValueError, KeyError, TypeError, AttributeError) as err:
        log.warning("%s: unreadable (%s); the interrupted add starts over", path, err)
        return {"staged": []}


def load_pending(index_dir: Path, m: IndexManifest, key: str) -> dict | None:
    """The journal of an interrupted add of this collection onto this very manifest."""
    p = read_pending(index_dir)
    if p and p.get("key") == key and p.get("base_shards") == len(m.shards) \
            and p.get("base_rows") == m.rows:
        staged = [ShardInfo(**s) for s in p["staged"]]
        if all((index_dir / s.dir).is_dir() for s in staged):
            return p
    return None


def pending_dirs(index_dir: Path) -> set[str]:
    p = read_pending(index_dir)
    return {s["dir"] for s in p["staged"]} if p else set()


def discard_pending(index_dir: Path, m: IndexManifest) -> None:
    """Drop an interrupted add's journal and staged shards (nothing of it was published)."""
    if (index_dir / PENDING_NAME).exists():
        log.info("discarding the unfinished add journaled in %s", index_dir / PENDING_NAME)
        (index_dir / PENDING_NAME).unlink()
        collect_garbage(index_dir, m, set())


def staging_dir(out: Path, name: str, create: bool = True) -> Path:
    """`out/.name.tmp`, the folder a new part is written in before its rename to
    `out/name`; whatever a crash left under either name (never published) is removed."""
    tmp = out / f".{name}.tmp"
    for stale in (tmp, out / name):
        if stale.exists():
            shutil.rmtree(stale)
    if create:
        tmp.mkdir()
    return tmp


def collect_garbage(index_dir: str | os.PathLike, m: IndexManifest, keep: set[str]) -> list[str]:
    """Delete shard/merged folders and temp files that `m` does not name (nor `keep`).

    Only a writer holding the lock calls this. Readers that opened an older generation
    keep their open files and mappings (POSIX unlink semantics).
    """
    out = Path(index_dir)
    named = {s.dir for s in m.shards} | set(keep)
    if m.merged and m.merged.get("file"):
        named.add(Path(m.merged["file"]).parts[0])
    removed = []
    for p in out.iterdir():
        name = p.name
        ours = name.startswith(("shard-", "merged")) or (name.endswith(".tmp") and name.startswith(
            (".shard-", ".merged", f".{MANIFEST_NAME}.", f".{PENDING_NAME}.")))
        if not ours or name in named:
            continue
        if p.is_dir() and not p.is_symlink():
            shutil.rmtree(p)
        else:
            p.unlink()
        removed.append(name)
    if removed:
        log.info("removed files no manifest names: %s", ", ".join(sorted(removed)))
    return removed
