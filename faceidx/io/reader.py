"""Read a collection as a stream of batches, or a uniform random sample of it.

    coll = open_collection("faces/")          # a collection dir, a folder of parquet, or one file
    for batch in coll.iter_batches(65_536):   # bounded memory: one row group at a time
        use(batch.face_ids, batch.embeddings)
    sample = coll.sample(100_000, seed=0)     # uniform without replacement, streamed

Every shard's schema is validated when the collection is opened; shards that disagree
on model or D are refused with an error naming the file. Vectors are checked for
NaN/inf/zero as they are read (errors name file and row).
"""

from __future__ import annotations

import os
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from faceidx.errors import DataError, IncompleteError
from faceidx.io.atomic import sha256_file
from faceidx.io.manifest import MANIFEST_NAME, CollectionManifest
from faceidx.io.schema import CollectionMeta, meta_from_schema
from faceidx.io.validate import check_face_ids, check_vectors

ALL = None
# what a damaged parquet file can raise from arrow or from decoding its metadata
BAD_FILE = (pa.ArrowException, OSError, UnicodeDecodeError, KeyError, ValueError, TypeError,
            IndexError)


@dataclass
class EmbeddingBatch:
    """Rows of one shard. Arrays are aligned; columns not requested are None.

    face_ids int64 (n,); identities, sources object arrays of str/None (n,);
    embeddings float32 (n, D); extra maps extra column names to arrays.
    """

    path: Path
    row_offset: int
    face_ids: np.ndarray | None = None
    identities: np.ndarray | None = None
    sources: np.ndarray | None = None
    embeddings: np.ndarray | None = None
    extra: dict[str, np.ndarray] = field(default_factory=dict)

    def __len__(self) -> int:
        for a in (self.face_ids, self.embeddings, self.identities, self.sources):
            if a is not None:
                return len(a)
        return 0


@dataclass(frozen=True)
class ShardFile:
    path: Path
    rows: int
    sha256: str | None = None


