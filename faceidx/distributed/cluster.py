"""Ray, imported lazily: connect to a cluster, describe it, and say how to install Ray.

    with ray_session("auto") as cluster:          # `ray start` cluster; None: a local Ray
        print(cluster.nodes, cluster.cpus, cluster.gpus)

Only this package imports ray, and only inside functions, so `import faceidx` never pays
for it and a machine without Ray still runs every local command.
"""

from __future__ import annotations

import contextlib
import logging
from collections.abc import Iterator
from dataclasses import dataclass

from faceidx.errors import MissingDependencyError

log = logging.getLogger(__name__)

INSTALL_HINT = "pip install 'faceidx[ray]'"


def require_ray():
    """The ray module, or MissingDependencyError saying how to install it."""
    try:
        import ray
    except ImportError as err:
        raise MissingDependencyError(
            f"--ray needs Ray, which is not installed here: `{INSTALL_HINT}` "
            f"(on every node of the cluster) ({err})") from err
    return ray


@dataclass(frozen=True)
class ClusterInfo:
    """What the connected cluster offers: alive nodes, CPUs and GPUs in total."""

    address: str
    nodes: int
    cpus: int
    gpus: int


def cluster_info() -> ClusterInfo:
    ray = require_ray()
    total = ray.cluster_resources()
    alive = [n for n in ray.nodes() if n.get("Alive")]
    return ClusterInfo(address=ray.get_runtime_context().gcs_address, nodes=len(alive),
                       cpus=int(total.get("CPU", 0)), gpus=int(total.get("GPU", 0)))


@contextlib.contextmanager
def ray_session(address: str | None = None, quiet: bool = False) -> Iterator[ClusterInfo]:
    """Connect to Ray for one command and disconnect after it.

    address: "auto" (the cluster `ray start` began on this machine), "ray://HOST:PORT"
    or "HOST:PORT" of a head node, or None (a Ray just for this command, on this
    machine). When Ray is already initialised (a notebook, the tests), that connection
    is used as it is and left open. quiet: no worker logs, no Ray Data info lines.
    """
    ray = require_ray()
    owned = not ray.is_initialized()
    data_log = logging.getLogger("ray.data")  # logs each stage at INFO to stderr
    level = data_log.level
    if quiet:
        data_log.setLevel(logging.WARNING)
    if owned:
        kwargs = {"include_dashboard": False} if address is None else {}
        ray.init(address=address, logging_level=logging.WARNING, log_to_driver=not quiet,
                 **kwargs)
    try:
        info = cluster_info()
        log.info("ray cluster %s: %d node(s), %d CPU(s), %d GPU(s)", info.address, info.nodes,
                 info.cpus, info.gpus)
        yield info
    finally:
        data_log.setLevel(level)
        if owned:
            ray.shutdown()


@contextlib.contextmanager
def data_context(progress: bool) -> Iterator[None]:
    """Ray Data settings for one stage: rows in input order; Ray's bars only with `progress`.

    The driver's DataContext is process-wide; the previous values are put back after.
    """
    require_ray()
    from ray.data import DataContext

    ctx = DataContext.get_current()
    saved = (ctx.execution_options.preserve_order, ctx.enable_progress_bars)
    ctx.execution_options.preserve_order = True
    ctx.enable_progress_bars = progress
    try:
        yield
    finally:
        ctx.execution_options.preserve_order, ctx.enable_progress_bars = saved


def node_id() -> str:
    """The Ray node this code runs on (inside a task or actor)."""
    return require_ray().get_runtime_context().get_node_id()
