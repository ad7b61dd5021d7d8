"""`faceidx synth`: write a collection of synthetic faces with real-face statistics."""

from __future__ import annotations

from pathlib import Path

import click

from faceidx.cli.options import echo_json, human_bytes, json_option, settings


@click.command()
@click.option("--out", "out", required=True, type=click.Path(file_okay=False, path_type=Path),
              help="Collection directory to write.")
@click.option("--identities", type=click.IntRange(min=1), required=True,
              help="Number of people.")
@click.option("--per-identity", type=click.FloatRange(min=1), default=10.0, show_default=True,
              help="Mean images per person; counts follow LFW's long tail (most people few "
                   "images, some hundreds) unless --fixed-counts.")
@click.option("--dim", type=click.IntRange(min=2), default=128, show_default=True,
              help="Embedding dimension D.")
@click.option("--seed", type=click.IntRange(min=0), default=0, show_default=True,
              help="Chooses the people and their images (the embedding space is fixed).")
@click.option("--shard-rows", type=click.IntRange(min=1), default=1_000_000, show_default=True,
              help="Rows per parquet shard.")
@click.option("--float16", is_flag=True, help="Store embeddings as float16 (half the bytes).")
@click.option("--fixed-counts", is_flag=True,
              help="Exactly round(--per-identity) images per person instead of a long tail.")
@click.option("--resume", is_flag=True, help="Continue an interrupted run with the same arguments.")
@click.option("--report", is_flag=True,
              help="Also print the achieved statistics next to the targets (on a regenerated "
                   "sample of up to 20k rows / 2k identities).")
@json_option
def synth(out: Path, identities: int, per_identity: float, dim: int, seed: int, shard_rows: int,
          float16: bool, fixed_counts: bool, resume: bool, report: bool, as_json: bool) -> None:
    """Write synthetic face embeddings with the statistics of real ones.

    Vectors follow the pretrained dlib 128-D model on LFW: a large common mean,
    identity centres spread over ~32 effective directions, heavy-tailed per-image
    noise; stored L2-normalised (model synthetic-face-v1). Streams: memory stays
    bounded at any size. Same arguments, same output.

    \b
    Example:
      faceidx synth --out faces --identities 100000 --per-identity 10 --report
      faceidx synth --out small --identities 500 --per-identity 4 --dim 64 --seed 1 --json
    """
    from faceidx.synth import SyntheticFaces, report_table, synth_report, write_faces

    gen = SyntheticFaces(identities, per_identity, dim=dim, seed=seed, fixed_counts=fixed_counts)
    summary = write_faces(gen, out, shard_rows=shard_rows, progress=settings().progress,
                          dtype="float16" if float16 else "float32", resume=resume)
    stats = synth_report(gen) if report else None
    if as_json:
        echo_json({**summary, "report": stats} if stats else summary)
        return
    click.echo(f"wrote {summary['rows']:,} rows ({identities:,} identities, {summary['shards']} "
               f"shard(s), {human_bytes(summary['bytes'])}) to {out} in {summary['seconds']:.1f} s "
               f"({summary['rows_per_s']:,.0f} rows/s)")
    if stats:
        click.echo(report_table(stats["raw"], stats["stored"], stats["targets"]))
