"""`faceidx erase`: remove faces (by face id or identity) from an index without rebuilding."""

from __future__ import annotations

from pathlib import Path

import click

from faceidx.cli.options import echo_json, json_option


@click.command()
@click.argument("index_dir", type=click.Path(exists=True, file_okay=False, path_type=Path))
@click.option("--face-id", "face_ids", type=int, multiple=True, help="A face id to erase (repeatable).")
@click.option("--identity", "identities", multiple=True, help="Erase every face of this identity (repeatable).")
@json_option
def erase(index_dir: Path, face_ids: tuple[int, ...], identities: tuple[str, ...],
          as_json: bool) -> None:
    """Erase faces from an index: never returned again, exact vectors and sources wiped.

    Their compressed FAISS codes stay in the lists (unlinked) until the index is rebuilt.

    \b
    Example:
      faceidx erase faces.index --identity "Jane Doe"
      faceidx erase faces.index --face-id 12 --face-id 99
    """
    if not face_ids and not identities:
        raise click.UsageError("give at least one --face-id or --identity")
    from faceidx.index.writer import open_writer

    with open_writer(index_dir, "faceidx erase") as writer:
        result = writer.erase(face_ids=face_ids, identities=identities)
    if as_json:
        echo_json(result)
        return
    click.echo(f"{index_dir}: erased {result['erased_now']} face(s) "
               f"({result['erased_total']} erased in total)")
