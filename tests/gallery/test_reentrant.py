"""A reader shared by threads: 16 threads searching one open index get the serial answers."""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor

import numpy as np
import pytest

from faceidx.index import BuildOptions, build_index, open_index
from faceidx.index.faissio import faiss, ivf_of
from tests.index.helpers import write_collection


@pytest.fixture(scope="module")
def reader(tmp_path_factory):
    d = tmp_path_factory.mktemp("reentrant")
    write_collection(d / "c", n_ids=400, per_id=10, shard_rows=2000, noise=0.9)
    build_index(d / "c", d / "idx", BuildOptions(index_spec="IVF64,PQ8x4fs", shard_rows=2000,
                                                 tune_queries=50))
    r = open_index(d / "idx")
    assert len(r.parts) == 2   # two shards, one shared coarse assignment
    return r


def test_sixteen_threads_equal_serial(reader):
    rng = np.random.default_rng(3)
    queries = rng.normal(size=(64, reader.dim)).astype(np.float32)
    # each thread uses its own nprobe: shared nprobe state would mix them up
    jobs = [(queries[i * 4:(i + 1) * 4], 1 + i % 5) for i in range(16)]
    serial = [reader.search(q, 10, nprobe=p) for q, p in jobs]
    nprobes = {p: reader.search(queries, 10, nprobe=p)[1] for p in range(1, 6)}
    assert len({v.tobytes() for v in nprobes.values()}) > 1   # nprobe changes answers
    before = [ivf_of(p.index).nprobe for p in reader.parts]
    with ThreadPoolExecutor(16) as pool:
        for _ in range(3):
            got = list(pool.map(lambda job: reader.search(*job[:1], 10, nprobe=job[1]), jobs))
            for (s0, i0), (s1, i1) in zip(serial, got, strict=True):
                np.testing.assert_array_equal(i0, i1)
                np.testing.assert_array_equal(s0, s1)
    assert [ivf_of(p.index).nprobe for p in reader.parts] == before   # nothing written
    assert faiss().omp_get_max_threads() >= 1