class Collection:
    """A validated, read-only view of a collection. Use :func:`open_collection`."""

    def __init__(self, path: Path, meta: CollectionMeta, shards: list[ShardFile],
                 manifest: CollectionManifest | None):
        self.path = path
        self.meta = meta
        self.shards = shards
        self.manifest = manifest

    @property
    def num_rows(self) -> int:
        return sum(s.rows for s in self.shards)

    @property
    def dim(self) -> int:
        return self.meta.dim

    @property
    def columns(self) -> list[str]:
        if not self.shards:
            return ["face_id", "identity", "source", "embedding"]
        return _open_parquet(self.shards[0].path).schema_arrow.names

    @property
    def bytes(self) -> int:
        return sum(s.path.stat().st_size for s in self.shards)

    def iter_batches(
        self, batch_size: int = 65_536, columns: Sequence[str] | None = ALL, validate: bool = True
    ) -> Iterator[EmbeddingBatch]:
        """Yield EmbeddingBatch of at most `batch_size` rows, shard after shard."""
        for shard in self.shards:
            pf = _open_parquet(shard.path)
            cols = self._columns_for(pf, columns)
            offset = 0
            try:
                for rb in pf.iter_batches(batch_size=batch_size, columns=cols):
                    yield self._to_batch(rb, shard.path, offset, validate)
                    offset += rb.num_rows
            except BAD_FILE as err:
                raise DataError(f"cannot read shard: {_first_line(err)}", shard.path) from err

    def sample(
        self, m: int, seed: int = 0, columns: Sequence[str] | None = ALL, validate: bool = True
    ) -> EmbeddingBatch:
        """A uniform random sample of min(m, num_rows) rows without replacement.

        Memory: the sample plus one row group. Rows come back in collection order.
        """
        n = self.num_rows
        m = min(m, n)
        rng = np.random.default_rng(seed)
        picks = np.sort(rng.choice(n, size=m, replace=False)) if m else np.empty(0, np.int64)
        parts: list[EmbeddingBatch] = []
        start = 0
        for shard in self.shards:
            lo, hi = np.searchsorted(picks, [start, start + shard.rows])
            local = picks[lo:hi] - start
            start += shard.rows
            if not len(local):
                continue
            pf = _open_parquet(shard.path)
            cols = self._columns_for(pf, columns)
            rg_start = 0
            for g in range(pf.metadata.num_row_groups):
                g_rows = pf.metadata.row_group(g).num_rows
                a, b = np.searchsorted(local, [rg_start, rg_start + g_rows])
                if b > a:
                    try:
                        table = pf.read_row_group(g, columns=cols)
                    except BAD_FILE as err:
                        raise DataError(f"cannot read row group {g}: {_first_line(err)}",
                                        shard.path) from err
                    taken = table.take(pa.array(local[a:b] - rg_start))
                    for rb in taken.to_batches():
                        parts.append(self._to_batch(rb, shard.path, rg_start, validate))
                rg_start += g_rows
        return concat_batches(parts, self.path)

    def read_all(self, columns: Sequence[str] | None = ALL) -> EmbeddingBatch:
        """Everything in one batch. Only for collections known to be small.

        Requested columns are never None: an empty collection gives (0, D) embeddings,
        and a file without an identity or source column gives None for each row.
        """
        out = concat_batches(list(self.iter_batches(1 << 20, columns)), self.path)
        wanted = {"face_id", "identity", "source", "embedding"} if columns is ALL else set(columns)
        n = len(out)
        if "face_id" in wanted and out.face_ids is None and n == 0:
            out.face_ids = np.empty(0, np.int64)
        if "embedding" in wanted and out.embeddings is None:
            out.embeddings = np.empty((0, self.dim), np.float32)
        for col, attr in (("identity", "identities"), ("source", "sources")):
            if col in wanted and getattr(out, attr) is None:
                setattr(out, attr, np.full(n, None, object))
        return out

    def count_identities(self) -> int:
        """Number of distinct non-null identities (streams the identity column)."""
        seen: set[str] = set()
        for b in self.iter_batches(1 << 18, columns=["identity"], validate=False):
            seen.update(x for x in b.identities if x is not None)
        return len(seen)

    def verify(self) -> None:
        """Check every shard's SHA-256 against the manifest (collections with one)."""
        for shard in self.shards:
            if shard.sha256 and sha256_file(shard.path) != shard.sha256:
                raise DataError("checksum does not match collection.json (file changed or damaged)",
                                shard.path)

    # -- internals --------------------------------------------------------------------

    def _columns_for(self, pf: pq.ParquetFile, columns: Sequence[str] | None) -> list[str]:
        names = pf.schema_arrow.names
        wanted = names if columns is ALL else list(columns)
        return [c for c in wanted if c in names]

    def _to_batch(self, rb: pa.RecordBatch, path: Path, offset: int, validate: bool) -> EmbeddingBatch:
        out = EmbeddingBatch(path=path, row_offset=offset)
        names = rb.schema.names
        n = rb.num_rows
        if "face_id" in names:
            out.face_ids = rb.column("face_id").to_numpy(zero_copy_only=False).astype(np.int64, copy=False)
            if validate:
                check_face_ids(out.face_ids, path, offset)
        if "identity" in names:
            out.identities = rb.column("identity").to_numpy(zero_copy_only=False)
        if "source" in names:
            out.sources = rb.column("source").to_numpy(zero_copy_only=False)
        if "embedding" in names:
            out.embeddings = _embeddings(rb.column("embedding"), self.meta.dim, path, offset)
            if validate:
                check_vectors(out.embeddings, path, offset, out.sources)
        for name in names:
            if name not in ("face_id", "identity", "source", "embedding"):
                out.extra[name] = rb.column(name).to_numpy(zero_copy_only=False)
        assert all(len(a) == n for a in (out.face_ids, out.embeddings) if a is not None)
        return out


