"""Readers and a writer at the same time: every search answers from one consistent
generation, whatever the writer is doing (add, merge, erase, enrol); none fails."""

from __future__ import annotations

import threading

import numpy as np
import pytest

from faceidx.index import BuildOptions, build_index, open_index
from faceidx.index.writer import current_generation, open_writer
from tests.index.helpers import write_collection


@pytest.fixture
def setup(tmp_path):
    x, labels = write_collection(tmp_path / "c", n_ids=80, per_id=5)
    x2, _ = write_collection(tmp_path / "new", n_ids=40, per_id=5, seed=7)
    build_index(tmp_path / "c", tmp_path / "idx", BuildOptions(index_spec="IVF8,PQ4x4fs",
                                                               shard_rows=150, tune_queries=40))
    return tmp_path, x, labels, x2


def test_readers_during_writes(setup):
    root, x, labels, x2 = setup
    idx = root / "idx"
    kept = np.arange(100, 400)  # faces no write touches
    queries = x[kept[::10]]
    done = threading.Event()
    errors: list[BaseException] = []
    seen_generations: set[int] = set()
    n_base, n_new = len(x), len(x2)
    valid_totals = {n_base, n_base + n_new, n_base + n_new - 5, n_base + n_new - 5 + 3}

    def reader() -> None:
        r = open_index(idx)
        try:
            while not done.is_set():
                if current_generation(idx) != r.generation:
                    r = open_index(idx)  # what a long-lived reader does
                seen_generations.add(r.generation)
                assert r.ntotal in valid_totals, r.ntotal
                _, fids = r.search(queries, k=1, nprobe=8, k_factor=50)
                np.testing.assert_array_equal(fids[:, 0], kept[::10])
        except BaseException as err:  # reported by the main thread
            errors.append(err)

    threads = [threading.Thread(target=reader) for _ in range(2)]
    for t in threads:
        t.start()
    try:
        with open_writer(idx, "test writer") as w:
            w.add_collection(root / "new", shard_rows=80)
            w.merge()
            w.erase(identities=[str(labels[0])])
            w.add_arrays(x2[:3] + 0.01, ["late", "late", "late"])
    finally:
        done.set()
        for t in threads:
            t.join(timeout=120)
    assert not errors, errors[0]
    assert len(seen_generations) >= 2  # the readers did see the index change
    final = open_index(idx)
    assert final.ntotal == n_base + n_new - 5 + 3
