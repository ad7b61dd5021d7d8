"""`faceidx import` / `faceidx export`: collections to and from ann-benchmarks HDF5 and big-ann."""

from __future__ import annotations

from pathlib import Path

import click

from faceidx.cli.options import echo_json, json_option


@click.command("export")
@click.argument("collection", type=click.Path(exists=True, path_type=Path))
@click.option("--out", required=True, type=click.Path(path_type=Path),
              help="FILE.hdf5 / FILE.h5 (ann-benchmarks) or a folder (big-ann .fbin/.ibin).")
@click.option("--test-size", default=1000, show_default=True, type=click.IntRange(min=0),
              help="Rows held out as the test (query) set; 0 for none.")
@click.option("-k", "k", default=100, show_default=True, type=click.IntRange(min=1),
              help="Exact neighbours stored per test row.")
@click.option("--seed", default=0, show_default=True, type=int, help="Seed of the test sample.")
@json_option
def export_cmd(collection: Path, out: Path, test_size: int, k: int, seed: int,
               as_json: bool) -> None:
    """Write COLLECTION as a benchmark dataset with exact ground truth for its test set.

    ann-benchmarks HDF5: datasets train / test / neighbors / distances, attributes
    distance (angular for normalised faces) and dimension; big-ann: base.fbin,
    query.fbin and groundtruth.ibin. faceidx's face ids, identities and sources ride
    along in extra datasets, so `faceidx import` gets the collection back.

    \b
    Example:
      faceidx synth --out syn --identities 10000 --per-identity 10
      faceidx export syn --out syn.hdf5 --test-size 1000 -k 100
      faceidx export syn --out syn-bigann/
    """
    from faceidx.io.exchange import export_collection

    s = export_collection(collection, out, test_size=test_size, k=k, seed=seed)
    if as_json:
        echo_json(s.to_json())
        return
    click.echo(f"{s.path}: {s.format}, {s.train} train + {s.test} test vectors, D={s.dim}, "
               f"{s.metric}, {s.k} exact neighbours per test row ({s.seconds:.1f} s)")


@click.command("import")
@click.argument("source", type=click.Path(exists=True, path_type=Path))
@click.option("--out", required=True, type=click.Path(file_okay=False, path_type=Path),
              help="Collection folder to write.")
@click.option("--split", type=click.Choice(["train", "test", "all"]), default="train",
              show_default=True, help="Which vectors become the collection.")
@click.option("--shard-rows", default=1_000_000, show_default=True, type=click.IntRange(min=1))
@json_option
def import_cmd(source: Path, out: Path, split: str, shard_rows: int, as_json: bool) -> None:
    """Read an ann-benchmarks HDF5 file or big-ann .fbin (folder) into a collection.

    Files written by `faceidx export` keep their model, face ids and identities; other
    tools' files get model `unknown` and row numbers as face ids (angular data is
    L2-normalised). `faceidx build` also takes such a file directly.

    \b
    Example:
      faceidx import glove-100-angular.hdf5 --out glove
      faceidx import syn-bigann/ --split all --out syn-again
    """
    from faceidx.io.exchange import import_vectors

    result = import_vectors(source, out, split=split, shard_rows=shard_rows)
    row = {"out": str(out), "rows": result.rows, "split": split}
    if as_json:
        echo_json(row)
        return
    click.echo(f"{out}: {result.rows} rows ({split}) from {source}")
