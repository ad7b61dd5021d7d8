"""Torch coarse k-means (faceidx/index/kmeans.py) against naive references and FAISS's own."""

from __future__ import annotations

import numpy as np
import pytest

torch = pytest.importorskip("torch")

from faceidx.index import BuildOptions, build_index, open_index  # noqa: E402
from faceidx.index.faissio import faiss, ivf_of  # noqa: E402
from faceidx.index.gpu import kmeans_backend, torch_cuda, train_coarse_in_torch  # noqa: E402
from faceidx.index.kmeans import assign_chunks, kmeans, split_empty  # noqa: E402
from faceidx.index.manifest import IndexManifest  # noqa: E402
from faceidx.index.train import make_index  # noqa: E402
from tests.conftest import make_clusters  # noqa: E402
from tests.index.helpers import write_collection  # noqa: E402


def mixture(n_ids=200, per_id=40, dim=32, seed=0) -> np.ndarray:
    x, _ = make_clusters(n_ids, per_id, dim, seed=seed, noise=0.6)
    return np.ascontiguousarray(x / np.linalg.norm(x, axis=1, keepdims=True), dtype=np.float32)


@pytest.mark.parametrize("chunk", [1, 7, 1000, 5000])
def test_assignment_matches_brute_force_in_any_chunking(chunk):
    rng = np.random.default_rng(1)
    x = rng.normal(size=(600, 12)).astype(np.float32)
    c = rng.normal(size=(40, 12)).astype(np.float32)
    assign, partial = assign_chunks(torch.from_numpy(x), torch.from_numpy(c), chunk)
    d2 = ((x[:, None, :] - c[None, :, :]) ** 2).sum(-1)
    np.testing.assert_array_equal(assign.numpy(), d2.argmin(1))
    np.testing.assert_allclose(partial.numpy() + (x * x).sum(1), d2.min(1), rtol=1e-4, atol=1e-4)


def test_objective_close_to_faiss_kmeans_on_the_same_sample():
    x = mixture()
    k = 128
    _, stats = kmeans(x, k, device="cpu", iters=10, seed=0)
    ref = faiss().Kmeans(x.shape[1], k, niter=10, seed=0)
    ref.train(x)
    faiss_obj = float(ref.obj[-1])
    assert stats["objective"] <= 1.03 * faiss_obj, (stats["objective"], faiss_obj)
    assert stats["points"] == len(x) and stats["centroids"] == k


def test_sample_is_capped_at_max_points_per_centroid():
    x = mixture(n_ids=50, per_id=40)
    centroids, stats = kmeans(x, 8, device="cpu", iters=2, max_points_per_centroid=16)
    assert stats["points"] == 8 * 16
    assert centroids.shape == (8, x.shape[1])


def test_empty_clusters_are_split_off_large_ones():
    base = np.eye(5, 8, dtype=np.float32)
    x = np.repeat(base, [60, 10, 10, 10, 10], axis=0)  # 5 distinct points, 20 centroids
    centroids, stats = kmeans(x, 20, device="cpu", iters=5, seed=3)
    assert np.isfinite(centroids).all() and np.isfinite(stats["objective"])
    assert stats["empty_cluster_splits"] > 0  # duplicates leave clusters empty every round
    d2 = ((x[:, None, :] - centroids[None]) ** 2).sum(-1)
    assert len(np.unique(d2.argmin(1))) >= 3  # split centroids take points again


def test_split_empty_halves_the_donor_and_nudges_both_apart():
    c = torch.tensor([[1.0, 1.0], [0.0, 0.0]])
    counts = torch.tensor([10, 0])
    assert split_empty(c, counts, np.random.default_rng(0)) == 1
    eps = 1 / 1024
    np.testing.assert_allclose(c.numpy(), [[1 - eps, 1 + eps], [1 + eps, 1 - eps]], rtol=1e-6)


def test_too_few_points_is_a_clear_error():
    with pytest.raises(ValueError, match="at least k=10"):
        kmeans(np.zeros((5, 4), np.float32), 10)


def test_torch_centroids_become_the_ivf_quantizer_and_faiss_does_not_retrain():
    x = mixture()
    index = make_index("IVF64,PQ8x4fs", x.shape[1])
    stats = train_coarse_in_torch(index, x, "cpu", seed=0)
    ivf = ivf_of(index)
    before = ivf.quantizer.reconstruct_n(0, 64)
    assert stats["centroids"] == 64 and ivf.quantizer.ntotal == 64
    index.train(x)
    np.testing.assert_array_equal(ivf.quantizer.reconstruct_n(0, 64), before)
    index.add_with_ids(x, np.arange(len(x)))
    ivf.nprobe = 16
    _, got = index.search(x[:200], 1)
    assert np.mean(got[:, 0] == np.arange(200)) > 0.8
    assert train_coarse_in_torch(index, x, "cpu", seed=0) == {}  # a filled quantizer is kept


def test_pretransformed_index_keeps_faiss_kmeans():
    x = mixture()
    index = make_index("PCA16,IVF32,Flat", x.shape[1])
    assert train_coarse_in_torch(index, x, "cpu", seed=0) == {}


def test_cpu_only_machines_train_on_the_cpu():
    assert kmeans_backend("cpu") == "cpu"
    if not torch_cuda():
        assert kmeans_backend("auto") == "cpu"


@pytest.mark.gpu
def test_build_with_torch_kmeans_on_cuda(tmp_path):
    if not torch_cuda():
        pytest.skip("torch sees no CUDA GPU")
    x, _ = write_collection(tmp_path / "c", n_ids=300, per_id=8)
    spec = dict(index_spec="IVF32,PQ8x4fsr", tune_queries=200)
    build_index(tmp_path / "c", tmp_path / "gpu", BuildOptions(device="cuda", **spec))
    build_index(tmp_path / "c", tmp_path / "cpu", BuildOptions(device="cpu", **spec))
    train = IndexManifest.load(tmp_path / "gpu").build["train"]
    assert train["kmeans"] in ("torch-cuda", "faiss-gpu")
    if train["kmeans"] == "torch-cuda":
        assert train["coarse"]["kmeans"] == "torch:cuda"
    a = open_index(tmp_path / "gpu").search(x[:100], k=1, nprobe=32)[1]
    b = open_index(tmp_path / "cpu").search(x[:100], k=1, nprobe=32)[1]
    assert np.mean(a == b) > 0.95
