"""Merge shard indexes into one index whose inverted lists are memory-mapped at query time.

Two layouts, chosen by the codes FAISS can put on disk:
- 8-bit PQ / flat-coded IVF: FAISS OnDiskInvertedLists (``merged.ivfdata``), filled
  list by list from the shard files, so the merge itself holds no lists in RAM.
- fast-scan IVF (``x4fs``): OnDiskInvertedLists cannot hold its packed blocks, so the
  shards are merged into one index (RAM: the codes, ~code_bytes+8 per vector) and
  written as ``merged.index``, which search opens with IO_FLAG_MMAP.
Row stores stay in the shard folders (they are memory-mapped already). Shards added
later (``faceidx add``) are searched beside the merged index until the next merge.
"""

from __future__ import annotations

import logging
from pathlib import Path

import numpy as np

from faceidx.errors import DataError
from faceidx.index.faissio import faiss, ivf_of, read_index, write_index
from faceidx.index.manifest import SHARD_INDEX, IndexManifest

log = logging.getLogger(__name__)

MERGED_DIR = "merged"


def is_fast_scan(index) -> bool:
    ivf = ivf_of(index)
    return ivf is not None and isinstance(faiss().downcast_index(ivf), faiss().IndexIVFFastScan)


def merge_index(index_dir: str | Path) -> dict:
    """Merge every shard of `index_dir` into a new merged folder; publish it in manifest.json.

    The caller holds the writer lock (IndexWriter.merge, build_index). The folder is
    ``merged/`` or, when a published manifest still names that one, ``merged.gN/``
    (N: the generation that publishes it); the folder it replaces is deleted after the
    publish, so readers of the previous generation keep their files.
    """
    from faceidx.index.staging import collect_garbage, pending_dirs

    out = Path(index_dir)
    manifest = IndexManifest.load(out)
    if not manifest.shards:
        raise DataError("index holds no shards to merge", out)
    if manifest.merged and manifest.merged["shards"] == len(manifest.shards):
        log.info("index already merged")
        return manifest.merged
    info = merge_shards(out, manifest, len(manifest.shards), manifest.generation + 1)
    manifest.merged = info
    manifest.save(out)
    collect_garbage(out, manifest, pending_dirs(out))
    log.info("merged %d shard(s) into %s", info["shards"], info["file"])
    return info


def merge_shards(out: Path, manifest: IndexManifest, count: int, generation: int) -> dict:
    """Merge the FAISS files of the first `count` shards into a new folder (not yet
    published); returns the manifest's "merged" entry for it."""
    from faceidx.index.staging import staging_dir

    trained = read_index(out / "trained.index")
    if ivf_of(trained) is None:
        raise DataError(f"only IVF indexes can be merged to on-disk lists; this one is "
                        f"{manifest.factory!r}", out)
    name = MERGED_DIR
    if (out / name).exists():
        name = f"{MERGED_DIR}.g{generation}"
    tmp = staging_dir(out, name)
    files = [out / s.dir / SHARD_INDEX for s in manifest.shards[:count]]
    if is_fast_scan(trained):
        info = _merge_in_memory(trained, files, tmp)
    else:
        info = _merge_ondisk(trained, files, tmp)
    final = out / name
    tmp.rename(final)
    if info.get("ondisk"):
        _relink_ivfdata(final)
    info["shards"] = count
    info["file"] = f"{name}/merged.index"
    return info


def _merge_in_memory(trained, files: list[Path], tmp: Path) -> dict:
    shards = [read_index(f, mmap=True) for f in files]  # RAM: the merged codes only
    merge_fast_scan(ivf_of(trained), [ivf_of(s) for s in shards])
    del shards
    trained.ntotal = ivf_of(trained).ntotal
    write_index(trained, tmp / "merged.index")
    return {"mmap": True, "ondisk": False, "layout": "fast-scan, memory-mapped index file"}


