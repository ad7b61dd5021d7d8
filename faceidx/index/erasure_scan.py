"""Look for anything left of erased faces: `faceidx erase --verify`.

    report = scan_for_traces(["faces.index", "faces/"], erased_vectors, names, sources,
                             index_dir="faces.index")

Every regular file under the given roots is read byte by byte for the erased vectors
as float32 and as float16 (at every alignment), and every file but arrays and index files
for the names and sources as UTF-8 (whole strings: not as part of a longer name); the
row stores' string blobs are decoded and compared exactly. Parquet collections are also read
through the collection reader, since their string columns are compressed. Every FAISS
part of the index is searched exhaustively for codes that decode near an erased vector
(cosine >= near) under an id that holds no face any more. The report lists each trace
with its file; ``clean`` is true when there is none.
"""

from __future__ import annotations

import mmap
import os
from collections.abc import Iterator, Sequence
from pathlib import Path

import numpy as np

NEAR_COSINE = 0.95
# files of numbers (and string blobs, decoded exactly by _blob_traces): a short name is
# found by chance in their bytes, so they are searched for vectors only
NUMERIC = {".npy", ".faiss", ".index", ".ivfdata", ".bin"}
_WORD = {4: np.uint32, 2: np.uint16}


def scan_for_traces(roots: Sequence[str | os.PathLike], vectors: np.ndarray,
                    names: Sequence[str] = (), sources: Sequence[str] = (),
                    index_dir: str | os.PathLike | None = None, raw: np.ndarray | None = None,
                    near: float = NEAR_COSINE, face_ids: Sequence[int] = ()) -> dict:
    """Scan `roots` for the erased `vectors` (unit, float32; `raw`: as stored in the
    collection), `names`, `sources` and `face_ids` (in row stores); with `index_dir`,
    search its FAISS parts too."""
    vecs = [np.asarray(vectors, np.float32).reshape(len(vectors), -1)]
    if raw is not None and len(raw):
        vecs.append(np.asarray(raw, np.float32).reshape(len(raw), -1))
    v32 = np.concatenate(vecs)
    v16 = v32.astype(np.float16)
    strings = [s.encode() for s in {*names, *sources} if s]
    traces: list[dict] = []
    files, total = 0, 0
    for path in _files(roots):
        files += 1
        total += path.stat().st_size
        with open(path, "rb") as fh:
            try:
                data = mmap.mmap(fh.fileno(), 0, access=mmap.ACCESS_READ)
            except ValueError:  # empty file
                continue
            with data:
                buf = np.frombuffer(data, np.uint8)
                for what, needles in (("float32 vector", v32), ("float16 vector", v16)):
                    n = count_vectors(buf, needles)
                    if n:
                        traces.append({"file": str(path), "what": what, "count": n})
                n = 0 if path.suffix in NUMERIC else sum(_count_string(data, s) for s in strings)
                if n:
                    traces.append({"file": str(path), "what": "name or source", "count": n})
                del buf
    for root in roots:
        traces.extend(_collection_traces(Path(root), v32, set(names), set(sources)))
        traces.extend(_blob_traces(Path(root), set(names), set(sources)))
        traces.extend(_face_id_traces(Path(root), np.asarray(face_ids, np.int64)))
    if index_dir is not None:
        traces.extend(_code_traces(Path(index_dir), np.asarray(vectors, np.float32), near))
    return {"files": files, "bytes": total, "vectors": int(len(vectors)),
            "names": len(set(names)), "sources": len(set(sources)), "traces": traces,
            "clean": not traces}


def _files(roots: Sequence[str | os.PathLike]) -> Iterator[Path]:
    for root in roots:
        root = Path(root)
        if root.is_file():
            yield root
            continue
        for dirpath, _, filenames in os.walk(root):
            for name in filenames:
                p = Path(dirpath) / name
                if p.is_file() and not p.is_symlink():
                    yield p


def count_vectors(buf: np.ndarray, needles: np.ndarray) -> int:
    """How many of `needles` (rows of float32 or float16) occur in `buf` at any alignment."""
    if not len(needles):
        return 0
    width = needles.dtype.itemsize
    words = np.ascontiguousarray(needles).view(_WORD[width])
    # search on each needle's largest component: rare in other data, never a scrubbed zero
    key_at = np.argmax(np.abs(needles.astype(np.float32)), axis=1)
    keys = words[np.arange(len(words)), key_at]
    found = np.zeros(len(needles), bool)
    row_bytes = needles.shape[1] * width
    for align in range(width):
        usable = (len(buf) - align) // width
        if usable <= 0:
            continue
        hay = buf[align:align + usable * width].view(_WORD[width])
        for pos in np.flatnonzero(np.isin(hay, keys)):
            for j in np.flatnonzero(keys == hay[pos]):
                start = align + (int(pos) - int(key_at[j])) * width
                if 0 <= start <= len(buf) - row_bytes and not found[j]:
                    found[j] = bytes(buf[start:start + row_bytes]) == words[j].tobytes()
    return int(found.sum())


