"""`faceidx verify`: 1:1, is this face the claimed person?"""

from __future__ import annotations

from pathlib import Path

import click

from faceidx.cli.options import device_option, echo_json, json_option
from faceidx.cli.query import threshold_option


@click.command()
@click.argument("index_dir", type=click.Path(exists=True, file_okay=False, path_type=Path))
@click.argument("probe", type=click.Path(exists=True, path_type=Path))
@click.option("--identity", required=True, help="The claimed identity.")
@threshold_option("'auto' (the calibrated 1:1 threshold, for its target FAR) or a cosine score.")
@click.option("--model", default=None, help="Model to embed the probe (default: the index's).")
@device_option
@json_option
def verify(index_dir: Path, probe: Path, identity: str, threshold: str, model: str | None,
           device: str, as_json: bool) -> None:
    """Verify PROBE against one identity's faces: match or not, the score and threshold.

    PROBE is an image (its largest face) or an embeddings collection (every row). The
    score is the best exact cosine over the identity's faces; the default threshold is
    the 1:1 one `faceidx calibrate` set for its target false accept rate (FAR).

    \b
    Example:
      faceidx verify faces.index door-camera.jpg --identity Ada_Lovelace
      faceidx verify faces.index probes.parquet --identity Ada_Lovelace --json
    """
    from faceidx.gallery import open_gallery
    from faceidx.gallery.probes import is_collection

    gallery = open_gallery(index_dir, device=device, model=model)
    if is_collection(probe):
        from faceidx.io import open_collection

        coll = open_collection(probe)
        gallery.index.meta.check_compatible(coll.meta, probe)
        batch = coll.read_all(columns=["source", "embedding"])
        answers = [(str(s), gallery.verify(v, identity, threshold))
                   for s, v in zip(batch.sources, batch.embeddings, strict=True)]
    else:
        answers = [(str(probe), gallery.verify(probe, identity, threshold))]
    for src, v in answers:
        if as_json:
            echo_json({"probe": src, **v.to_json()})
            continue
        word = "MATCH" if v.match else "no match"
        click.echo(f"{src}: {word} for {identity}: score {v.score:.4f} vs threshold "
                   f"{v.threshold:.4f} from {v.threshold_from}; best face {v.face_id}")
