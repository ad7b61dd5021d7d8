"""`faceidx add`: enrol a collection's faces into an existing index without retraining."""

from __future__ import annotations

from pathlib import Path

import click

from faceidx.cli.options import (
    device_option,
    echo_json,
    json_option,
    require_collection,
    settings,
    warn_unlabelled_rows,
)
from faceidx.cli.ray_option import ray_option, shard_engine


@click.command()
@click.argument("index_dir", type=click.Path(exists=True, file_okay=False, path_type=Path))
@click.argument("collection", type=click.Path(exists=True, path_type=Path))
@click.option("--shard-rows", type=click.IntRange(min=1), default=1_000_000, show_default=True,
              help="Vectors per new index shard.")
@device_option
@ray_option
@json_option
def add(index_dir: Path, collection: Path, shard_rows: int, device: str,
        ray_address: str | None, as_json: bool) -> None:
    """Add a collection's faces to an index as new shards (same model and D required).

    The trained quantizer is reused as is. Face ids that collide with indexed ones are
    renumbered from the index's next free face id. The index keeps serving while the
    new shards are built; they are published together at the end. An interrupted add
    resumes when rerun (with any --shard-rows); a collection already added is a no-op.
    One writer at a time: a second one is refused, naming the first.

    \b
    Example:
      faceidx add faces.index new-faces/
      faceidx add /shared/faces.index /shared/new-faces --ray auto   # shards in Ray tasks
    """
    from faceidx.index.build import BuildOptions
    from faceidx.index.describe import describe_index
    from faceidx.index.writer import open_writer

    require_collection(collection, "add")
    warn_unlabelled_rows(collection, "add")
    with open_writer(index_dir, "faceidx add") as writer, \
            shard_engine(ray_address, device, settings().quiet) as engine:
        result = writer.add_collection(collection, options=BuildOptions(
            shard_rows=shard_rows, device=device, progress=settings().progress, engine=engine))
    info = describe_index(index_dir)
    info["added"] = result["added"]
    info["already_added"] = result["already_added"]
    if as_json:
        echo_json(info)
        return
    if result["already_added"]:
        click.echo(f"{index_dir}: {collection} was already added; nothing to do")
        return
    click.echo(f"{index_dir}: added {info['added']} faces; now {info['rows']} faces, "
               f"{info['identities']} identities in {info['shards']} shard(s)")
