"""embed, build/add and serving on a local 3-node Ray cluster equal the local engine's,
with a Ray worker killed mid-stage (Ray retries it; no duplicate or missing row)."""

from __future__ import annotations

import json
import os
import shutil
import signal
import threading
import time
from pathlib import Path

import numpy as np
import pytest
from click.testing import CliRunner

from faceidx.cli.main import cli
from faceidx.embedder.pipeline import embed_source, read_failures
from faceidx.embedder.sources import list_source
from faceidx.index.build import BuildOptions, add_collection, build_index
from faceidx.index.search import open_index
from faceidx.io import open_collection
from tests.index.helpers import write_collection

ray = pytest.importorskip("ray")

NODES = 3
SPEC = "IVF32,PQ8x4fs"


@pytest.fixture(scope="module")
def cluster():
    """One cluster for the module: a head and two nodes of 1 CPU each, no dashboard."""
    from ray.cluster_utils import Cluster

    c = Cluster(initialize_head=True, head_node_args={
        "num_cpus": 1, "include_dashboard": False, "object_store_memory": 80 << 20})
    for _ in range(NODES - 1):
        c.add_node(num_cpus=1, object_store_memory=80 << 20)
    ray.init(address=c.address, logging_level="WARNING", log_to_driver=False)
    try:
        yield c
    finally:
        try:
            from ray import serve

            serve.shutdown()
        finally:
            ray.shutdown()
            c.shutdown()


class Killer(threading.Thread):
    """SIGKILLs the first Ray worker whose title holds `title`, once `ready()` is true."""

    def __init__(self, title: str, ready=lambda: True, timeout: float = 60.0):
        super().__init__(daemon=True)
        self.title, self.ready, self.timeout = title, ready, timeout
        self.killed: str | None = None
        self.stop = threading.Event()

    def run(self) -> None:
        end = time.monotonic() + self.timeout
        while not self.stop.is_set() and time.monotonic() < end:
            if self.ready():
                for pid in filter(str.isdigit, os.listdir("/proc")):
                    try:
                        cmd = Path(f"/proc/{pid}/cmdline").read_bytes().decode(errors="replace")
                    except OSError:
                        continue
                    if cmd.startswith("ray::") and self.title in cmd:
                        os.kill(int(pid), signal.SIGKILL)
                        self.killed = cmd.split("\0")[0]
                        return
            time.sleep(0.005)


@pytest.fixture
def images(tmp_path, shared_data):
    """13 LFW images of 7 people and one file that is not an image."""
    root = tmp_path / "src"
    names = sorted(os.listdir(shared_data / "lfw-subset"))[:7]
    for name in names:
        shutil.copytree(shared_data / "lfw-subset" / name, root / name)
    (root / names[-1] / "bad.jpg").write_bytes(b"not a jpeg")
    return list_source(root)


def test_embed_on_ray_equals_local_with_an_actor_killed(cluster, images, tmp_path):
    from faceidx.distributed.embed import embed_source_ray

    embed_source(images, tmp_path / "local", shard_rows=3, device="cpu")
    out = tmp_path / "ray"
    # kill the first embedding actor as soon as it runs: waiting for the first shard let a
    # fast run finish all its work before the kill under load (a flaky "no actor to kill")
    killer = Killer("MapWorker")
    killer.start()
    try:
        summary = embed_source_ray(images, out, shard_rows=3, images_per_task=1, batch_size=4,
                                   device="cpu", actors=2)
    finally:
        killer.stop.set()
    assert killer.killed, "no embedding actor was running to be killed"
    a, b = open_collection(tmp_path / "local").read_all(), open_collection(out).read_all()
    assert list(b.face_ids) == list(a.face_ids) and list(b.sources) == list(a.sources)
    assert list(b.identities) == list(a.identities)
    np.testing.assert_allclose(b.embeddings, a.embeddings, atol=1e-5)
    assert sorted(p.name for p in out.iterdir()) == sorted(p.name for p in (tmp_path / "local").iterdir())
    assert read_failures(out / "failures.jsonl") == read_failures(tmp_path / "local" / "failures.jsonl")
    assert summary.faces == len(a.face_ids) and sum(summary.failures.values()) == 1
    assert len(summary.nodes) >= 2, summary.nodes
    again = embed_source_ray(images, out, shard_rows=3, device="cpu")   # a rerun: nothing to do
    assert (again.processed, again.rows_total) == (0, len(a.face_ids))


def test_build_and_add_on_ray_equal_local_with_a_task_killed(cluster, tmp_path):
    from faceidx.distributed.build import RayFiller

    x, _ = write_collection(tmp_path / "c", n_ids=300, per_id=8, shard_rows=160)
    write_collection(tmp_path / "c2", n_ids=40, per_id=4, seed=1)
    opts = {"index_spec": SPEC, "shard_rows": 100, "tune_queries": 200}
    build_index(tmp_path / "c", tmp_path / "local", BuildOptions(**opts))
    add_collection(tmp_path / "local", tmp_path / "c2")

    engine = RayFiller(device="cpu")
    killer = Killer("faceidx-fill-shard")
    killer.start()
    try:
        build_index(tmp_path / "c", tmp_path / "ray", BuildOptions(**opts, engine=engine))
    finally:
        killer.stop.set()
    assert killer.killed, "no fill task was running to be killed"
    assert len(engine.nodes) >= 2, engine.nodes
    res = CliRunner().invoke(cli, ["add", str(tmp_path / "ray"), str(tmp_path / "c2"),
                                   "--ray", cluster.address, "-q"])
    assert res.exit_code == 0, res.output

    ma, mb = (json.loads((tmp_path / d / "manifest.json").read_text()) for d in ("local", "ray"))
    assert [s["sha256"] for s in mb["shards"]] == [s["sha256"] for s in ma["shards"]]
    for key in ("rows", "num_identities", "next_face_id", "search"):
        assert mb[key] == ma[key], key
    a, b = open_index(tmp_path / "local"), open_index(tmp_path / "ray")
    q = x[::9] + 0.01
    for got, want in zip(b.search(q, 10), a.search(q, 10), strict=True):
        np.testing.assert_array_equal(got, want)
    ids = b.store.gather(np.arange(b.ntotal), "face_ids")
    assert len(np.unique(ids)) == b.ntotal == len(x) + 160   # no duplicate, no missing row


def test_serve_spreads_parts_and_answers_as_one_process(cluster, tmp_path):
    from ray import serve

    from faceidx.distributed.serve import serve_index
    from faceidx.gallery import open_gallery

    x, _ = write_collection(tmp_path / "c", n_ids=300, per_id=8)
    build_index(tmp_path / "c", tmp_path / "idx",
                BuildOptions(index_spec=SPEC, shard_rows=600, tune_queries=200))
    serve.start(proxy_location="Disabled")
    handle = serve_index(tmp_path / "idx", groups=2, threshold=0.5, route_prefix=None)
    try:
        q = x[::11] + 0.02
        got = handle.identify.remote(q, k=5).result(timeout_s=60)
        want = [r.to_json() for r in open_gallery(tmp_path / "idx", threshold=0.5).identify(q, k=5)]
        assert got == want
        groups = handle.describe.remote().result(timeout_s=60)["groups"]
        assert sorted(p for g in groups for p in g["parts"]) == [0, 1, 2, 3]
        assert len({g["node"] for g in groups}) == 2   # one group per node
    finally:
        serve.delete("faceidx")
