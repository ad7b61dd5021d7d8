"""collection.json: the list of finished shards, their checksums, the model and D."""

from __future__ import annotations

import dataclasses
import os
from dataclasses import dataclass, field
from pathlib import Path

from faceidx import __version__
from faceidx.errors import DataError
from faceidx.io.atomic import read_format_json, write_json_atomic
from faceidx.io.schema import CollectionMeta

MANIFEST_NAME = "collection.json"
FORMAT_NAME = "faceidx-collection"
FORMAT_VERSION = 1


def shard_name(index: int) -> str:
    """File name of shard number `index`: part-00000.parquet, part-00001.parquet, ..."""
    return f"part-{index:05d}.parquet"


@dataclass
class ShardEntry:
    file: str
    rows: int
    bytes: int
    sha256: str
    face_id_min: int
    face_id_max: int


@dataclass
class CollectionManifest:
    meta: CollectionMeta
    shards: list[ShardEntry] = field(default_factory=list)
    extra_columns: list[str] = field(default_factory=list)
    next_face_id: int = 0
    complete: bool = False

    @property
    def rows(self) -> int:
        return sum(s.rows for s in self.shards)

    def to_json(self) -> dict:
        return {
            "format": FORMAT_NAME,
            "format_version": FORMAT_VERSION,
            "faceidx_version": __version__,
            "complete": self.complete,
            "model": self.meta.model,
            "dim": self.meta.dim,
            "meta": self.meta.to_json(),
            "rows": self.rows,
            "next_face_id": self.next_face_id,
            "extra_columns": self.extra_columns,
            "shards": [dataclasses.asdict(s) for s in self.shards],
        }

    def save(self, path: str | os.PathLike) -> None:
        write_json_atomic(path, self.to_json())

    @classmethod
    def load(cls, path: str | os.PathLike) -> CollectionManifest:
        path = Path(path)
        obj = read_format_json(path, FORMAT_NAME, FORMAT_VERSION)
        try:
            _check_types(obj)
            return cls(
                meta=CollectionMeta.from_json(obj["meta"]),
                shards=[ShardEntry(**s) for s in obj["shards"]],
                extra_columns=list(obj.get("extra_columns", [])),
                next_face_id=int(obj["next_face_id"]),
                complete=bool(obj["complete"]),
            )
        except (KeyError, TypeError, ValueError, AttributeError) as err:
            raise DataError(f"malformed collection manifest: {err}", path) from err


def _check_types(obj: dict) -> None:
    """TypeError/ValueError (reported as a malformed manifest) for a value of a wrong type."""
    def is_int(v, low=0) -> bool:
        return isinstance(v, int) and not isinstance(v, bool) and v >= low

    if not isinstance(obj.get("meta"), dict):
        raise TypeError("meta must be an object")
    if not isinstance(obj.get("complete"), bool):
        raise TypeError("complete must be true or false")
    if not is_int(obj.get("next_face_id")):
        raise ValueError("next_face_id must be an integer >= 0")
    extra = obj.get("extra_columns", [])
    if not isinstance(extra, list) or not all(isinstance(x, str) and x for x in extra):
        raise TypeError("extra_columns must be a list of column names")
    if not isinstance(obj.get("shards"), list):
        raise TypeError("shards must be a list")
    for i, s in enumerate(obj["shards"]):
        if not isinstance(s, dict) or not isinstance(s.get("file"), str) \
                or not isinstance(s.get("sha256"), str):
            raise TypeError(f"shards[{i}] must name its file and sha256")
        for key, low in (("rows", 0), ("bytes", 0), ("face_id_min", -1), ("face_id_max", -1)):
            if not is_int(s.get(key), low):
                raise ValueError(f"shards[{i}].{key} must be an integer >= {low}")
