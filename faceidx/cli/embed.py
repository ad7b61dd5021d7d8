"""`faceidx embed`: images -> aligned faces -> embedding collection."""

from __future__ import annotations

from pathlib import Path

import click

from faceidx.cli.options import (
    device_option,
    echo_json,
    json_option,
    settings,
    warn_unlabelled,
)
from faceidx.cli.ray_option import ray_address_arg, ray_option


@click.command()
@click.argument("source", type=click.Path(exists=True, path_type=Path))
@click.option("--out", "out", required=True, type=click.Path(file_okay=False, path_type=Path),
              help="Collection folder to write (or resume).")
@click.option("--model", default="dlib-resnet-v1", show_default=True,
              help="Registered model name, a trained MODEL_DIR, or a model with its card "
                   "(ONNX, TorchScript; docs/INTEROP.md).")
@device_option
@click.option("--batch-size", default=64, show_default=True, type=click.IntRange(min=1),
              help="Faces per model forward pass.")
@click.option("--precision", type=click.Choice(["auto", "fp32"]), default="auto", show_default=True,
              help="On CUDA, auto runs the model under fp16/bf16 autocast when the first "
                   "batch's embeddings keep cosine >= 0.9999 with fp32; fp32 never does. "
                   "The CPU always runs fp32.")
@click.option("--workers", default=None, type=click.IntRange(min=0),
              help="Processes decoding and detecting images (0: in this process). "
                   "Default: the number of CPU cores, at most 8.")
@click.option("--tta", type=click.Choice(["none", "flip", "jitter"]), default="none",
              show_default=True,
              help="flip: average the chip's and its mirror's embeddings; jitter: also 8 "
                   "dlib-style jittered copies (10 views, ~10x the model time).")
@click.option("--shard-rows", default=50_000, show_default=True, type=click.IntRange(min=1),
              help="Rows per shard; a finished shard is what a killed run keeps.")
@click.option("--detector", type=click.Choice(["hog", "hog+mtcnn", "mtcnn", "mmod", "none"]),
              default="hog", show_default=True,
              help="hog: dlib HOG (retried upsampled) + 5-point alignment; hog+mtcnn: MTCNN "
                   "where HOG finds nothing (needs facenet-pytorch); mtcnn, mmod: that "
                   "detector alone; none: inputs are aligned crops.")
@click.option("--faces", "policy", type=click.Choice(["largest", "central", "all"]),
              default="largest", show_default=True,
              help="Faces kept per image: the largest, the most central, or each as its own row.")
@click.option("--identity-regex", default=None,
              help=r"Flat folder: identity = group 1 of this regex in the file name, "
                   r"e.g. 'subject(\d+)\.'.")
@click.option("--retry-failed", is_flag=True,
              help="Also try again the images failures.jsonl lists (e.g. files that were "
                   "still being copied); their old records are replaced.")
@ray_option
@json_option
def embed(source: Path, out: Path, model: str, device: str, batch_size: int, precision: str,
          workers: int | None, tta: str, shard_rows: int, detector: str, policy: str, identity_regex: str | None,
          retry_failed: bool, ray_address: str | None, as_json: bool) -> None:
    """Detect, align and embed the faces of SOURCE into the collection OUT.

    SOURCE is a folder-per-identity tree (LFW, ORL), a flat folder (identities from
    --identity-regex, e.g. Yale), a CSV/parquet manifest with `path` and `identity`
    columns, or one image. Formats are sniffed, not taken from extensions.

    Images that cannot be decoded or hold no face go to OUT/failures.jsonl with the
    reason; the summary counts them. Rerunning after a kill resumes: sources already
    in finished shards or in failures.jsonl are skipped (--retry-failed tries the
    latter again).

    \b
    Example:
      faceidx embed ../shared/data/lfw-subset --out lfw-emb
      faceidx embed ../shared/data/yale --identity-regex 'subject(\\d+)\\.' --out yale-emb
      faceidx embed crops/ --detector none --tta flip --out crops-emb
      faceidx embed /shared/photos --out /shared/faces --ray auto   # on a Ray cluster
    """
    import os
    import re

    from faceidx.embedder.pipeline import embed_source
    from faceidx.embedder.sources import list_labelled

    if identity_regex is not None:
        try:
            re.compile(identity_regex)
        except re.error as err:
            raise click.BadParameter(str(err), param_hint="--identity-regex") from err
    if workers is None:
        workers = min(os.cpu_count() or 1, 8)
    if device == "cuda" and ray_address is None:
        import torch

        if not torch.cuda.is_available():
            raise click.BadParameter("no CUDA device is available", param_hint="--device")
    listing = list_labelled(source, identity_regex)
    warn_unlabelled(listing, "embed")
    items = listing.items
    if ray_address is not None:
        from faceidx.distributed.cluster import ray_session
        from faceidx.distributed.embed import embed_source_ray

        with ray_session(ray_address_arg(ray_address), quiet=settings().quiet):
            summary = embed_source_ray(items, out, model, batch_size=batch_size, tta=tta,
                                       detector=detector, policy=policy, shard_rows=shard_rows,
                                       device=device, progress=settings().progress,
                                       retry_failed=retry_failed,
                                       labelling={"identity_regex": identity_regex})
    else:
        summary = embed_source(items, out, model, device=device, batch_size=batch_size,
                               precision=precision, workers=workers, tta=tta, detector=detector, policy=policy,
                               shard_rows=shard_rows, progress=settings().progress,
                               labelling={"identity_regex": identity_regex},
                               retry_failed=retry_failed)
    if as_json:
        echo_json(summary.to_json())
        return
    s = summary
    resumed = f" ({s.skipped} already done)" if s.skipped else ""
    click.echo(f"images   {s.images}{resumed}")
    click.echo(f"labels   {listing.explain()}")
    click.echo(f"faces    {s.faces} written this run, {s.rows_total} in {out}")
    failed = sum(s.failures.values())
    reasons = ", ".join(f"{k} {v}" for k, v in sorted(s.failures.items()))
    click.echo(f"failures {failed}" + (f" ({reasons}; see {out / 'failures.jsonl'})" if failed else ""))
    click.echo(f"speed    {s.images_per_s:.1f} images/s ({s.processed} in {s.seconds:.1f} s)")
    if s.nodes:
        click.echo(f"ray      work spread over {len(s.nodes)} node(s)")
