"""`faceidx build --ray` / `faceidx add --ray`: index shards filled in Ray tasks.

    manifest = build_index_ray("faces/", "faces.index", BuildOptions())

The local build's stages, in the same index directory (faceidx.index.build): train once
(on the driver, or in a GPU task when the cluster has GPUs), then each index shard
(``shard_rows`` collection rows, the local build's bounds) is filled by one Ray task
that reads only the collection shards it needs and gets the trained empty index by file
path (``trained.index``: nothing multi-GB goes through the object store). The driver
checks and publishes the filled shards in order, then tunes and merges as a local build
does. Same bounds, same ids, same files: searching gives the local build's answers.

A task lost with its worker or node is retried by Ray (``max_retries``); a retried
task starts from an empty folder, and a folder is published only once, in order, so the
index holds each row exactly once. The collection and the index directory must be on a
path every node sees.
"""

from __future__ import annotations

import logging
from collections import Counter, deque
from collections.abc import Iterator
from pathlib import Path

import numpy as np

from faceidx.distributed.cluster import node_id, require_ray
from faceidx.index.fill import ShardJob, collection_range, fill_shard
from faceidx.io import Collection
from faceidx.io.fs import filesystem

log = logging.getLogger(__name__)

TASK_RETRIES = 3


def fill_task(part: Collection, part_start: int, job: ShardJob, trained: str,
              renumber: int | None, mean: np.ndarray | None, batch_size: int,
              device: str, vector_dtype: str = "float32") -> dict:
    """Ray task: fill one shard folder; returns fill_shard's stats and the node it ran on."""
    from faceidx.index.gpu import use_gpu

    fs = filesystem(job.folder)
    fs.rmtree(job.folder)  # a retried attempt starts from an empty folder
    stats = fill_shard(part, part_start, job.lo, job.hi, job.folder, Path(trained), job.row0,
                       renumber, mean, batch_size, use_gpu(device), vector_dtype)
    stats["node"] = node_id()
    return stats


def train_task(fn, *args):
    """Ray task: run the train stage where a GPU is (it writes trained.index on the shared path)."""
    return fn(*args)


class RayFiller:
    """Fills shard folders in Ray tasks, at most `in_flight` at once; yields them in order.

    The engine faceidx.index.build hands its shard jobs to (LocalFiller is the local one).
    `nodes` counts the shards each node filled.
    """

    def __init__(self, device: str = "auto", in_flight: int | None = None,
                 cpus_per_task: float = 1.0):
        ray = require_ray()
        resources = ray.cluster_resources()
        self.gpus = int(resources.get("GPU", 0)) if device != "cpu" else 0
        self.device = device if self.gpus else "cpu"
        self.in_flight = in_flight or max(2, 2 * int(resources.get("CPU", 1)))
        self.cpus_per_task = cpus_per_task
        self.nodes: Counter = Counter()

    def train(self, fn, *args):
        """Run the train stage: in a GPU task when the cluster has GPUs, else here."""
        if not self.gpus:
            return fn(*args)
        ray = require_ray()
        task = ray.remote(train_task).options(num_gpus=1, num_cpus=self.cpus_per_task)
        return ray.get(task.remote(fn, *args))

    def fill(self, coll: Collection, jobs: list[ShardJob], trained: Path,
             renumber: int | None, mean: np.ndarray | None, batch_size: int,
             gpu: bool, vector_dtype: str = "float32") -> Iterator[tuple[ShardJob, dict]]:
        ray = require_ray()
        task = ray.remote(fill_task).options(
            num_cpus=self.cpus_per_task, num_gpus=1 if self.gpus else 0,
            max_retries=TASK_RETRIES, name="faceidx-fill-shard",
            scheduling_strategy="SPREAD")  # shard fills are I/O + CPU bound: one node each first
        mean_ref = ray.put(mean)
        pending: deque = deque()
        todo = iter(jobs)

        def submit() -> None:
            for job in todo:
                part, start = collection_range(coll, job.lo, job.hi)
                pending.append((job, task.remote(part, start, job, str(trained), renumber,
                                                 mean_ref, batch_size, self.device, vector_dtype)))
                if len(pending) >= self.in_flight:
                    return

        submit()
        try:
            while pending:
                job, ref = pending.popleft()
                stats = ray.get(ref)
                self.nodes[stats["node"]] += 1
                submit()
                yield job, stats
        finally:
            for _, ref in pending:  # the caller stopped (an error): do not leave work running
                ray.cancel(ref, force=True)
