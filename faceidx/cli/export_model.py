"""`faceidx export-model`: a faceidx model as ONNX and TorchScript, each with its card."""

from __future__ import annotations

from pathlib import Path

import click

from faceidx.cli.options import echo_json, json_option


@click.command("export-model")
@click.argument("model")
@click.option("--out", "out_dir", required=True, type=click.Path(file_okay=False, path_type=Path),
              help="Folder to write; each format goes to OUT/<format>/ with its card.")
@click.option("--format", "formats", multiple=True, type=click.Choice(["onnx", "torchscript"]),
              help="Format(s) to write (repeatable). Default: both.")
@json_option
def export_model(model: str, out_dir: Path, formats: tuple[str, ...], as_json: bool) -> None:
    """Export MODEL (dlib-resnet-v1, a dlib .dat file or a trained MODEL_DIR) to ONNX/TorchScript.

    The exported model keeps MODEL's name, version and alignment template, so its
    vectors mix with the native model's in one index. Before its card is written the
    export embeds a seeded set of check chips and must agree with MODEL to a cosine of
    0.99999 on every one (figures stored in the card under `parity`).

    \b
    Example:
      faceidx export-model dlib-resnet-v1 --out dlib-export
      faceidx embed ../shared/data/orl --detector none --model dlib-export/onnx --out orl-emb
      faceidx export-model my-model/ --out my-export --format onnx
    """
    from faceidx.embedder.exporter import EXPORT_FORMATS
    from faceidx.embedder.exporter import export_model as run_export

    results = run_export(model, out_dir, formats or EXPORT_FORMATS)
    for r in results:
        row = {"format": r.format, "model": str(r.folder), "name": r.card.name,
               "version": r.card.version, "dim": r.card.embedding_dim,
               "template": r.card.template, "min_cosine": r.min_cosine,
               "max_abs_raw": r.max_abs_raw}
        if as_json:
            echo_json(row)
        else:
            click.echo(f"{r.format:<12} {r.folder}  {r.card.name} {r.card.version} "
                       f"D={r.card.embedding_dim}, worst cosine vs source {r.min_cosine:.8f}")
