"""`faceidx build`, `merge` and `tune`: index a collection, merge its shards, retune search."""

from __future__ import annotations

import re
from pathlib import Path

import click

from faceidx.cli.options import device_option, echo_json, json_option, settings
from faceidx.cli.ray_option import ray_option, shard_engine

_SIZE = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*([kmgt]?)i?b?\s*$", re.IGNORECASE)


def parse_size(value: str | None) -> int | None:
    """'4G', '512MiB', '1.5g', '1000000' -> bytes (binary units); None stays None."""
    if value is None:
        return None
    match = _SIZE.match(value)
    if not match:
        raise click.BadParameter(f"{value!r} is not a size like 4G or 512M", param_hint="--max-memory")
    number, unit = match.groups()
    return int(float(number) * 1024 ** "bkmgt".index(unit.lower() or "b"))


@click.command()
@click.argument("collection", type=click.Path(exists=True, path_type=Path))
@click.option("--out", "out_dir", required=True, type=click.Path(path_type=Path),
              help="Index directory to write (resumed when it holds an unfinished build).")
@click.option("--index-spec", default="auto", show_default=True,
              help="'auto' (parameters from n, D, --max-memory) or a FAISS index_factory string.")
@click.option("--max-memory", default=None,
              help="Peak RAM for search and build (codes, ids, centroids, training sample, LUT and re-rank budgets), e.g. 4G; a build that cannot fit is refused, saying what would.")
@click.option("--train-size", type=click.IntRange(min=1), default=None,
              help="Most vectors sampled to train (default 500000).")
@click.option("--shard-rows", type=click.IntRange(min=1), default=1_000_000, show_default=True,
              help="Vectors per index shard.")
@click.option("--target-agreement", type=click.FloatRange(0, 1), default=0.995, show_default=True,
              help="Rank-1 identity agreement with exact search the tuned defaults must reach.")
@click.option("--tune-queries", type=click.IntRange(min=1), default=1000, show_default=True,
              help="Held-back sample size for tuning nprobe / candidates.")
@click.option("--max-latency-ms", type=click.FloatRange(min=0, min_open=True), default=None,
              help="Single-query latency the tuned defaults must stay within (ms).")
@click.option("--center/--no-center", default=False, show_default=True,
              help="Subtract the collection mean (then renormalise) before indexing.")
@click.option("--merge", is_flag=True, help="Also merge shards into one memory-mapped index.")
@click.option("--vectors", "vector_dtype", type=click.Choice(["float32", "float16"]), default="float32",
              show_default=True,
              help="How the exact re-rank vectors are stored on disk: float16 halves their "
                   "disk and page cache; scores then carry ~1e-3 of rounding.")
@click.option("--trained", type=click.Path(exists=True, dir_okay=False, path_type=Path), default=None,
              help="Skip training: use this trained.index (e.g. one a GPU machine made with "
                   "--device cuda); it must match --index-spec.")
@device_option
@ray_option
@json_option
def build(collection: Path, out_dir: Path, index_spec: str, max_memory: str | None,
          train_size: int | None, shard_rows: int, target_agreement: float, tune_queries: int,
          max_latency_ms: float | None, center: bool, merge: bool, vector_dtype: str,
          trained: Path | None, device: str,
          ray_address: str | None, as_json: bool) -> None:
    """Index a collection: train on a sample, add shard by shard, tune search defaults.

    COLLECTION may also be an ann-benchmarks HDF5 file or a big-ann .fbin (folder): its
    train vectors are imported once into OUT.collection/ and indexed from there.

    Streams the collection (bounded memory), writes each stage atomically and resumes
    an interrupted build when rerun with the same arguments. Scores are cosine
    similarities; exact vectors are kept beside the index for re-ranking.

    \b
    Example:
      faceidx build faces/ --out faces.index
      faceidx build faces/ --out faces.index --index-spec IVF4096,PQ32x4fsr --merge
      faceidx build glove-100-angular.hdf5 --out glove.index
      faceidx build /shared/faces --out /shared/faces.index --ray auto   # shards in Ray tasks
      faceidx build faces/ --out cpu.index --index-spec IVF32768_HNSW32,PQ64x4fs \\
          --trained gpu.index/trained.index    # k-means trained on a GPU machine
      faceidx info faces.index
    """
    from faceidx.cli.options import require_collection
    from faceidx.index.build import BuildOptions, build_index
    from faceidx.io.exchange import collection_from_vector_file
    from faceidx.io.vector_sources import vector_file_format

    if vector_file_format(collection):  # ann-benchmarks HDF5 / big-ann: its train split
        collection = collection_from_vector_file(collection, Path(f"{out_dir}.collection"))
    require_collection(collection, "build")
    opts = BuildOptions(index_spec=index_spec, max_memory=parse_size(max_memory),
                        train_size=train_size, shard_rows=shard_rows,
                        target_agreement=target_agreement, tune_queries=tune_queries,
                        max_latency_ms=max_latency_ms,
                        center=center, merge=merge, device=device, trained=trained,
                        vectors=vector_dtype,
                        progress=settings().progress)
    if trained is not None and center:
        raise click.BadParameter("a trained index made elsewhere has no mean.npy to centre "
                                 "with; drop --center or --trained", param_hint="--trained")
    try:
        with shard_engine(ray_address, device, settings().quiet) as opts.engine:
            build_index(collection, out_dir, opts)
    except ValueError as err:
        raise click.BadParameter(str(err), param_hint="--index-spec") from err
    _report(out_dir, as_json)


