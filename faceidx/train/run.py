"""One training run from a DATA folder: list, chip (cached), split, build the net, train.

This is what `faceidx train` calls; the loop itself (faceidx.train.loop) knows nothing of
folders or detectors.
"""

from __future__ import annotations

import logging
import os
from dataclasses import dataclass
from pathlib import Path

from faceidx.embedder.modelcard import DEFAULT_TEMPLATE
from faceidx.errors import DataError
from faceidx.train.data import check_trainable, list_training_items, load_chips, split_identities
from faceidx.train.loop import TrainConfig, TrainResult, train, training_paths
from faceidx.train.nets import SCRATCH, initial_net, template_for
from faceidx.train.validate import make_validator

log = logging.getLogger(__name__)

DEFAULT_LR = {"scratch": 1e-3, "pretrained": 1e-6}


@dataclass
class RunOptions:
    """Every `faceidx train` option, with the CLI's defaults."""

    init: str = "dlib-resnet-v1"
    architecture: str = "small-cnn"
    embedding_dim: int = 128
    margin: float | None = None  # the loss's default
    mining: str = "batch-all"
    loss: str = "triplet"
    siamese_distance: str = "abs"
    sampler: str = "random"
    clusters: int | None = None
    cluster_share: float = 0.5
    refresh_every: int | None = None
    p: int = 8
    k: int = 4
    epochs: int = 10
    lr: float | None = None
    device: str = "cpu"
    augment: bool = True
    val: float | str | os.PathLike | None = 0.2
    resume: bool = False
    detector: str = "hog"
    identity_regex: str | None = None
    workers: int = 0
    small: str = "replace"
    batches_per_epoch: int | None = None
    seed: int = 0
    chip_cache: str | os.PathLike | None = None
    template: str | None = None  # None: the architecture's (scratch) or the start model's


def default_lr(init: str) -> float:
    return DEFAULT_LR["scratch" if init == SCRATCH else "pretrained"]


def run_training(data: str | os.PathLike, out: str | os.PathLike, opts: RunOptions,
                 show_progress: bool = False) -> TrainResult:
    """Train on the faces of `data` and write the model directory `out`."""
    cache = Path(opts.chip_cache) if opts.chip_cache else training_paths(out)["dir"] / "chips"
    template = opts.template or template_for(opts.init, opts.architecture)
    if opts.detector == "none" and template != DEFAULT_TEMPLATE:
        raise DataError(f"--detector none passes each image as a {DEFAULT_TEMPLATE} chip, but this model "
                        f"is trained on {template} chips: use --detector hog, or --template {DEFAULT_TEMPLATE}",
                        data)
    chips = load_chips(list_training_items(data, opts.identity_regex), cache, opts.detector,
                       workers=opts.workers, show_progress=show_progress, template=template)
    check_trainable(chips.labels, data)
    train_set, val_set = chips, None
    if isinstance(opts.val, (str, os.PathLike)):
        val_set = load_chips(list_training_items(opts.val, opts.identity_regex), cache, opts.detector,
                             workers=opts.workers, show_progress=show_progress, template=template)
    elif opts.val:
        held = split_identities(chips.labels, float(opts.val), seed=opts.seed)
        train_set, val_set = chips.subset(~held), chips.subset(held)
        check_trainable(train_set.labels, data)
    if val_set is not None and len(set(val_set.labels)) < 2:
        raise DataError("the validation set needs at least 2 identities", opts.val if
                        isinstance(opts.val, (str, os.PathLike)) else data)
    log.info("training on %d faces of %d identities; validating on %s", len(train_set),
             len(set(train_set.labels)),
             f"{len(val_set)} faces of {len(set(val_set.labels))} identities" if val_set else "nothing")
    validate = make_validator(val_set, seed=opts.seed) if val_set else None
    net, arch = initial_net(opts.init, opts.embedding_dim, opts.architecture, seed=opts.seed)
    config = TrainConfig(architecture=arch, embedding_dim=opts.embedding_dim, base=opts.init,
                         margin=opts.margin, mining=opts.mining, loss=opts.loss,
                         siamese_distance=opts.siamese_distance, sampler=opts.sampler,
                         clusters=opts.clusters, cluster_share=opts.cluster_share,
                         refresh_every=opts.refresh_every, p=opts.p, k=opts.k,
                         epochs=opts.epochs, lr=opts.lr if opts.lr is not None else default_lr(opts.init),
                         augment=opts.augment, small=opts.small,
                         batches_per_epoch=opts.batches_per_epoch, seed=opts.seed, template=template)
    return train(net, train_set, out, config, validate=validate, device=opts.device,
                 resume=opts.resume, show_progress=show_progress, data_path=data)