def merge_fast_scan(target, sources: list, drop: np.ndarray | None = None) -> None:
    """Append the lists of fast-scan IVF `sources` to the empty lists of `target`, in order.

    drop: ids left out (erasure); the blocks are packed from zeroed memory, so no code
    of a dropped entry stays in a block's padding.

    FAISS's own merge_from is not used: BlockInvertedLists.add_entries (faiss 1.15.1)
    copies whole blocks past the end of the list when the list already holds a multiple
    of block_size entries (1024 for PQ64x4), which corrupted the heap merging 10M vectors.
    Here each list's codes are unpacked from every source, concatenated and packed once,
    so each target list is written in one add_entries call on an empty list.
    """
    f = faiss()
    packer = target.get_CodePacker()
    per_block, block_bytes, code_size = packer.nvec, packer.block_size, packer.code_size
    lists = target.invlists
    for no in range(target.nlist):
        if lists.list_size(no):
            raise ValueError("merge_fast_scan needs an empty target index")
        ids, codes = [], []
        for src in sources:
            n = src.invlists.list_size(no)
            if n:
                ids.append(f.rev_swig_ptr(src.invlists.get_ids(no), n).copy())
                codes.append(_unpack(f, packer, src.invlists.get_codes(no), n)[:n])
        if drop is not None and len(drop) and ids:
            keep = [~np.isin(i, drop) for i in ids]
            ids = [i[k] for i, k in zip(ids, keep, strict=True) if k.any()]
            codes = [c[k] for c, k in zip(codes, keep, strict=True) if k.any()]
        if not ids:
            continue
        n = sum(len(i) for i in ids)
        blocks = -(-n // per_block)
        flat = np.zeros((blocks * per_block, code_size), np.uint8)
        flat[:n] = np.concatenate(codes)
        packed = np.empty(blocks * block_bytes, np.uint8)
        for b in range(blocks):
            packer.pack_all(f.swig_ptr(flat[b * per_block:]), f.swig_ptr(packed[b * block_bytes:]))
        all_ids = np.concatenate(ids)  # named: swig_ptr does not keep its array alive
        lists.add_entries(no, n, f.swig_ptr(all_ids), f.swig_ptr(packed))
    target.ntotal = sum(int(lists.list_size(no)) for no in range(target.nlist))


def _unpack(f, packer, pointer, n: int) -> np.ndarray:
    """The n codes of a packed block list, one row per vector (padded to whole blocks)."""
    blocks = -(-n // packer.nvec)
    packed = f.rev_swig_ptr(pointer, blocks * packer.block_size)
    flat = np.empty((blocks * packer.nvec, packer.code_size), np.uint8)
    for b in range(blocks):
        packer.unpack_all(f.swig_ptr(packed[b * packer.block_size:]), f.swig_ptr(flat[b * packer.nvec:]))
    return flat


def _merge_ondisk(trained, files: list[Path], tmp: Path) -> dict:
    f = faiss()
    target = ivf_of(trained)
    shards = [read_index(p, mmap=True) for p in files]
    lists = f.InvertedListsPtrVector()
    for s in shards:
        lists.push_back(ivf_of(s).invlists)
    ondisk = f.OnDiskInvertedLists(target.nlist, target.code_size, str(tmp / "merged.ivfdata"))
    ntotal = ondisk.merge_from_multiple(lists.data(), lists.size(), False, False)
    target.replace_invlists(ondisk, True)
    ondisk.this.disown()
    target.ntotal = trained.ntotal = ntotal
    write_index(trained, tmp / "merged.index")
    return {"mmap": False, "ondisk": True, "layout": "OnDiskInvertedLists (merged.ivfdata)"}


def _relink_ivfdata(folder: Path) -> None:
    """Point merged.index at merged.ivfdata in its final folder (it names the temp one)."""
    index = read_index(folder / "merged.index", ondisk=True)
    write_index(index, folder / "merged.index")
