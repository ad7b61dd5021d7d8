"""`faceidx train`: FaceNet-style triplet training of a face model on a folder of faces."""

from __future__ import annotations

from pathlib import Path

import click

from faceidx.cli.options import device_option, echo_json, json_option, settings


def _val_option(value: str | None) -> float | Path | None:
    if value is None:
        return None
    try:
        frac = float(value)
    except ValueError:
        path = Path(value)
        if not path.exists():
            raise click.BadParameter(f"{value!r} is neither a fraction nor an existing folder",
                                     param_hint="--val") from None
        return path
    if frac == 0:
        return None
    if not 0 < frac < 1:
        raise click.BadParameter(f"a fraction must be in (0, 1), got {value}", param_hint="--val")
    return frac


@click.command()
@click.argument("data", type=click.Path(exists=True, path_type=Path))
@click.option("--out", required=True, type=click.Path(file_okay=False, path_type=Path),
              help="MODEL_DIR to write: model, checkpoint, history, curves, chip cache.")
@click.option("--init", default="dlib-resnet-v1", show_default=True,
              help="Start from a registered model (dlib-resnet-v1), a MODEL_DIR, or 'scratch'.")
@click.option("--architecture", default="small-cnn", show_default=True,
              help="Architecture for --init scratch (small-cnn, dlib-resnet, inception-resnet-v1).")
@click.option("--embedding-dim", default=128, show_default=True, type=click.IntRange(min=1),
              help="Embedding size; a new final layer when it differs from --init's.")
@click.option("--loss", type=click.Choice(["triplet", "contrastive", "siamese"]), default="triplet",
              show_default=True, help="Triplet margin loss, contrastive loss on pairs, or a Siamese "
                                      "same/not-same head trained with the network.")
@click.option("--margin", default=None, type=click.FloatRange(min=0, min_open=True),
              help="Triplet: alpha on squared distances of unit vectors (default 0.2); "
                   "contrastive: distance impostors are pushed beyond (default 1.0).")
@click.option("--mining", type=click.Choice(["batch-all", "batch-hard", "semi-hard"]),
              default="batch-all", show_default=True, help="Online triplet mining inside each batch.")
@click.option("--siamese-distance", type=click.Choice(["abs", "chi2"]), default="abs", show_default=True,
              help="The Siamese head's per-dimension distance: |a-b| or (a-b)^2/(|a|+|b|).")
@click.option("--sampler", type=click.Choice(["random", "cluster"]), default="random", show_default=True,
              help="P x K batches of random identities, or of look-alike identities "
                   "(k-means on the current model's identity centroids).")
@click.option("--clusters", default=None, type=click.IntRange(min=1),
              help="--sampler cluster: number of clusters (default: one per 2P identities).")
@click.option("--cluster-share", default=0.5, show_default=True, type=click.FloatRange(0, 1),
              help="--sampler cluster: share of batches drawn from clusters; the rest are random.")
@click.option("--refresh-every", default=None, type=click.IntRange(min=1),
              help="--sampler cluster: re-cluster every N steps too (always at each epoch start).")
@click.option("--p", "p", default=8, show_default=True, type=click.IntRange(min=2),
              help="Identities per batch.")
@click.option("--k", "k", default=4, show_default=True, type=click.IntRange(min=2),
              help="Images per identity per batch.")
@click.option("--small", type=click.Choice(["replace", "skip"]), default="replace", show_default=True,
              help="Identities with fewer than K images: repeat images, or leave them out.")
@click.option("--epochs", default=10, show_default=True, type=click.IntRange(min=1))
@click.option("--batches-per-epoch", default=None, type=click.IntRange(min=1),
              help="Default: enough to show each training image about once.")
@click.option("--lr", default=None, type=click.FloatRange(min=0, min_open=True),
              help="Adam learning rate. Default: 1e-3 from scratch, 1e-6 fine-tuning.")
@device_option
@click.option("--augment/--no-augment", default=True, show_default=True,
              help="Random flip, small crop and brightness/contrast jitter.")
@click.option("--val", default="0.2", show_default=True,
              help="Held-out identities for per-epoch verification: a fraction of DATA's "
                   "identities, a separate folder, or 0 for none.")
@click.option("--resume", is_flag=True, help="Continue from the checkpoint in --out.")
@click.option("--detector", type=click.Choice(["hog", "none"]), default="hog", show_default=True,
              help="As for `faceidx embed`: hog detection + alignment, or none for aligned crops.")
