"""The guarded FAISS GPU path: never taken on CPU-only machines; real GPU run when present."""

from __future__ import annotations

import numpy as np
import pytest

from faceidx.index import BuildOptions, build_index, open_index
from faceidx.index.faissio import faiss, ivf_of
from faceidx.index.gpu import num_gpus, swap_quantizer, torch_cuda, use_gpu
from faceidx.index.train import make_index
from tests.index.helpers import write_collection


def test_cpu_only_machines_never_take_the_gpu_path():
    if num_gpus() == 0:
        assert use_gpu("auto") is False
        if not torch_cuda():  # torch's GPU still trains the coarse k-means
            with pytest.raises(RuntimeError, match="sees a GPU"):
                use_gpu("cuda")
    assert use_gpu("cpu") is False


def test_quantizer_swap_adds_exactly_like_the_owned_quantizer():
    """The mechanism gpu_assignment uses, checked with a CPU copy of the centroids."""
    rng = np.random.default_rng(0)
    x = rng.normal(size=(3000, 16)).astype(np.float32)
    index = make_index("IVF16,PQ8x4fsr", 16)
    index.train(x)
    plain = faiss().clone_index(index)
    plain.add_with_ids(x, np.arange(3000))
    ivf = ivf_of(index)
    cpu_q = ivf.quantizer
    copy = faiss().IndexFlatL2(16)
    copy.add(cpu_q.reconstruct_n(0, cpu_q.ntotal))
    owned = swap_quantizer(ivf, copy, False)
    index.add_with_ids(x, np.arange(3000))
    swap_quantizer(ivf, cpu_q, owned)
    assert ivf.own_fields == owned
    np.testing.assert_array_equal(faiss().serialize_index(index), faiss().serialize_index(plain))


@pytest.mark.gpu
def test_build_on_gpu_matches_cpu(tmp_path):
    if num_gpus() == 0:
        pytest.skip("faiss sees no GPU")
    x, _ = write_collection(tmp_path / "c", n_ids=300, per_id=8)
    spec = dict(index_spec="IVF32,PQ8x4fsr", tune_queries=200)
    build_index(tmp_path / "c", tmp_path / "gpu", BuildOptions(device="cuda", **spec))
    build_index(tmp_path / "c", tmp_path / "cpu", BuildOptions(device="cpu", **spec))
    a = open_index(tmp_path / "gpu").search(x[:100], k=1, nprobe=32)[1]
    b = open_index(tmp_path / "cpu").search(x[:100], k=1, nprobe=32)[1]
    assert np.mean(a == b) > 0.95
