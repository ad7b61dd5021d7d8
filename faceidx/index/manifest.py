"""manifest.json of an index directory: what was built, from what, and how to search it.

    INDEX_DIR/
      manifest.json          this file: the root of the index's state. Every write
                             replaces it atomically with "generation" + 1 (a publish);
                             a reader opens one generation and everything it names
      writer.lock            held by the one writer at a time (faceidx/index/lock.py)
      trained.index          the trained, empty FAISS index all shards share
      shard-00000/           index.faiss + the row store (faceidx/index/store.py)
      shard-00001/ ...
      merged/                optional: merged.index (+ merged.ivfdata, on-disk lists)
      mean.npy               only when centering is on
"""

from __future__ import annotations

import os
import re
from dataclasses import asdict, dataclass, field
from pathlib import Path

from faceidx import __version__
from faceidx.errors import DataError
from faceidx.io import CollectionMeta
from faceidx.io.atomic import read_format_json, write_json_atomic
from faceidx.io.fs import load_npy

MANIFEST_NAME = "manifest.json"
FORMAT_NAME = "faceidx-index"
FORMAT_VERSION = 1
TRAINED_NAME = "trained.index"
SHARD_INDEX = "index.faiss"
METRIC = "cosine (L2 on unit vectors)"


# every folder a manifest names lies directly inside the index directory
SHARD_DIR = re.compile(r"shard-\d{5,}(\.g\d+)?")
MERGED_FILE = re.compile(r"merged(\.g\d+)?/merged\.index")


def _is_int(value, low: int) -> bool:
    return isinstance(value, int) and not isinstance(value, bool) and value >= low


def load_mean(index_dir: str | os.PathLike, dim: int):
    """mean.npy of a centred index: (dim,) finite float32; DataError naming it otherwise."""
    import numpy as np

    path = Path(index_dir) / "mean.npy"
    try:
        mean = load_npy(path)
    except (OSError, ValueError) as err:
        raise DataError(f"the index is centred (center: true) but its mean cannot be read: "
                        f"{err.__class__.__name__}", path) from err
    if mean.shape != (dim,) or mean.dtype.kind != "f" or not np.isfinite(mean).all():
        raise DataError(f"mean has shape {mean.shape} and dtype {mean.dtype}, expected ({dim},) "
                        "finite floats", path)
    return mean.astype(np.float32)


def enrolled_folder(index_dir: str | os.PathLike) -> Path:
    """Where `faceidx enrol` keeps the collections it embeds for INDEX_DIR (a sibling).

    They are the index's own copies of enrolled faces: erasure rewrites them too.
    """
    index_dir = Path(index_dir)
    return index_dir.parent / f"{index_dir.name}.enrolled"


def shard_dir_name(i: int) -> str:
    return f"shard-{i:05d}"


@dataclass
class ShardInfo:
    dir: str
    rows: int
    row_offset: int
    face_id_min: int
    face_id_max: int
    identities: int
    collection: str
    sha256: dict[str, str] = field(default_factory=dict)
    renumbered_from: int | None = None
    erased: int = 0  # rows of this shard physically erased (their slots stay, empty)

    @property
    def live(self) -> int:
        return self.rows - self.erased


