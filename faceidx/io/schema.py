"""The embedding collection schema: columns, metadata, and their validation.

A collection is parquet with at least these columns:

    face_id    int64                       unique in the collection
    identity   string (nullable)           null for unlabelled faces
    source     string                      image path or URI
    embedding  fixed_size_list<float32|float16>[D]

plus optional extra columns (the embedder adds box and detector score). The parquet
schema metadata key ``faceidx`` holds a JSON :class:`CollectionMeta`. See docs/FORMAT.md.
"""

from __future__ import annotations

import dataclasses
import json
import os
from dataclasses import dataclass

import pyarrow as pa

from faceidx import __version__
from faceidx.errors import DataError, ModelMismatchError

META_KEY = b"faceidx"
REQUIRED_COLUMNS = ("face_id", "identity", "source", "embedding")
DTYPES = {"float32": pa.float32(), "float16": pa.float16()}
UNKNOWN_MODEL = "unknown"


@dataclass(frozen=True)
class CollectionMeta:
    """What every shard of a collection must agree on."""

    model: str
    dim: int
    model_version: str = ""
    normalized: bool = True
    dtype: str = "float32"
    faceidx_version: str = __version__

    def __post_init__(self) -> None:
        if self.dim <= 0:
            raise ValueError(f"dim must be positive, got {self.dim}")
        if self.dtype not in DTYPES:
            raise ValueError(f"dtype must be one of {sorted(DTYPES)}, got {self.dtype!r}")

    def to_json(self) -> dict:
        return dataclasses.asdict(self)

    @classmethod
    def from_json(cls, obj: dict) -> CollectionMeta:
        names = {f.name for f in dataclasses.fields(cls)}
        return cls(**{k: v for k, v in obj.items() if k in names})

    def check_compatible(self, other: CollectionMeta, path: str | os.PathLike | None = None) -> None:
        """Raise ModelMismatchError if `other` has another model or dimension."""
        if other.dim != self.dim:
            raise ModelMismatchError(
                f"embedding dimension {other.dim} does not match the collection's {self.dim}", path
            )
        if other.model != self.model or other.model_version != self.model_version:
            raise ModelMismatchError(
                f"model {other.model!r} (version {other.model_version!r}) does not match "
                f"{self.model!r} (version {self.model_version!r})",
                path,
            )


def make_schema(meta: CollectionMeta, extra_fields: tuple[pa.Field, ...] = ()) -> pa.Schema:
    """The arrow schema of a shard for `meta`, with optional extra columns appended."""
    fields = [
        pa.field("face_id", pa.int64(), nullable=False),
        pa.field("identity", pa.string()),
        pa.field("source", pa.string()),
        pa.field("embedding", pa.list_(DTYPES[meta.dtype], meta.dim), nullable=False),
        *extra_fields,
    ]
    names = [f.name for f in fields]
    if len(set(names)) != len(names):
        raise ValueError(f"duplicate column names in {names}")
    return pa.schema(fields, metadata={META_KEY: json.dumps(meta.to_json()).encode()})


def meta_from_schema(schema: pa.Schema, path: str | os.PathLike) -> CollectionMeta:
    """Validate a shard's arrow schema and return its metadata.

    Parquet written by other tools (no ``faceidx`` metadata) is accepted if its columns
    fit; its model is then ``unknown`` and D comes from the embedding column type.
    """
    missing = [c for c in ("face_id", "embedding") if c not in schema.names]
    if missing:
        raise DataError(f"not an embedding collection: missing column(s) {missing}", path)
    fid = schema.field("face_id").type
    if not pa.types.is_integer(fid):
        raise DataError(f"column face_id must be an integer type, found {fid}", path)
    for name in ("identity", "source"):
        if name in schema.names:
            t = schema.field(name).type
            if not (pa.types.is_string(t) or pa.types.is_large_string(t) or pa.types.is_null(t)):
                raise DataError(f"column {name} must be a string type, found {t}", path)
    emb = schema.field("embedding").type
    if not (pa.types.is_fixed_size_list(emb) or pa.types.is_list(emb) or pa.types.is_large_list(emb)):
        raise DataError(f"column embedding must be a list of floats, found {emb}", path)
    value_type = emb.value_type
    if not pa.types.is_floating(value_type):
        raise DataError(f"column embedding must hold floats, found {value_type}", path)
    dim = emb.list_size if pa.types.is_fixed_size_list(emb) else None

    raw = (schema.metadata or {}).get(META_KEY)
    if raw is not None:
        try:
            meta = CollectionMeta.from_json(json.loads(raw))
        except (ValueError, TypeError) as err:
            raise DataError(f"unreadable faceidx metadata: {err}", path) from err
        if dim is not None and dim != meta.dim:
            raise DataError(f"metadata says D={meta.dim} but the embedding column has {dim}", path)
        return meta
    if dim is None:
        raise DataError(
            "embedding column is a variable-length list and no faceidx metadata gives D; "
            "write it as a fixed-size list",
            path,
        )
    dtype = "float16" if pa.types.is_float16(value_type) else "float32"
    return CollectionMeta(model=UNKNOWN_MODEL, dim=dim, normalized=False, dtype=dtype)
