"""The automatic parameter heuristic: pure, checked against its stated rules."""

from __future__ import annotations

import math
import re

import pytest

from faceidx.cli.build import parse_size
from faceidx.errors import MemoryBudgetError
from faceidx.index.memory import estimate
from faceidx.index.params import (
    FLAT_MAX,
    MIN_POINTS_PER_CENTROID,
    _ivf_params,
    choose_nlist,
    choose_params,
    code_options,
    params_for_spec,
    train_size_for,
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


def test_memory_budget_steps_down_the_codes_in_order():
    n = 10_000_000
    roomy = choose_params(n, 128, max_memory=1 << 40)
    assert roomy.pq_m == 64 and roomy.ram_bytes_per_vector == 40 and roomy.pq_bits == 4 and not roomy.opq
    options = code_options(128)
    assert options[:4] == [(64, 4, 0), (56, 4, 112), (32, 4, 0), (16, 4, 0)]
    assert all(bits == 8 and m >= 4 for m, bits, _ in options[4:])
    nlist = choose_nlist(n)
    peaks = [estimate(_ivf_params(n, 128, nlist, train_size_for(nlist, n), m, bits, pca, []),
                      n, 128).peak for m, bits, pca in options]
    assert peaks[0] > peaks[1] > peaks[2]  # search-bound: each step saves code bytes
    for budget in peaks:  # a budget chooses the first (most accurate) option within it
        got = choose_params(n, 128, max_memory=budget)
        first = next(o for o, peak in zip(options, peaks, strict=True) if peak <= budget)
        assert (got.pq_m, got.pq_bits, got.pca_dim) == first
        assert got.memory["peak_bytes"] <= budget
    assert choose_params(n, 128, max_memory=peaks[1]).factory == "PCAR112,IVF16384_HNSW32,PQ56x4fs"
    assert choose_params(n, 128, max_memory=peaks[3]).opq  # m < D/4
    assert choose_params(n, 96, max_memory=1 << 40).factory.endswith("PQ48x4fs")
    assert "PCAR" not in "".join(f"{m}{p}" for m, _, p in code_options(40) if p)  # 40 % 16 != 0


def test_memory_model_counts_every_resident_structure():
    n = 10_000_000
    p = choose_params(n, 128)
    est = estimate(p, n, 128)
    s = est.search
    assert s["codes"] == n * 32 and s["ids"] == n * 8
    assert s["centroids"] == 2 * 16384 * 128 * 4  # the quantizer + search's exact flat copy
    assert s["hnsw_graph"] > 16384 * 64 * 4 and s["list_padding"] == 16384 * 16 * 32
    assert s["rerank_budget"] > 0 and s["lut_budget"] > 0
    assert est.build["training_sample"] == 2 * p.train_size * 128 * 4
    assert est.peak == max(est.search_bytes, est.build_bytes)
    assert p.memory == est.to_json()
    flat = estimate(params_for_spec("IVF1024,Flat", 100_000, 64), 100_000, 64)
    assert flat.search["codes"] == 100_000 * 64 * 4 and flat.search["hnsw_graph"] == 0
    bigger = estimate(choose_params(2 * n, 128), 2 * n, 128)
    assert bigger.search_bytes > est.search_bytes


def test_training_sample_shrinks_before_the_codes():
    n = 10_000_000
    nlist = choose_nlist(n)
    full = _ivf_params(n, 128, nlist, train_size_for(nlist, n), 16, 4, 0, [])
    est = estimate(full, n, 128)
    budget = est.build_bytes - (4 << 20)  # 8 B codes fit, the 500k training sample does not
    assert est.build_bytes > budget > est.search_bytes
    p = choose_params(n, 128, max_memory=budget)
    assert p.pq_m == 16 and p.train_size < full.train_size
    assert p.train_size >= MIN_POINTS_PER_CENTROID * p.nlist
    assert p.memory["peak_bytes"] <= budget and any("training sample" in x for x in p.notes)


def test_a_build_that_cannot_fit_is_refused_saying_what_fits():
    n = 10_000_000
    with pytest.raises(MemoryBudgetError) as err:
        choose_params(n, 128, max_memory=400 << 20)
    msg = str(err.value)
    assert "cannot hold 10,000,000 vectors" in msg and "training sample" in msg
    fits = int(re.search(r"It fits ([\d,]+) vectors", msg).group(1).replace(",", ""))
    assert 0 < fits < n
    choose_params(fits, 128, max_memory=400 << 20)  # what it says fits, fits
    with pytest.raises(MemoryBudgetError):
        choose_params(fits + max(fits // 50, 1), 128, max_memory=400 << 20)
    larger = re.search(r"use --max-memory (\S+)", msg).group(1)
    choose_params(n, 128, max_memory=parse_size(larger))  # and the budget it names is enough
    with pytest.raises(MemoryBudgetError, match="index spec 'IVF16384_HNSW32,PQ64x4fs'"):
        params_for_spec("IVF16384_HNSW32,PQ64x4fs", n, 128, max_memory=300 << 20)
    ok = params_for_spec("IVF16384_HNSW32,PQ32x4fs", n, 128, max_memory=1 << 40)
    assert ok.pq_m == 32 and ok.hnsw_quantizer and ok.memory["search"]["codes"] == n * 16


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
