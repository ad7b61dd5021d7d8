"""The `faceidx` command group: global options, error translation, subcommands."""

from __future__ import annotations

import os

import click

from faceidx import __version__
from faceidx.cli.options import Settings, add_global_options, configure_logging
from faceidx.errors import FaceidxError


class FaceidxGroup(click.Group):
    """Turns library errors into one-line messages (exit 1); usage errors stay exit 2.

    Every subcommand also accepts -v/-q after its name (`faceidx query IDX x.jpg -q`).
    """

    def add_command(self, cmd: click.Command, name: str | None = None) -> None:
        super().add_command(add_global_options(cmd), name)

    def invoke(self, ctx: click.Context):
        try:
            return super().invoke(ctx)
        except FaceidxError as err:
            raise click.ClickException(str(err)) from err
        except ModuleNotFoundError as err:  # an optional extra this node did not install
            from faceidx.extras import missing_dependency

            missing = missing_dependency(err)
            if missing is None:
                raise
            raise click.ClickException(str(missing)) from err


@click.group(cls=FaceidxGroup, context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(__version__, prog_name="faceidx")
@click.option("-v", "--verbose", count=True,
              help="More log output (-vv for debug); also accepted after the command.")
@click.option("-q", "--quiet", is_flag=True,
              help="No progress bars or info lines: results, warnings and errors only.")
@click.pass_context
def cli(ctx: click.Context, verbose: int, quiet: bool) -> None:
    """Face identification at billion scale: embed, build, calibrate, query.

    \b
    Example:
      faceidx synth --out faces --identities 1000 --per-identity 5
      faceidx info faces
    """
    ctx.obj = Settings(verbose=verbose, quiet=quiet)
    configure_logging(verbose, quiet)
    # FAISS/OpenMP busy-wait on a loaded 2-core machine; this is the edge, so set it here.
    os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")


def _register() -> None:
    from faceidx.cli.add import add
    from faceidx.cli.build import build, merge, tune
    from faceidx.cli.calibrate import calibrate
    from faceidx.cli.convert import export_cmd, import_cmd
    from faceidx.cli.embed import embed
    from faceidx.cli.enrol import enrol
    from faceidx.cli.erase import erase
    from faceidx.cli.export_model import export_model
    from faceidx.cli.info import info
    from faceidx.cli.query import query
    from faceidx.cli.serve import serve
    from faceidx.cli.synth import synth
    from faceidx.cli.train import train
    from faceidx.cli.verify import verify

    for command in (info, synth, embed, enrol, train, build, merge, tune, add, erase, calibrate, query,
                    verify, serve,
                    export_model, import_cmd, export_cmd):
        cli.add_command(command)


_register()
