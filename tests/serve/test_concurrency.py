"""16 concurrent clients get the serial answers; the micro-batcher coalesces them."""

from __future__ import annotations

import threading
from concurrent.futures import ThreadPoolExecutor

import numpy as np
import pytest

from faceidx.serve.batcher import MicroBatcher


def test_sixteen_threads_equal_serial(served):
    service, client, s = served
    x = s["x"][~s["gallery"]][:64]
    jobs = [(x[i * 4:(i + 1) * 4].tolist(), 1 + i % 4) for i in range(16)]
    serial = [client.post("/v1/identify", json={"embeddings": e, "k": k}).json() for e, k in jobs]
    batches = service.metrics.batch.labels("search")
    before = batches._sum.get()

    def call(job):
        return client.post("/v1/identify", json={"embeddings": job[0], "k": job[1]}).json()

    with ThreadPoolExecutor(16) as pool:
        for _ in range(2):
            assert list(pool.map(call, jobs)) == serial
    assert batches._sum.get() - before == 2 * 64   # every probe went through the batcher


def test_batcher_coalesces_and_reports_errors():
    calls = []
    gate = threading.Event()

    def fn(items):
        gate.wait(5)
        calls.append(list(items))
        if "boom" in items:
            raise RuntimeError("boom")
        return [i * 2 for i in items]

    b = MicroBatcher(fn, max_batch=8, max_wait=0.05)
    try:
        futures = [b.submit(i) for i in range(5)]   # the first batch waits at the gate
        gate.set()
        assert [f.result(5) for f in futures] == [0, 2, 4, 6, 8]
        assert len(calls) <= 2 and sum(map(len, calls)) == 5
        bad = b.submit("boom")
        with pytest.raises(RuntimeError, match="boom"):
            bad.result(5)
        assert b.submit(21).result(5) == 42          # the worker goes on
    finally:
        b.close()
    with pytest.raises(RuntimeError, match="closed"):
        b.submit(1)


def test_service_threads_mixed_with_enrolment(served):
    """Searches running while faces are enrolled see either gallery, never half of one."""
    service, client, s = served
    dim = service.gallery.dim
    v = np.random.default_rng(2).normal(size=(8, dim))
    v /= np.linalg.norm(v, axis=1, keepdims=True)

    def search(_):
        res = service.identify_vectors(v, 1, 0.99)
        names = [r.decision for r in res]
        return names

    with ThreadPoolExecutor(8) as pool:
        pending = [pool.submit(search, i) for i in range(32)]
        service.live.enrol("pair", v[:4])
        service.live.enrol("pair", v[4:])
        seen = [f.result() for f in pending]
    for names in seen:   # an enrolment of 4 faces appears whole or not at all
        assert names[:4] in (["pair"] * 4, [None] * 4)
        assert names[4:] in (["pair"] * 4, [None] * 4)
    assert service.identify_vectors(v, 1, 0.99)[0].decision == "pair"
