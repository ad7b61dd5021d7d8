"""Serving an index across machines on Ray Serve: part groups behind one router.

    handle = serve_index("/shared/faces.index", groups=4, replicas=2)   # needs ray.init()
    answers = handle.identify.remote(vectors, k=5).result()           # [Identification JSON]

Deployments (one Serve application, `name`):

    faceidx-parts-<g>   g = 0..groups-1; `replicas` identical replicas each, every one
                        memory-mapping the parts and row stores of group g
                        (faceidx.distributed.parts.PartGroup); at most one replica of a
                        group per node, and Ray spreads the groups by their CPUs
    faceidx-router      the library entry point (faceidx.open_gallery: threshold,
                        calibration, per-identity top-k) answering from a FannedReader:
                        coarse assignment once, the probe fanned out to one replica of
                        every group, candidates merged and re-ranked as one process does

Answers equal one process's `open_gallery(index_dir).identify(...)` on the same index.
HTTP: POST {"vectors": [[...], ...], "k": 5} to the route prefix (default /identify).
"""

from __future__ import annotations

import logging
from pathlib import Path

import numpy as np

from faceidx.distributed.cluster import require_ray
from faceidx.distributed.parts import FannedReader, PartGroup

log = logging.getLogger(__name__)

ROUTER = "faceidx-router"


def group_name(g: int) -> str:
    return f"faceidx-parts-{g}"


class ServeCalls:
    """Transport to part groups through Ray Serve deployment handles."""

    def __init__(self, handles: list):
        self.handles = handles

    def __len__(self) -> int:
        return len(self.handles)

    def submit(self, group: int, method: str, *args):
        return getattr(self.handles[group], method).remote(*args)

    def result(self, future):
        return future.result()


class Router:
    """The router deployment: a Gallery whose index is a FannedReader over the groups."""

    def __init__(self, index_dir: str, threshold, *group_handles):
        from faceidx.gallery import open_gallery

        self.index_dir = index_dir
        self.calls = ServeCalls(list(group_handles))
        self.gallery = open_gallery(index_dir, threshold)
        # The gallery opened the index here to resolve its threshold and calibration;
        # from now on it answers from the groups (the local reader is dropped).
        self.gallery.use(FannedReader.open(index_dir, self.calls))

    def identify(self, vectors, k: int = 5, threshold=None) -> list[dict]:
        """Identification.to_json() per probe vector: top-k identities and the decision."""
        found = self.gallery.identify(np.asarray(vectors, np.float32), k=k, threshold=threshold)
        return [res.to_json() for res in found]

    def search(self, vectors, k: int = 10) -> tuple[np.ndarray, np.ndarray]:
        """(exact cosine scores, face ids) of the top-k faces per probe."""
        return self.gallery.index.search(np.asarray(vectors, np.float32), k)

    def describe(self) -> dict:
        """The router's generation and, per group, the replica that answered: node, parts."""
        groups = [self.calls.result(self.calls.submit(g, "describe"))
                  for g in range(len(self.calls))]
        return {"index": self.index_dir, "generation": self.gallery.index.generation,
                "groups": groups}

    async def __call__(self, request) -> dict:
        body = await request.json()
        return {"results": self.identify(body["vectors"], int(body.get("k", 5)),
                                         body.get("threshold"))}


def serve_app(index_dir: str | Path, groups: int = 2, replicas: int = 1, threshold="auto",
              cpus_per_replica: float = 1.0):
    """The Serve application: `groups` part groups of `replicas` replicas, and the router.

    A group's replicas go to different nodes (replicas <= nodes); every replica asks for
    `cpus_per_replica` CPUs, which is also what spreads the groups over the nodes.
    """
    require_ray()
    from ray import serve

    from faceidx.index.manifest import IndexManifest

    index_dir = str(Path(index_dir).resolve())
    generation = IndexManifest.load(index_dir).generation
    if groups < 1 or replicas < 1:
        raise ValueError("groups and replicas must be >= 1")
    handles = [
        serve.deployment(PartGroup, name=group_name(g), num_replicas=replicas,
                         max_replicas_per_node=1,
                         ray_actor_options={"num_cpus": cpus_per_replica})
        .bind(index_dir, g, groups, generation)
        for g in range(groups)
    ]
    router = serve.deployment(Router, name=ROUTER, ray_actor_options={"num_cpus": 0})
    return router.bind(index_dir, threshold, *handles)


def serve_index(index_dir: str | Path, groups: int = 2, replicas: int = 1, threshold="auto",
                name: str = "faceidx", route_prefix: str | None = "/identify",
                cpus_per_replica: float = 1.0):
    """Deploy `index_dir` on the connected Ray cluster; returns the router's handle."""
    require_ray()
    from ray import serve

    app = serve_app(index_dir, groups, replicas, threshold, cpus_per_replica)
    return serve.run(app, name=name, route_prefix=route_prefix)
