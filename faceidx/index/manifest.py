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
from dataclasses import asdict, dataclass, field
from pathlib import Path

from faceidx import __version__
from faceidx.errors import DataError
from faceidx.io import CollectionMeta
from faceidx.io.atomic import read_format_json, write_json_atomic

MANIFEST_NAME = "manifest.json"
FORMAT_NAME = "faceidx-index"
FORMAT_VERSION = 1
TRAINED_NAME = "trained.index"
SHARD_INDEX = "index.faiss"
METRIC = "cosine (L2 on unit vectors)"


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
            )
        except (KeyError, TypeError, ValueError) as err:
            raise DataError(f"malformed index manifest: {err}", path) from err
