"""The synthetic face model: statistics within tolerance of the dlib/LFW targets, solved
parameters against naive references, the long tail of images per identity, determinism."""

from __future__ import annotations

import numpy as np
import pytest

from faceidx.synth import SyntheticFaces, iter_synthetic, report_stats, sample_raw
from faceidx.synth.counts import clipped_mean, count_cap, draw_counts, solve_shape
from faceidx.synth.model import (
    FaceTargets,
    angular_second_moments,
    diff_cos_std,
    solve_spectrum,
    spectrum,
)

# -- the default generator reproduces dlib 128-D on LFW (raw vectors) -----------------------


@pytest.fixture(scope="module")
def default_stats(model128):
    gen = SyntheticFaces(2000, 5, dim=128, seed=0, model=model128)
    raw, labels = sample_raw(gen)
    stored = raw / np.linalg.norm(raw, axis=1, keepdims=True)
    return report_stats(raw, labels), report_stats(stored, labels)


def test_raw_statistics_match_targets(default_stats):
    s, _ = default_stats
    assert s["rows"] > 4000 and s["identities"] == 2000
    assert s["same_cos"] == pytest.approx(0.69, abs=0.05)
    assert s["same_cos_std"] == pytest.approx(0.13, abs=0.04)
    assert abs(s["diff_cos"]) < 0.03
    assert s["diff_cos_std"] == pytest.approx(0.17, abs=0.04)
    assert s["mean_norm"] == pytest.approx(1.31, abs=0.05)
    assert s["avg_norm"] == pytest.approx(1.43, abs=0.05)
    assert s["norm_ratio"] == pytest.approx(1.31 / 1.43, abs=0.02)
    assert s["top_half_share"] == pytest.approx(0.97, abs=0.02)
    assert s["pc1_share"] == pytest.approx(0.10, abs=0.03)


def test_stored_vectors_keep_the_hard_structure(default_stats):
    """After L2 normalisation every face sits in a narrow cone: unrelated people score
    ~0.84 uncentred, which is what makes ANN search on faces harder than on isotropic data."""
    raw, stored = default_stats
    assert stored["avg_norm"] == pytest.approx(1.0, abs=1e-5)
    assert stored["mean_norm"] == pytest.approx(raw["norm_ratio"], abs=0.02)
    assert stored["raw_diff_cos"] > 0.7
    assert stored["raw_same_cos"] > stored["raw_diff_cos"] + 0.05
    assert stored["same_cos"] == pytest.approx(raw["same_cos"], abs=0.02)
    assert 20 < stored["participation_ratio"] < 50  # far from isotropic (128)


# -- the solved parameters, against naive references -------------------------------------


def test_solved_spectrum_hits_its_three_targets():
    t = FaceTargets()
    alpha, tau, beta = solve_spectrum(t.pc1_share, t.top_half_share, t.diff_cos_std, 128)
    lam = spectrum(alpha, tau, beta, 128)
    assert lam.sum() == pytest.approx(1.0)
    assert np.all(np.diff(lam) <= 0)
    assert lam[0] == pytest.approx(0.10, abs=1e-3)
    assert lam[:64].sum() == pytest.approx(0.97, abs=1e-3)
    assert diff_cos_std(lam) == pytest.approx(0.17, abs=1e-3)


def test_angular_moments_match_monte_carlo():
    lam = np.array([4.0, 2.0, 1.0, 0.5, 0.25, 0.1])
    rng = np.random.default_rng(0)
    x = rng.standard_normal((400_000, lam.size)) * np.sqrt(lam)
    naive = (x**2 / (x**2).sum(axis=1, keepdims=True)).mean(axis=0)
    m = angular_second_moments(lam)
    assert m.sum() == pytest.approx(1.0, abs=1e-6)
    np.testing.assert_allclose(m, naive, atol=2e-3)
    y = rng.standard_normal((400_000, lam.size)) * np.sqrt(lam)
    cos = (x * y).sum(1) / np.linalg.norm(x, axis=1) / np.linalg.norm(y, axis=1)
    assert diff_cos_std(lam) == pytest.approx(cos.std(), abs=3e-3)


def test_model_parameters_are_sane(model128):
    d = model128.describe()
    assert 0.5 < d["rho"] < 0.8 and 0.0 < d["sigma"] < 1.0
    assert d["mean_norm"] == pytest.approx(1.31, abs=1e-5)
    basis = model128.basis.astype(np.float64)
    np.testing.assert_allclose(basis.T @ basis, np.eye(128), atol=1e-5)


# -- images per identity ------------------------------------------------------------------


@pytest.mark.parametrize("mean", [1.5, 2.3, 5.0, 10.0])
def test_counts_have_the_requested_mean_and_a_long_tail(mean):
    counts = draw_counts(np.random.default_rng(0), 100_000, mean)
    assert counts.min() == 1 and counts.max() <= count_cap(mean)
    assert counts.mean() == pytest.approx(mean, rel=0.08)
    assert np.median(counts) <= mean  # most identities have few images
    assert counts.max() >= 20 * mean  # and some have very many
    assert (counts == 1).mean() > 0.35


