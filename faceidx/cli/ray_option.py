"""`--ray [ADDRESS]`: run a batch command on Ray (faceidx.distributed), shared by embed and build."""

from __future__ import annotations

import contextlib
from collections.abc import Iterator

import click

LOCAL = "local"  # what a bare --ray means: a Ray started for this command on this machine

ray_option = click.option(
    "--ray", "ray_address", is_flag=False, flag_value=LOCAL, default=None, metavar="[ADDRESS]",
    help="Run on Ray (pip install 'faceidx[ray]'): bare --ray starts Ray on this machine; "
         "--ray auto joins the cluster `ray start` began here; --ray HOST:PORT a head node. "
         "Input and output must be on a path every node sees.")


def ray_address_arg(value: str) -> str | None:
    """The address for ray.init: None for a bare --ray (a local Ray), else as given."""
    return None if value == LOCAL else value


@contextlib.contextmanager
def shard_engine(ray_address: str | None, device: str, quiet: bool) -> Iterator[object]:
    """BuildOptions.engine for build/add: None (this process), or a RayFiller connected
    to the cluster for the duration of the command."""
    if ray_address is None:
        yield None
        return
    from faceidx.distributed.build import RayFiller
    from faceidx.distributed.cluster import ray_session

    with ray_session(ray_address_arg(ray_address), quiet=quiet):
        yield RayFiller(device)
