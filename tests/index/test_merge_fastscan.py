"""merge_fast_scan against one index holding everything (FAISS's merge_from overruns here)."""

from __future__ import annotations

import faiss
import numpy as np
import pytest

from faceidx.index.merge import merge_fast_scan


def trained(spec: str, x: np.ndarray):
    index = faiss.index_factory(x.shape[1], spec)
    index.train(x)
    return index


@pytest.mark.parametrize("spec,sizes", [
    ("IVF1,PQ8x4fs", [128, 40, 128, 1]),     # list length hits block_size (128 codes) before a merge
    ("IVF8,PQ16x4fsr", [300, 0, 517, 64]),
])
def test_merge_fast_scan_equals_adding_everything(spec, sizes):
    rng = np.random.default_rng(0)
    x = rng.standard_normal((sum(sizes), 32)).astype(np.float32)
    base = trained(spec, x)
    whole = faiss.clone_index(base)
    whole.add_with_ids(x, np.arange(len(x)))
    shards, lo = [], 0
    for n in sizes:
        shard = faiss.clone_index(base)
        shard.add_with_ids(x[lo:lo + n], np.arange(lo, lo + n))
        shards.append(shard)
        lo += n
    merged = faiss.clone_index(base)
    merge_fast_scan(merged, shards)
    assert merged.ntotal == len(x)
    for index in (whole, merged):
        index.nprobe = index.nlist
    d_ref, i_ref = whole.search(x[::7], 10)
    d, i = merged.search(x[::7], 10)
    np.testing.assert_array_equal(i, i_ref)
    np.testing.assert_allclose(d, d_ref, rtol=1e-5)


def test_merge_fast_scan_refuses_a_non_empty_target():
    x = np.random.default_rng(1).standard_normal((200, 32)).astype(np.float32)
    index = trained("IVF2,PQ8x4fs", x)
    index.add(x[:10])
    with pytest.raises(ValueError, match="empty"):
        merge_fast_scan(index, [faiss.clone_index(index)])