def test_clipped_mean_against_a_naive_pmf_sum():
    r, cap = 1.3, 200
    k = np.arange(1, 100_000, dtype=np.float64)
    # Yule-Simon pmf r B(k, r + 1) through the recursion f(k+1)/f(k) = k / (k + r + 1)
    pmf = np.concatenate([[r / (r + 1)], r / (r + 1) * np.cumprod(k[:-1] / (k[:-1] + r + 1))])
    naive = np.sum(np.minimum(k, cap) * pmf) + cap * (1 - pmf.sum())
    assert clipped_mean(r, cap) == pytest.approx(naive, rel=1e-4)
    assert clipped_mean(solve_shape(5.0), count_cap(5.0)) == pytest.approx(5.0, rel=1e-6)


def test_fixed_counts_and_mean_one():
    assert np.all(draw_counts(np.random.default_rng(0), 100, 4, fixed=True) == 4)
    assert np.all(draw_counts(np.random.default_rng(0), 100, 1.0) == 1)
    with pytest.raises(ValueError):
        solve_shape(0.5)


# -- streaming and determinism ------------------------------------------------------------


def _collect(**kw):
    labels, vectors = zip(*iter_synthetic(**kw), strict=True)
    return np.concatenate(labels), np.concatenate(vectors)


def test_same_seed_same_output_whatever_the_chunk_size(model16):
    kw = dict(identities=3000, per_identity=3, dim=16, seed=7, model=model16)
    labels_a, vec_a = _collect(chunk_rows=500, **kw)
    labels_b, vec_b = _collect(chunk_rows=500, **kw)
    labels_c, vec_c = _collect(chunk_rows=100_000, **kw)
    assert np.array_equal(vec_a, vec_b) and np.array_equal(labels_a, labels_b)
    assert np.array_equal(labels_a, labels_c) and np.array_equal(vec_a, vec_c)
    labels_e, vec_e = _collect(chunk_identities=2000, **kw)
    assert np.array_equal(labels_a, labels_e) and np.array_equal(vec_a, vec_e)
    labels_d, vec_d = _collect(chunk_rows=500, **{**kw, "seed": 8})
    assert not np.array_equal(labels_a[:10], labels_d[:10])
    assert vec_a.shape[0] != vec_d.shape[0] or not np.allclose(vec_a, vec_d)


def test_a_smaller_run_is_a_prefix_of_a_larger_one(model16):
    small_l, small_v = _collect(identities=1500, per_identity=4, dim=16, seed=3, model=model16)
    big_l, big_v = _collect(identities=4000, per_identity=4, dim=16, seed=3, model=model16)
    n = len(small_l)
    assert np.array_equal(small_l, big_l[:n])
    np.testing.assert_allclose(small_v, big_v[:n], atol=1e-6)  # a partial last block's
    # product may round differently in the last bit
    assert len(np.unique(small_l)) == 1500


def test_chunks_are_bounded_and_counted_without_vectors(model16):
    gen = SyntheticFaces(5000, 3, dim=16, seed=0, model=model16)
    sizes = [len(c) for c in gen.chunks(chunk_rows=2000)]
    assert sum(sizes) == gen.num_rows()
    assert max(sizes) < 2000 + 1024 * count_cap(3)  # at most one block past the target
    assert len(sizes) > 3


@pytest.mark.parametrize("dim", [2, 16, 200])
def test_any_dimension_gives_unit_anisotropic_vectors(dim):
    labels, vectors = _collect(identities=600, per_identity=3, dim=dim, seed=0)
    assert vectors.dtype == np.float32 and vectors.shape[1] == dim
    np.testing.assert_allclose(np.linalg.norm(vectors, axis=1), 1.0, atol=1e-5)
    if dim > 2:
        s = report_stats(vectors, labels)
        assert s["pc1_share"] > 2.0 / dim  # not isotropic
        assert s["same_cos"] > s["diff_cos"] + 0.3


def test_names_are_fixed_width_and_unique_per_row(model16):
    gen = SyntheticFaces(1100, 2, dim=16, seed=12, model=model16)
    chunk = next(gen.chunks())
    names = gen.identity_names(chunk).to_pylist()
    sources = gen.source_names(chunk).to_pylist()
    assert names[0] == "s12-00000000"
    assert sources[0] == "synth:s12-00000000/0000"
    assert len(set(sources)) == len(sources)
    assert all(src.startswith(f"synth:{name}/") for name, src in zip(names, sources, strict=True))


def test_bad_arguments_raise():
    with pytest.raises(ValueError):
        SyntheticFaces(0, 5)
    with pytest.raises(ValueError):
        SyntheticFaces(10, 0.5)
    with pytest.raises(ValueError):
        SyntheticFaces(10, 5, dim=1)
