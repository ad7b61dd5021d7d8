"""CoarseAssigner: exact lists for HNSW-quantized IVF, shared by parts, mismatch refused."""

from __future__ import annotations

import faiss
import numpy as np
import pytest

from faceidx.errors import DataError
from faceidx.index.coarse import CoarseAssigner, Part


def ivf(spec: str, x: np.ndarray, seed: int = 0, train: int = 20_000):
    index = faiss.index_factory(x.shape[1], spec)
    faiss.extract_index_ivf(index).cp.seed = seed
    index.train(x[:train])
    return index


@pytest.fixture(scope="module")
def data():
    rng = np.random.default_rng(0)
    x = rng.standard_normal((20_000, 16)).astype(np.float32)
    return x / np.linalg.norm(x, axis=1, keepdims=True)


def test_hnsw_quantizer_is_assigned_exactly(data):
    index = ivf("IVF256_HNSW32,PQ8x4fs", data)
    coarse = CoarseAssigner.for_parts([Part.of(index)])
    q = data[:200]
    _, lists = coarse.assign(q, 64)
    centroids = faiss.extract_index_ivf(index).quantizer.reconstruct_n(0, 256)
    d2 = ((q[:, None, :] - centroids[None]) ** 2).sum(-1)
    ref = np.argsort(d2, axis=1)[:, :64]
    assert all(set(a) == set(b) for a, b in zip(lists, ref, strict=True))


def test_parts_search_like_one_index(data):
    """Shards searched with one shared assignment return what one index would."""
    base = ivf("OPQ4,IVF64,PQ8x4fs", data, train=3000)
    whole = faiss.clone_index(base)
    whole.add(data)
    parts = []
    for lo in range(0, len(data), 7000):
        shard = faiss.clone_index(base)
        shard.add_with_ids(data[lo:lo + 7000], np.arange(lo, min(lo + 7000, len(data))))
        parts.append(Part.of(shard))
    coarse = CoarseAssigner.for_parts(parts)
    q = data[::97]
    faiss.extract_index_ivf(whole).nprobe = 8
    d_ref, i_ref = whole.search(q, 5)
    got_d, got_i = [], []
    for part in parts:
        xt = part.transform(q)
        dist, lists = coarse.assign(xt, 8)
        part.ivf.nprobe = 8
        d, i = part.ivf.search_preassigned(xt, 5, lists, dist)
        got_d.append(d)
        got_i.append(i)
    d, i = np.concatenate(got_d, 1), np.concatenate(got_i, 1)
    order = np.argsort(d, axis=1, kind="stable")[:, :5]
    np.testing.assert_allclose(np.take_along_axis(d, order, 1), d_ref, rtol=1e-5)
    assert (np.sort(np.take_along_axis(i, order, 1), 1) == np.sort(i_ref, 1)).mean() > 0.99


def test_parts_trained_apart_are_refused(data):
    a = Part.of(ivf("IVF32,PQ8x4fs", data, seed=1))
    b = Part.of(ivf("IVF32,PQ8x4fs", data[::-1].copy(), seed=2))
    with pytest.raises(DataError, match="other centroids") as err:
        CoarseAssigner.for_parts([a, b], ["s0/index.faiss", "s1/index.faiss"])
    assert "s1/index.faiss" in str(err.value)


def test_no_ivf_part_needs_no_assigner(data):
    flat = faiss.IndexFlatL2(16)
    flat.add(data[:10])
    assert CoarseAssigner.for_parts([Part.of(flat)]) is None
