"""Options shared by faceidx commands, and the context object they fill."""

from __future__ import annotations

import json
from dataclasses import dataclass

import click

from faceidx.progress import bars_wanted


@dataclass
class Settings:
    """Global settings from the `faceidx` group (-v, --quiet)."""

    verbose: int = 0
    quiet: bool = False

    @property
    def progress(self) -> bool:
        return bars_wanted(self.quiet)


def settings() -> Settings:
    ctx = click.get_current_context()
    return ctx.find_object(Settings) or Settings()


json_option = click.option("--json", "as_json", is_flag=True, help="Print JSON instead of text.")

device_option = click.option(
    "--device",
    type=click.Choice(["auto", "cpu", "cuda"]),
    default="auto",
    show_default=True,
    help="Where to compute: auto uses a CUDA GPU when there is one.",
)


def echo_json(obj) -> None:
    """Print one JSON object on one line."""
    click.echo(json.dumps(obj, default=str))


def human_bytes(n: float) -> str:
    for unit in ("B", "KiB", "MiB", "GiB", "TiB"):
        if abs(n) < 1024 or unit == "TiB":
            return f"{n:.1f} {unit}" if unit != "B" else f"{int(n)} B"
        n /= 1024
    return f"{n:.1f} TiB"