def _count_string(data: mmap.mmap, s: bytes) -> int:
    """Occurrences of `s` not inside a longer word (letters, digits, - _ . on either side)."""
    count, at = 0, data.find(s)
    while at >= 0:
        before = data[at - 1:at] if at else b""
        after = data[at + len(s):at + len(s) + 1]
        if not (_wordy(before) or _wordy(after)):
            count += 1
        at = data.find(s, at + 1)
    return count


def _wordy(b: bytes) -> bool:
    return bool(b) and (b.isalnum() or b in b"-_.")


def _blob_traces(root: Path, names: set, sources: set) -> list[dict]:
    """Exact matches among the strings of row-store blobs (names are stored back to back,
    so a byte search cannot tell "ann" from the start of "anna")."""
    from faceidx.index.store import StringBlob

    out = []
    for off in sorted(root.rglob("*_offsets.npy")) if root.is_dir() else []:
        blob_path = off.with_name(off.name.replace("_offsets.npy", "_names.bin")
                                  if off.name.startswith("identity") else "sources.bin")
        wanted = names if off.name.startswith("identity") else sources
        if not wanted or not blob_path.exists():
            continue
        try:
            blob = StringBlob(blob_path, off)
            hits = sum(blob.get(i) in wanted for i in range(len(blob)))
        except Exception:  # a damaged blob cannot be searched by string: say so
            out.append({"file": str(blob_path), "what": "unreadable string blob", "count": 1})
            continue
        if hits:
            out.append({"file": str(blob_path), "what": "name or source", "count": hits})
    return out


def _face_id_traces(root: Path, face_ids: np.ndarray) -> list[dict]:
    out = []
    if not len(face_ids) or not root.is_dir():
        return out
    for name in ("face_ids.npy", "sorted_face_ids.npy"):
        for path in sorted(root.rglob(name)):
            hits = int(np.isin(np.load(path, mmap_mode="r"), face_ids).sum())
            if hits:
                out.append({"file": str(path), "what": "erased face id", "count": hits})
    return out


def _collection_traces(root: Path, v32: np.ndarray, names: set, sources: set) -> list[dict]:
    """Rows of a parquet collection under `root` holding an erased vector, name or source."""
    from faceidx.errors import DataError
    from faceidx.io import open_collection

    if not root.is_dir() or not (any(root.glob("*.parquet")) or (root / "collection.json").exists()):
        return []
    try:
        coll = open_collection(root, allow_incomplete=True)
    except DataError:
        return []
    unit = v32 / np.maximum(np.linalg.norm(v32, axis=1, keepdims=True), 1e-12)
    hits = 0
    for b in coll.iter_batches(65_536, validate=False):
        if b.identities is not None and names:
            hits += int(np.isin(b.identities, list(names)).sum())
        if b.sources is not None and sources:
            hits += int(np.isin(b.sources, list(sources)).sum())
        if b.embeddings is not None and len(unit):
            x = b.embeddings / np.maximum(np.linalg.norm(b.embeddings, axis=1, keepdims=True), 1e-12)
            hits += int(((x @ unit.T) > 0.9999).any(axis=1).sum())
    return [{"file": str(root), "what": "collection row", "count": hits}] if hits else []


def _code_traces(index_dir: Path, unit: np.ndarray, near: float) -> list[dict]:
    """FAISS entries decoding within cosine `near` of an erased vector, under an id that
    holds no face (an erased row's slot, or no row at all)."""
    from faceidx.index.faissio import ivf_of, prepare, read_index
    from faceidx.index.manifest import SHARD_INDEX, IndexManifest, load_mean
    from faceidx.index.store import ShardStore, load_erased

    if not len(unit):
        return []
    m = IndexManifest.load(index_dir)
    live = [s.row_offset + np.flatnonzero(
        np.asarray(ShardStore(index_dir / s.dir, s.row_offset, s.rows, m.dim).face_ids) >= 0)
        for s in m.shards]
    live = np.concatenate(live) if live else np.empty(0, np.int64)
    live = np.setdiff1d(live, load_erased(index_dir))  # rows listed erased by faceidx < 0.2
    q = prepare(unit, load_mean(index_dir, m.dim) if m.center else None)
    parts = [(index_dir / s.dir / SHARD_INDEX, {}) for s in m.shards]
    if m.merged:
        parts.append((index_dir / m.merged["file"], {"mmap": bool(m.merged.get("mmap")),
                                                     "ondisk": bool(m.merged.get("ondisk"))}))
    out = []
    for file, flags in parts:
        index = read_index(file, **flags)
        if not index.ntotal:
            continue
        ivf = ivf_of(index)
        if ivf is not None:
            ivf.nprobe = ivf.nlist
        d, ids = index.search(np.ascontiguousarray(q), min(16, int(index.ntotal)))
        cos = 1.0 - d / 2.0
        bad = (cos >= near) & (ids >= 0) & ~np.isin(ids, live)
        if bad.any():
            out.append({"file": str(file), "what": f"code decoding at cosine >= {near}",
                        "count": int(bad.sum())})
    return out
