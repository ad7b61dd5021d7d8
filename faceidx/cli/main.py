"""The `faceidx` command group: global options, error translation, subcommands."""

from __future__ import annotations

import logging
import os

import click

from faceidx import __version__
from faceidx.cli.options import Settings
from faceidx.errors import FaceidxError


class FaceidxGroup(click.Group):
    """Turns library errors into one-line messages (exit 1); usage errors stay exit 2."""

    def invoke(self, ctx: click.Context):
        try:
            return super().invoke(ctx)
        except FaceidxError as err:
            raise click.ClickException(str(err)) from err


@click.group(cls=FaceidxGroup, context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(__version__, prog_name="faceidx")
@click.option("-v", "--verbose", count=True, help="More log output (-vv for debug).")
@click.option("-q", "--quiet", is_flag=True, help="No progress bars, only results and errors.")
@click.pass_context
def cli(ctx: click.Context, verbose: int, quiet: bool) -> None:
    """Face identification at billion scale: embed, build, calibrate, query.

    \b
    Example:
      faceidx synth --out faces --identities 1000 --per-identity 5
      faceidx info faces
    """
    ctx.obj = Settings(verbose=verbose, quiet=quiet)
    level = logging.WARNING - 10 * verbose if not quiet else logging.ERROR
    logging.basicConfig(level=max(level, logging.DEBUG), format="%(levelname)s %(name)s: %(message)s")
    # FAISS/OpenMP busy-wait on a loaded 2-core machine; this is the edge, so set it here.
    os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")


def _register() -> None:
    from faceidx.cli.add import add
    from faceidx.cli.build import build, merge, tune
    from faceidx.cli.calibrate import calibrate
    from faceidx.cli.embed import embed
    from faceidx.cli.erase import erase
    from faceidx.cli.info import info
    from faceidx.cli.query import query
    from faceidx.cli.synth import synth
    from faceidx.cli.train import train

    for command in (info, synth, embed, train, build, merge, tune, add, erase, calibrate, query):
        cli.add_command(command)


_register()