@click.option("--template", type=click.Choice(["auto", "dlib-150", "facenet-160", "arcface-112"]),
              default="auto", show_default=True,
              help="Alignment of the training chips, recorded in the model card so `embed --model` "
                   "cuts the same: auto = the architecture's (inception-resnet-v1: facenet-160, "
                   "else dlib-150) from scratch, the --init model's otherwise.")
@click.option("--identity-regex", default=None, help="Flat folder: identity regex, as for embed.")
@click.option("--workers", default=0, show_default=True, type=click.IntRange(min=0),
              help="Processes detecting faces while chips are cached (first run only).")
@click.option("--seed", default=0, show_default=True, type=int)
@json_option
def train(data: Path, out: Path, init: str, architecture: str, embedding_dim: int, loss: str,
          margin: float | None, mining: str, siamese_distance: str, sampler: str, clusters: int | None,
          cluster_share: float, refresh_every: int | None, p: int, k: int, small: str, epochs: int, batches_per_epoch: int | None,
          lr: float | None, device: str, augment: bool, val: str, resume: bool, detector: str,
          template: str, identity_regex: str | None, workers: int, seed: int, as_json: bool) -> None:
    """Train a face embedding on DATA (triplet, contrastive or Siamese loss); write MODEL_DIR.

    DATA is read like `faceidx embed` reads a SOURCE (folder per identity, flat folder
    with --identity-regex, or a manifest); faces are detected and aligned the same way
    and the chips are cached in OUT/training/chips, so later epochs and reruns do not
    detect again. Each batch holds P identities x K images (--sampler cluster: for a
    share of the batches, look-alike identities). The triplet loss is
    max(0, |A-P|^2 - |A-N|^2 + margin) on L2-normalised embeddings over the mined
    triplets, averaged over those with a positive loss; contrastive and siamese score
    every pair of the batch (docs/TRAIN.md). A Siamese head is saved in OUT beside the
    model; the index still searches the embeddings by cosine.

    Every epoch writes OUT/training/checkpoint.pt and the model (OUT/faceidx-model.json
    + model.safetensors, loadable with `faceidx embed --model OUT`) and, with --val,
    reports 10-fold verification accuracy and TAR@FAR=1e-3 on held-out identities.
    A NaN loss stops the run and keeps the last good epoch; --resume continues.

    \b
    Example:
      faceidx train ../shared/data/orl --out orl-model --init scratch --epochs 20
      faceidx train ../shared/data/lfw-subset --out lfw-ft --mining semi-hard --epochs 3
      faceidx train ../shared/data/lfw-subset --out lfw-cl --sampler cluster --loss contrastive
      faceidx train ../shared/data/orl --out orl-irv1 --init scratch --architecture inception-resnet-v1
      faceidx embed ../shared/data/orl --model orl-model --out orl-emb
    """
    from faceidx.embedder.device import resolve_device
    from faceidx.train.run import RunOptions, run_training

    opts = RunOptions(init=init, architecture=architecture, embedding_dim=embedding_dim,
                      margin=margin, mining=mining, loss=loss, siamese_distance=siamese_distance,
                      sampler=sampler, clusters=clusters, cluster_share=cluster_share,
                      refresh_every=refresh_every, p=p, k=k, epochs=epochs, lr=lr,
                      device=str(resolve_device(device)), augment=augment, val=_val_option(val),
                      resume=resume, detector=detector, identity_regex=identity_regex,
                      template=None if template == "auto" else template,
                      workers=workers, small=small, batches_per_epoch=batches_per_epoch, seed=seed)
    result = run_training(data, out, opts, show_progress=settings().progress)
    last = result.history[-1] if result.history else {}
    summary = {"model_dir": str(out), "epochs": last.get("epoch", 0),
               "model": result.model_config.get("name"), "version": result.model_config.get("version"),
               "history": result.history, "curves": str(result.curves) if result.curves else None}
    if as_json:
        echo_json(summary)
        return
    for h in result.history:
        parts = [f"epoch {h['epoch']:>3}"]
        if "loss" in h:
            parts.append(f"loss {h['loss']:.4f}  active {h['active_fraction']:.3f}  "
                         f"{h['images_per_s']:.1f} img/s")
        if h.get("val_accuracy") is not None:
            parts.append(f"val acc {h['val_accuracy']:.4f}  TAR@FAR=1e-3 {h['val_tar_at_far_1e-3']:.4f}")
            if h.get("val_tpir_at_fpir_1e-2") is not None:
                parts.append(f"TPIR@FPIR=1% {h['val_tpir_at_fpir_1e-2']:.4f}")
        click.echo("  ".join(parts))
    click.echo(f"model    {out} ({summary['model']} {summary['version']})")
    if result.curves:
        click.echo(f"curves   {result.curves}")
