"""`faceidx erase`: remove faces (by face id or identity) from an index without rebuilding."""

from __future__ import annotations

from pathlib import Path

import click

from faceidx.cli.options import echo_json, json_option


@click.command()
@click.argument("index_dir", type=click.Path(exists=True, file_okay=False, path_type=Path))
@click.option("--face-id", "face_ids", type=int, multiple=True, help="A face id to erase (repeatable).")
@click.option("--identity", "identities", multiple=True, help="Erase every face of this identity (repeatable).")
@click.option("--collection", type=click.Path(exists=True, path_type=Path), default=None,
              help="Also rewrite this collection (the one the index was built from) without "
                   "the erased faces' rows.")
@click.option("--verify", is_flag=True,
              help="Then scan every file of the index (and --collection) for the erased "
                   "vectors (float32, float16), codes decoding near them, names and sources; "
                   "exit 1 if any trace is found.")
@json_option
def erase(index_dir: Path, face_ids: tuple[int, ...], identities: tuple[str, ...],
          collection: Path | None, verify: bool, as_json: bool) -> None:
    """Erase faces from an index, physically: removed from every FAISS part (shards and
    merged), their vectors, sources and face ids wiped, a name dropped once no face of
    it remains. An unknown face id or identity is an error. erasure-log.jsonl records
    when, the selector (salted and hashed) and how many faces; nothing biometric.

    \b
    Example:
      faceidx erase faces.index --identity "Jane Doe" --collection faces/ --verify
      faceidx erase faces.index --face-id 12 --face-id 99
    """
    if not face_ids and not identities:
        raise click.UsageError("give at least one --face-id or --identity")
    from faceidx.index.writer import open_writer

    with open_writer(index_dir, "faceidx erase") as writer:
        result = writer.erase(face_ids=face_ids, identities=identities, collection=collection,
                              verify=verify)
    report = result.get("verify")
    if as_json:
        echo_json(result)
    else:
        click.echo(f"{index_dir}: erased {result['erased_now']} face(s); now "
                   f"{result['faces']} faces, {result['identities']} identities")
        if "collection_rows_removed" in result:
            click.echo(f"{collection}: removed {result['collection_rows_removed']} row(s)")
        if "enrolled_rows_removed" in result:
            click.echo(f"faces embedded by `faceidx enrol`: removed "
                       f"{result['enrolled_rows_removed']} row(s)")
        if report is not None:
            click.echo(f"verify: scanned {report['files']} files ({report['bytes']} bytes): "
                       + ("no trace of the erased faces" if report["clean"] else
                          f"{len(report['traces'])} trace(s)"))
            for t in report["traces"]:
                click.echo(f"  {t['file']}: {t['count']} x {t['what']}")
    if report is not None and not report["clean"]:
        raise SystemExit(1)