@dataclass
class IndexManifest:
    meta: CollectionMeta
    factory: str
    params: dict
    dim: int
    complete: bool = False
    shards: list[ShardInfo] = field(default_factory=list)
    num_identities: int = 0
    next_face_id: int = 0
    search: dict = field(default_factory=lambda: {"nprobe": 1, "k_factor": 1})
    tuning: dict = field(default_factory=dict)
    merged: dict | None = None
    center: bool = False
    trained_sha256: str = ""
    collections: list[dict] = field(default_factory=list)
    build: dict = field(default_factory=dict)
    generation: int = 0

    @property
    def rows(self) -> int:
        """Row slots (FAISS ids run 0..rows-1); erased rows keep their empty slot."""
        return sum(s.rows for s in self.shards)

    @property
    def live_rows(self) -> int:
        return sum(s.live for s in self.shards)

    def to_json(self) -> dict:
        return {
            "format": FORMAT_NAME,
            "format_version": FORMAT_VERSION,
            "faceidx_version": __version__,
            "generation": self.generation,
            "complete": self.complete,
            "dim": self.dim,
            "metric": METRIC,
            "factory": self.factory,
            "center": self.center,
            "search": self.search,
            "meta": self.meta.to_json(),
            "rows": self.rows,
            "live_rows": self.live_rows,
            "num_identities": self.num_identities,
            "next_face_id": self.next_face_id,
            "merged": self.merged,
            "params": self.params,
            "tuning": self.tuning,
            "trained_sha256": self.trained_sha256,
            "collections": self.collections,
            "build": self.build,
            "shards": [asdict(s) for s in self.shards],
        }

    def save(self, index_dir: str | os.PathLike) -> None:
        """Publish: write manifest.json atomically with the generation incremented."""
        self.generation += 1
        write_json_atomic(Path(index_dir) / MANIFEST_NAME, self.to_json())

    @classmethod
    def load(cls, index_dir: str | os.PathLike) -> IndexManifest:
        path = Path(index_dir) / MANIFEST_NAME
        if not path.exists():
            raise DataError(f"not a faceidx index directory (no {MANIFEST_NAME})", index_dir)
        obj = read_format_json(path, FORMAT_NAME, FORMAT_VERSION)
        try:
            return cls(
                meta=CollectionMeta.from_json(obj["meta"]),
                factory=obj["factory"],
                params=dict(obj.get("params", {})),
                dim=int(obj["dim"]),
                complete=bool(obj["complete"]),
                shards=[ShardInfo(**s) for s in obj["shards"]],
                num_identities=int(obj.get("num_identities", 0)),
                next_face_id=int(obj.get("next_face_id", 0)),
                search=dict(obj["search"]),
                tuning=dict(obj.get("tuning", {})),
                merged=obj.get("merged"),
                center=bool(obj.get("center", False)),
                trained_sha256=obj.get("trained_sha256", ""),
                collections=list(obj.get("collections", [])),
                build=dict(obj.get("build", {})),
                generation=int(obj.get("generation", 0)),
            )._validated(obj, path)
        except (KeyError, TypeError, ValueError, AttributeError) as err:
            raise DataError(f"malformed index manifest: {err}", path) from err

    def _validated(self, obj: dict, path: Path) -> IndexManifest:
        """Types, ranges and containment of every value search and writers use."""
        def bad(what: str) -> DataError:
            return DataError(f"malformed index manifest: {what}", path)

        for key in ("dim", "next_face_id", "num_identities", "generation"):
            if key in obj and not _is_int(obj[key], 0):
                raise bad(f"{key} is {obj[key]!r}, expected an integer >= 0")
        if self.dim < 1:
            raise bad("dim must be >= 1")
        for key in ("complete", "center"):
            if key in obj and not isinstance(obj[key], bool):
                raise bad(f"{key} is {obj[key]!r}, expected true or false")
        if not isinstance(self.factory, str):
            raise bad("factory must be a string")
        if "candidates" in self.search and not _is_int(self.search["candidates"], 0):
            raise bad(f"search.candidates is {self.search['candidates']!r}, expected an "
                      "integer >= 0")
        for key in ("nprobe", "k_factor"):
            if key in self.search and not _is_int(self.search[key], 1):
                raise bad(f"search.{key} is {self.search[key]!r}, expected an integer >= 1")
        offset = 0
        for i, s in enumerate(self.shards):
            if not isinstance(s.dir, str) or not SHARD_DIR.fullmatch(s.dir):
                raise bad(f"shards[{i}].dir {s.dir!r} is not a shard folder of this index")
            for key in ("rows", "row_offset", "erased", "identities"):
                if not _is_int(getattr(s, key), 0):
                    raise bad(f"shards[{i}].{key} is {getattr(s, key)!r}, expected an integer >= 0")
            for key in ("face_id_min", "face_id_max"):
                if not _is_int(getattr(s, key), -1):
                    raise bad(f"shards[{i}].{key} is {getattr(s, key)!r}, expected an integer")
            if s.row_offset != offset:
                raise bad(f"shards[{i}].row_offset is {s.row_offset}, expected {offset} (the rows "
                          "of the shards before it)")
            if s.erased > s.rows:
                raise bad(f"shards[{i}].erased {s.erased} exceeds its {s.rows} rows")
            offset += s.rows
        m = self.merged
        if m is not None:
            if not isinstance(m, dict) or not isinstance(m.get("file"), str) \
                    or not MERGED_FILE.fullmatch(m["file"]):
                raise bad(f"merged.file {m.get('file') if isinstance(m, dict) else m!r} is not a "
                          "merged index of this index")
            if not _is_int(m.get("shards"), 1) or m["shards"] > len(self.shards):
                raise bad(f"merged.shards is {m.get('shards')!r}, expected 1..{len(self.shards)}")
            for key in ("mmap", "ondisk"):
                if not isinstance(m.get(key, False), bool):
                    raise bad(f"merged.{key} is {m[key]!r}, expected true or false")
        return self