@click.command()
@click.argument("index_dir", type=click.Path(exists=True, file_okay=False, path_type=Path))
@json_option
def merge(index_dir: Path, as_json: bool) -> None:
    """Merge an index's shards into one index memory-mapped at query time.

    \b
    Example:
      faceidx merge faces.index
    """
    from faceidx.index.writer import open_writer

    with open_writer(index_dir, "faceidx merge") as writer:
        writer.merge()
    _report(index_dir, as_json)


@click.command()
@click.argument("index_dir", type=click.Path(exists=True, file_okay=False, path_type=Path))
@click.option("--target-agreement", type=click.FloatRange(0, 1), default=0.995, show_default=True,
              help="Rank-1 identity agreement with exact search the defaults must reach.")
@click.option("--tune-queries", type=click.IntRange(min=1), default=1000, show_default=True,
              help="Faces sampled from the index as queries.")
@click.option("--max-latency-ms", type=click.FloatRange(min=0, min_open=True), default=None,
              help="Single-query latency the tuned defaults must stay within (ms).")
@json_option
def tune(index_dir: Path, target_agreement: float, tune_queries: int, max_latency_ms: float | None,
         as_json: bool) -> None:
    """Tune an index's search defaults (nprobe, k_factor) again against exact search.

    `faceidx build` tunes once; run this after `faceidx add` has grown the index, or to
    trade speed for agreement with another --target-agreement.

    \b
    Example:
      faceidx tune faces.index
      faceidx tune faces.index --target-agreement 0.99 --tune-queries 2000
      faceidx tune faces.index --max-latency-ms 2
    """
    from faceidx.index.writer import open_writer

    with open_writer(index_dir, "faceidx tune") as writer:
        writer.tune(target_agreement, tune_queries, max_latency_ms=max_latency_ms)
    _report(index_dir, as_json)


def _report(index_dir: Path, as_json: bool) -> None:
    from faceidx.index.describe import describe_index

    info = describe_index(index_dir)
    if as_json:
        echo_json(info)
        return
    click.echo(f"{info['path']}: {info['rows']} faces, {info['identities']} identities, "
               f"{info['factory']}, nprobe {info['nprobe']}, k_factor {info['k_factor']}"
               + (f", {info['candidates']} candidates" if info.get("candidates") else "")
               + (f", early stop after {info['early']['nprobe']} lists"
                  f" ({info['early'].get('candidates', '-')} candidates) at score"
                  f" >= {info['early']['accept']:.4f}" if info.get("early") else "")
               + f" (rank-1 agreement {info['tuned_agreement']}"
               + (f", decisions {info['tuned_decision_agreement']})"
                  if info.get("tuned_decision_agreement") is not None else ")"))
    if info["searched_parts"] > 1:
        click.echo(f"note: search visits {info['searched_parts']} parts one after another; "
                   f"`faceidx merge {index_dir}` makes one (2-3x faster at 10M faces)")
