"""Embedding collections on disk: schema, writer, reader. The bottom layer of faceidx."""

from faceidx.io.manifest import MANIFEST_NAME, CollectionManifest, shard_name
from faceidx.io.reader import Collection, EmbeddingBatch, concat_batches, open_collection
from faceidx.io.schema import CollectionMeta, make_schema
from faceidx.io.validate import check_vectors
from faceidx.io.writer import CollectionWriter, WriteResult

__all__ = [
    "MANIFEST_NAME",
    "Collection",
    "CollectionManifest",
    "CollectionMeta",
    "CollectionWriter",
    "EmbeddingBatch",
    "WriteResult",
    "check_vectors",
    "concat_batches",
    "make_schema",
    "open_collection",
    "shard_name",
]
