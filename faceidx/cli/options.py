"""Options shared by faceidx commands, and the context object they fill."""

from __future__ import annotations

import json
import logging
from dataclasses import dataclass
from pathlib import Path

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


class EchoHandler(logging.Handler):
    """Log records to the current stderr, each warning text once per command.

    Library code logs a warning and the CLI may report the same one (case aside): the
    second is dropped. faceidx's own records show from `own_level`, other libraries'
    from WARNING (DEBUG at -vv). The stream is looked up at each record, so CliRunner
    sees it.
    """

    def __init__(self, verbose: int = 0):
        super().__init__()
        self.verbose = verbose
        self.own_level = logging.DEBUG if verbose >= 2 else logging.INFO if verbose else logging.WARNING
        self.other_level = logging.DEBUG if verbose >= 2 else logging.WARNING
        self.seen: set[str] = set()

    def emit(self, record: logging.LogRecord) -> None:
        own = record.name == "faceidx" or record.name.startswith("faceidx.")
        if record.levelno < (self.own_level if own else self.other_level):
            return
        try:
            text = record.getMessage()
        except Exception:  # a bad format string in someone's log call: show it raw
            text = str(record.msg)
        if record.levelno >= logging.WARNING:
            key = " ".join(text.casefold().split())
            if key in self.seen:
                return
            self.seen.add(key)
        where = f" {record.name}" if self.verbose else ""
        click.echo(f"{record.levelname.lower()}{where}: {text}", err=True)


def configure_logging(verbose: int, quiet: bool) -> None:
    """The CLI's logging: warnings always (once each); -v faceidx's info; -vv all debug.

    Other libraries stay at WARNING below -vv, so -v is free of loader noise such as
    faiss's "No module named 'faiss.swigfaiss_avx512'" (an INFO it logs when it falls
    back to its generic build, which is normal). --quiet hides progress bars and info.
    """
    root = logging.getLogger()
    for h in [h for h in root.handlers if isinstance(h, EchoHandler)]:
        root.removeHandler(h)
    level = 0 if quiet and not verbose else verbose
    root.addHandler(EchoHandler(level))
    root.setLevel(logging.DEBUG if level >= 2 else logging.INFO if level else logging.WARNING)


def _global_flag(ctx: click.Context, param: click.Parameter, value) -> None:
    if not value:
        return
    s = ctx.find_object(Settings)
    if s is None:
        s = ctx.ensure_object(Settings)
    if param.name == "verbose":
        s.verbose += value
    else:
        s.quiet = True
    configure_logging(s.verbose, s.quiet)


def add_global_options(command: click.Command) -> click.Command:
    """Accept -v/--verbose and -q/--quiet after the subcommand too (`faceidx query ... -q`)."""
    taken = {opt for p in command.params for opt in getattr(p, "opts", [])}
    if {"-v", "--verbose", "-q", "--quiet"} & taken:
        return command
    command.params.append(click.Option(
        ["-v", "--verbose"], count=True, expose_value=False, callback=_global_flag,
        help="More log output (-vv for debug); also accepted before the command."))
    command.params.append(click.Option(
        ["-q", "--quiet"], is_flag=True, expose_value=False, callback=_global_flag,
        help="No progress bars or info lines: results, warnings and errors only."))
    return command


def warn(message: str) -> None:
    """A warning from the CLI: printed once, even when the library logged the same text."""
    logging.getLogger("faceidx.cli").warning("%s", message)


def warn_unlabelled(listing, command: str) -> None:
    """Warn that images without identity give faces that can be found but never named."""
    if not listing.unlabelled:
        return
    nameless = next(it.path for it in listing.items if it.identity is None)
    warn(f"{listing.unlabelled} of {len(listing.items)} images in {listing.source} have no "
         f"identity (e.g. {nameless}): `faceidx {command}` keeps their faces, and a query can "
         "find them but never name them. Name people by folder (SOURCE/<name>/photo.jpg) or "
         "--identity-regex, or use `faceidx enrol INDEX_DIR SOURCE`, which also names photos "
         "by file (Barack_Obama_0001.jpg -> Barack_Obama) or --name")


def warn_unlabelled_rows(collection: Path, command: str) -> None:
    """Warn when a collection holds faces without identity (streams the identity column)."""
    from faceidx.io import open_collection

    coll = open_collection(collection)
    nameless = 0
    for batch in coll.iter_batches(columns=["identity"], validate=False):
        nameless += sum(i is None for i in batch.identities.tolist())
    if nameless:
        warn(f"{nameless} of {coll.num_rows} faces in {collection} have no identity: after "
             f"`faceidx {command}` a query can find them but never name them (re-embed with "
             "names: folder per person, --identity-regex, or `faceidx enrol`)")


def require_collection(path: Path, command: str) -> None:
    """Refuse a folder that is no embeddings collection (e.g. photos), saying what to run.

    Raises DataError when `path` is a folder with neither collection.json nor parquet files.
    """
    from faceidx.errors import DataError

    path = Path(path)
    if not path.is_dir() or (path / "collection.json").exists() or any(path.glob("*.parquet")):
        return
    raise DataError(f"is not an embeddings collection (no collection.json): if it holds photos, "
                    f"run `faceidx embed {path} --out FACES` first and give FACES to "
                    f"`faceidx {command}`, or use `faceidx enrol INDEX_DIR {path}`, which embeds "
                    "and indexes in one step", path)


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