def open_collection(path: str | os.PathLike, allow_incomplete: bool = False) -> Collection:
    """Open and validate a collection directory, a folder of parquet files, or one file.

    Raises DataError (naming the file) for a missing path, a non-parquet or truncated
    file, a bad schema, or shards of different models/dimensions; IncompleteError for
    a collection whose writer did not finish, unless `allow_incomplete`.
    """
    path = Path(path)
    if not path.exists():
        raise DataError("no such file or directory", path)
    manifest = None
    if path.is_dir() and (path / MANIFEST_NAME).exists():
        manifest = CollectionManifest.load(path / MANIFEST_NAME)
        if not manifest.complete and not allow_incomplete:
            raise IncompleteError(
                "collection is incomplete (its writer was interrupted); rerun the command "
                "that made it to resume",
                path,
            )
        shards = [ShardFile(contained(path, s.file, MANIFEST_NAME), s.rows, s.sha256)
                  for s in manifest.shards]
        for s, entry in zip(shards, manifest.shards, strict=True):
            if not s.path.exists():
                raise DataError("shard listed in collection.json is missing", s.path)
            if s.path.stat().st_size != entry.bytes:
                raise DataError(
                    f"shard size {s.path.stat().st_size} differs from collection.json's "
                    f"{entry.bytes} (truncated or replaced)",
                    s.path,
                )
    elif path.is_dir():
        files = sorted(p for p in path.glob("*.parquet") if p.is_file())
        if not files:
            raise DataError("directory holds no collection.json and no *.parquet files", path)
        shards = [ShardFile(f, _open_parquet(f).metadata.num_rows) for f in files]
    else:
        shards = [ShardFile(path, _open_parquet(path).metadata.num_rows)]

    meta = manifest.meta if manifest else None
    names = None
    if manifest is not None:
        names = ["face_id", "identity", "source", "embedding", *manifest.extra_columns]
    for s in shards:
        try:
            schema = _open_parquet(s.path).schema_arrow
            shard_meta = meta_from_schema(schema, s.path)
        except BAD_FILE as err:
            raise DataError(f"damaged schema metadata ({_first_line(err)})", s.path) from err
        names = names or schema.names
        if sorted(schema.names) != sorted(names):
            raise DataError(f"has columns {schema.names}, expected {names} (damaged, or "
                            "from another collection)", s.path)
        if meta is None:
            meta = shard_meta
        else:
            meta.check_compatible(shard_meta, s.path)
    if meta is None:  # a finished collection with no rows
        raise DataError("collection has no shards and no metadata", path)
    return Collection(path, meta, shards, manifest)


def contained(root: Path, name: str, named_in: str) -> Path:
    """root / name, refused (DataError naming the manifest) unless it is a plain file
    name that resolves inside `root` (no "..", no absolute path, no symlink out)."""
    where = root / named_in
    if not isinstance(name, str) or not name or Path(name).name != name or name in (".", ".."):
        raise DataError(f"names {name!r}: not a file of this collection", where)
    target = root / name
    if target.exists() and not target.resolve().is_relative_to(root.resolve()):
        raise DataError(f"names {name!r}, which resolves outside the collection", where)
    return target


def concat_batches(parts: list[EmbeddingBatch], path: Path) -> EmbeddingBatch:
    """Join batches column by column (columns missing in the first stay None)."""
    if not parts:
        return EmbeddingBatch(path=path, row_offset=0, face_ids=np.empty(0, np.int64),
                              identities=np.empty(0, object), sources=np.empty(0, object))
    first = parts[0]
    out = EmbeddingBatch(path=path, row_offset=0)
    for name in ("face_ids", "identities", "sources", "embeddings"):
        if getattr(first, name) is not None:
            setattr(out, name, np.concatenate([getattr(p, name) for p in parts]))
    for name in first.extra:
        out.extra[name] = np.concatenate([p.extra[name] for p in parts])
    return out


def _open_parquet(path: Path) -> pq.ParquetFile:
    try:
        # pages written with a CRC (faceidx >= 0.2) are checked as they are read
        return pq.ParquetFile(path, page_checksum_verification=True)
    except BAD_FILE as err:
        raise DataError(f"not a readable parquet file ({_first_line(err)})", path) from err


def _first_line(err: BaseException) -> str:
    text = str(err).strip()
    return (text.splitlines()[0] if text else type(err).__name__)[:300]


def _embeddings(col: pa.Array, dim: int, path: Path, offset: int) -> np.ndarray:
    if col.null_count:
        i = int(np.flatnonzero(col.is_null().to_numpy(zero_copy_only=False))[0])
        raise DataError("embedding is null", path, offset + i)
    if pa.types.is_fixed_size_list(col.type):
        flat = col.flatten()
    else:
        lengths = col.value_lengths().to_numpy(zero_copy_only=False)
        bad = np.flatnonzero(lengths != dim)
        if len(bad):
            raise DataError(f"embedding has length {lengths[bad[0]]}, expected {dim}", path,
                            offset + int(bad[0]))
        flat = col.flatten()
    return flat.to_numpy(zero_copy_only=False).astype(np.float32, copy=False).reshape(-1, dim)
