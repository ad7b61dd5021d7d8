"""`python -m faceidx ...`: the CLI without its console script (e.g. from a source tree)."""

from faceidx.cli.main import cli

if __name__ == "__main__":
    cli(prog_name="faceidx")
