"""The automatic parameter heuristic: pure, checked against its stated rules."""

from __future__ import annotations

import math

import pytest

from faceidx.index.params import (
    FLAT_MAX,
    MIN_POINTS_PER_CENTROID,
    choose_nlist,
    choose_params,
    params_for_spec,
)


@pytest.mark.parametrize("n", [30_000, 100_000, 1_000_000, 10_000_000, 1_000_000_000])
def test_nlist_is_a_power_of_two_between_4_and_16_sqrt_n(n):
    nlist = choose_nlist(n, max_train=max(n, 500_000))
    assert nlist & (nlist - 1) == 0
    root = math.sqrt(n)
    trainable = min(n, max(n, 500_000)) // MIN_POINTS_PER_CENTROID
    assert nlist <= 16 * root
    assert nlist >= 4 * root or nlist * 2 > trainable


def test_nlist_respects_training_points_per_centroid():
    for n in (25_000, 60_000, 1_000_000, 50_000_000):
        p = choose_params(n, 128)
        assert p.train_size >= MIN_POINTS_PER_CENTROID * p.nlist
        assert p.train_size <= max(256 * p.nlist, MIN_POINTS_PER_CENTROID * p.nlist)
        assert p.train_size <= n


def test_known_points():
    assert choose_params(1_000_000, 128).factory == "IVF4096,PQ64x4fs"
    p10 = choose_params(10_000_000, 128)
    assert p10.factory == "IVF16384_HNSW32,PQ64x4fs"
    assert p10.hnsw_quantizer and p10.keep_vectors and p10.pq_bits == 4 and p10.pca_dim == 0
    assert p10.ram_bytes_per_vector == 40


def test_small_collections_are_flat():
    p = choose_params(FLAT_MAX, 128)
    assert p.factory == "Flat" and p.nlist == 0 and p.train_size == 0
    assert choose_params(FLAT_MAX + 1, 128).nlist > 0


def test_memory_budget_shrinks_codes():
    n = 10_000_000
    roomy = choose_params(n, 128, max_memory=1 << 40)
    assert roomy.pq_m == 64 and roomy.ram_bytes_per_vector == 40 and roomy.pq_bits == 4 and not roomy.opq
    pca = choose_params(n, 128, max_memory=n * 38)  # 38 B: PCA to 112-D, 56 sub-quantizers
    assert pca.factory == "PCAR112,IVF16384_HNSW32,PQ56x4fs"
    assert pca.pca_dim == 112 and pca.ram_bytes_per_vector == 36 and not pca.opq
    below_36 = choose_params(n, 128, max_memory=n * 35)
    assert below_36.pq_m == 32 and below_36.pca_dim == 0 and "PCAR" not in below_36.factory
    assert choose_params(n, 96, max_memory=n * 30).factory == "PCAR84,IVF16384_HNSW32,PQ42x4fs"
    assert "PCAR" not in choose_params(n, 40, max_memory=n * 25).factory  # 40 % 16 != 0
    tight = choose_params(n, 128, max_memory=int(n * (8 + 8)))  # 8 B of code per vector
    assert tight.pq_m == 16 and tight.pq_bits == 4 and tight.opq
    assert tight.ram_bytes_per_vector <= 16
    tighter = choose_params(n, 128, max_memory=int(n * (8 + 4)))  # 4 B: 8-bit PQ beats 4-bit
    assert tighter.pq_bits == 8 and tighter.factory.endswith("np")
    assert tighter.code_bytes <= 8


def test_monotone_in_n():
    prev = 0
    for n in (30_000, 100_000, 1_000_000, 10_000_000, 100_000_000):
        p = choose_params(n, 128)
        assert p.nlist >= prev
        prev = p.nlist


def test_user_spec_kept_or_lowered_with_a_stated_fallback():
    assert params_for_spec("IVF256,PQ16x4fsr", 100_000, 64).factory == "IVF256,PQ16x4fsr"
    low = params_for_spec("IVF4096,PQ16x4fsr", 30_000, 64)
    assert low.nlist == 512 and low.factory == "IVF512,PQ16x4fsr" and "IVF4096" in low.fallback
    flat = params_for_spec("IVF4096,PQ16x4fsr", 100, 64)
    assert flat.factory == "Flat" and "Flat" in flat.fallback
    assert params_for_spec("HNSW32", 100, 64).factory == "HNSW32"


def test_empty_is_refused():
    with pytest.raises(ValueError):
        choose_params(0, 128)
