"""The training loop: P x K batches, a loss (triplet, contrastive, Siamese head), validation, checkpoints.

State on disk, inside the output MODEL_DIR:
- `training/checkpoint.pt`: weights (and a loss's own, the Siamese head's), optimiser,
  epochs done and history, written
  atomically at the end of every epoch and read back with `weights_only=True`;
- `training/history.json` and `training/curves.png`: per-epoch loss, active fraction,
  validation accuracy and TAR@FAR;
- `faceidx-model.json` + `model.safetensors`: the model after the last finished epoch
  (+ `siamese-head.safetensors` when the loss is the Siamese head's).
A NaN loss stops the run with a TrainingError naming the step; the files above still hold
the last good epoch, and `--resume` continues from them.
"""

from __future__ import annotations

import json
import logging
import math
import os
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np
import torch

from faceidx.errors import DataError, ModelMismatchError, TrainingError
from faceidx.io.atomic import atomic_path, write_json_atomic
from faceidx.progress import Counter
from faceidx.train.data import ChipSet, augment, to_input
from faceidx.train.export import CONFIG_NAME, export_head, export_model
from faceidx.train.objective import default_margin, make_loss, make_sampler
from faceidx.train.sampler import BatchSizeError, PKSampler

log = logging.getLogger(__name__)

CHECKPOINT_FORMAT = "faceidx-train-checkpoint-v1"
TRAINING_DIR = "training"


@dataclass
class TrainConfig:
    """Everything that shapes a run; stored in the checkpoint and the model JSON."""

    architecture: str
    embedding_dim: int = 128
    base: str = "scratch"
    margin: float | None = None  # None: the loss's default (triplet 0.2, contrastive 1.0)
    mining: str = "batch-hard"
    loss: str = "triplet"
    siamese_distance: str = "abs"
    head_lr: float = 1e-3  # the Siamese head starts untrained even when the network does not
    p: int = 8
    k: int = 4
    epochs: int = 10
    lr: float = 1e-3
    weight_decay: float = 0.0
    augment: bool = True
    small: str = "replace"
    batches_per_epoch: int | None = None
    seed: int = 0
    sampler: str = "random"
    clusters: int | None = None
    cluster_share: float = 0.5
    refresh_every: int | None = None
    refresh_images: int = 2
    template: str = "dlib-150"  # the alignment of the chips (what the model card records)

    def summary(self) -> dict:
        """What the model card records about the training."""
        out = {"loss": self.loss, "sampler": self.sampler, "margin": self.margin}
        if self.loss == "triplet":
            out["mining"] = self.mining
        if self.loss == "siamese":
            out["siamese_distance"] = self.siamese_distance
        if self.sampler == "cluster":
            out.update(clusters=self.clusters, cluster_share=self.cluster_share,
                       refresh_every=self.refresh_every)
        return out


@dataclass
class TrainResult:
    """The per-epoch history (epoch 0 = before training) and where things were written."""

    history: list[dict]
    model_dir: Path
    checkpoint: Path
    curves: Path | None = None
    model_config: dict = field(default_factory=dict)


Validator = Callable[[torch.nn.Module], dict]


def training_paths(out_dir: str | os.PathLike) -> dict[str, Path]:
    base = Path(out_dir) / TRAINING_DIR
    return {"dir": base, "checkpoint": base / "checkpoint.pt", "history": base / "history.json",
            "curves": base / "curves.png"}


def label_ids(labels: list[str]) -> np.ndarray:
    """Identity strings -> int64 ids (first-seen order)."""
    ids: dict[str, int] = {}
    return np.array([ids.setdefault(lab, len(ids)) for lab in labels], dtype=np.int64)


def _save_checkpoint(path: Path, net, loss_fn, opt, config: TrainConfig, epoch: int,
                     history: list[dict]) -> None:
    state = {
        "format": CHECKPOINT_FORMAT,
        "architecture": config.architecture,
        "embedding_dim": config.embedding_dim,
        "epoch": epoch,
        "config": asdict(config),
        "history": history,
        "model": {k: v.detach().cpu() for k, v in net.state_dict().items()},
        "loss": {k: v.detach().cpu() for k, v in loss_fn.state_dict().items()},
        "optimizer": opt.state_dict(),
    }
    with atomic_path(path) as tmp:
        torch.save(state, tmp)


def load_checkpoint(path: Path, config: TrainConfig) -> dict:
    """The checkpoint at `path`, checked to be of `config`'s architecture and dimension."""
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as err:
        raise DataError(f"cannot read training checkpoint: {err}", path) from err
    if not isinstance(state, dict) or state.get("format") != CHECKPOINT_FORMAT:
        raise DataError("not a faceidx training checkpoint", path)
    got = (state["architecture"], state["embedding_dim"])
    want = (config.architecture, config.embedding_dim)
    if got != want:
        raise ModelMismatchError(
            f"checkpoint is {got[0]} with {got[1]}-D embeddings; this run asks for {want[0]} "
            f"with {want[1]}-D (same --init/--embedding-dim, or a new --out)", path)
    got_loss, want_loss = _loss_name(state["config"]), _loss_name(asdict(config))
    if got_loss != want_loss:
        raise ModelMismatchError(f"checkpoint was trained with the {got_loss} loss; this run asks for "
                                 f"{want_loss} (same --loss, or a new --out)", path)
    return state


def _loss_name(config: dict) -> str:
    loss = config.get("loss", "triplet")  # checkpoints before pair losses were triplet runs
    return f"siamese-{config.get('siamese_distance', 'abs')}" if loss == "siamese" else loss


def plot_curves(history: list[dict], path: Path) -> Path:
    """Loss / active fraction and validation accuracy per epoch, as a PNG."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, (ax1, ax2) = plt.subplots(1, 2, figsize=(10, 4))
    trained = [h for h in history if h["epoch"] > 0]
    ax1.plot([h["epoch"] for h in trained], [h["loss"] for h in trained], "o-", label="loss")
    ax1.plot([h["epoch"] for h in trained], [h["active_fraction"] for h in trained], "s--",
             label="active fraction")
    ax1.set_xlabel("epoch")
    ax1.set_title("training")
    ax1.legend()
    val = [h for h in history if h.get("val_accuracy") is not None]
    if val:
        ax2.plot([h["epoch"] for h in val], [h["val_accuracy"] for h in val], "o-", label="10-fold accuracy")
        ax2.plot([h["epoch"] for h in val], [h["val_tar_at_far_1e-3"] for h in val], "s--",
                 label="TAR@FAR=1e-3")
        ax2.legend()
    ax2.set_xlabel("epoch")
    ax2.set_title("validation (held-out identities)")
    fig.tight_layout()
    with atomic_path(path) as tmp:
        fig.savefig(tmp, format="png", dpi=80)
    plt.close(fig)
    return path


def train(net: torch.nn.Module, train_set: ChipSet, out_dir: str | os.PathLike, config: TrainConfig,
          validate: Validator | None = None, device: str = "cpu", resume: bool = False,
          show_progress: bool = False, data_path: str | os.PathLike | None = None,
          validate_first: bool = True) -> TrainResult:
    """Train `net` (raw embeddings from float (N, 3, S, S) 0..255) with `config.loss`.

    `validate(net) -> dict` (net in eval mode, no grad) runs before training (epoch 0)
    (unless `validate_first` is false) and after every epoch; its keys join the history.
    `data_path` names DATA in errors.
    Raises DataError when the batches cannot be formed, ModelMismatchError when the
    checkpoint to resume is of another architecture, TrainingError on a NaN loss.
    """
    paths = training_paths(out_dir)
    paths["dir"].mkdir(parents=True, exist_ok=True)
    labels = label_ids(train_set.labels)
    if config.margin is None:
        config.margin = default_margin(config.loss)

    def embed_rows(rows: np.ndarray) -> np.ndarray:  # the cluster sampler's view of the model
        from faceidx.train.validate import embed_chips

        was = net.training
        net.eval()
        try:
            return embed_chips(net, train_set, rows=rows)
        finally:
            net.train(was)

    try:
        sampler = make_sampler(config.sampler, labels, config.p, config.k, seed=config.seed,
                               small=config.small, batches=config.batches_per_epoch,
                               clusters=config.clusters, share=config.cluster_share,
                               refresh_every=config.refresh_every,
                               refresh_images=config.refresh_images, embed_rows=embed_rows)
    except BatchSizeError as err:
        raise DataError(str(err), data_path) from err
    net.to(device)
    loss_fn = make_loss(config.loss, config.embedding_dim, config.mining, config.margin,
                        config.siamese_distance).to(device)
    groups = [{"params": list(net.parameters()), "lr": config.lr}]
    if list(loss_fn.parameters()):
        groups.append({"params": list(loss_fn.parameters()), "lr": config.head_lr})
    opt = torch.optim.Adam(groups, lr=config.lr, weight_decay=config.weight_decay)

    history: list[dict] = []
    start = 1
    if paths["checkpoint"].exists():
        if not resume:
            raise DataError("a training checkpoint is already here; pass --resume to continue it "
                            "or choose another --out", paths["checkpoint"])
        state = load_checkpoint(paths["checkpoint"], config)
        net.load_state_dict(state["model"])
        loss_fn.load_state_dict(state.get("loss", {}))
        opt.load_state_dict(state["optimizer"])
        history, start = list(state["history"]), int(state["epoch"]) + 1
        log.info("resuming after epoch %d from %s", start - 1, paths["checkpoint"])
    elif validate is not None and validate_first:
        history.append({"epoch": 0, **_run_validation(net, validate)})

    model_config: dict = {}
    for epoch in range(start, config.epochs + 1):
        stats = _train_epoch(net, opt, loss_fn, train_set, labels, sampler, config, epoch, device,
                             show_progress, paths["checkpoint"])
        if validate is not None:
            stats.update(_run_validation(net, validate))
        history.append(stats)
        log.info("epoch %d: %s", epoch, stats)
        _save_checkpoint(paths["checkpoint"], net, loss_fn, opt, config, epoch, history)
        write_json_atomic(paths["history"], history)
        extra = {"training": {"epochs": epoch, **config.summary()}}
        if config.loss == "siamese":
            extra["siamese_head"] = export_head(out_dir, loss_fn.head)
        if getattr(net, "network_input_size", None):  # resizes the chips itself (Inception: 160)
            extra["network_input_size"] = int(net.network_input_size)
        model_config = export_model(out_dir, net, config.architecture, config.embedding_dim,
                                    config.base, extra=extra, template=config.template)
    if not model_config and (Path(out_dir) / CONFIG_NAME).exists():  # resumed a finished run
        model_config = json.loads((Path(out_dir) / CONFIG_NAME).read_text())
    curves = plot_curves(history, paths["curves"]) if history else None
    return TrainResult(history, Path(out_dir), paths["checkpoint"], curves, model_config)


def _run_validation(net: torch.nn.Module, validate: Validator) -> dict:
    was = net.training
    net.eval()
    try:
        with torch.no_grad():
            return validate(net)
    finally:
        net.train(was)


def _train_epoch(net, opt, loss_fn, train_set: ChipSet, labels: np.ndarray, sampler: PKSampler,
                 config: TrainConfig, epoch: int, device: str, show_progress: bool,
                 checkpoint: Path) -> dict:
    net.train()
    sampler.set_epoch(epoch)
    gen = torch.Generator().manual_seed(config.seed * 100_003 + epoch)
    bar = Counter(show_progress, len(sampler), f"epoch {epoch}/{config.epochs}", unit="batch")
    total_loss, total_active, total_cand, steps, images = 0.0, 0, 0, 0, 0
    refresh0 = getattr(sampler, "refresh_seconds", 0.0)
    t0 = time.perf_counter()
    try:
        for step, batch in enumerate(sampler, start=1):
            x = to_input(train_set.take(batch))
            if config.augment:
                x = augment(x, gen)
            y = torch.from_numpy(labels[batch])
            out = loss_fn(net(x.to(device)), y.to(device))
            value = float(out.loss.detach())
            if not math.isfinite(value):
                kept = (f"the last good checkpoint {checkpoint} (epoch {epoch - 1}) is kept"
                        if checkpoint.exists() else "no epoch had finished, nothing was saved")
                raise TrainingError(f"loss became {value} at epoch {epoch} step {step}; {kept}. "
                                    "Lower --lr or check the data.")
            opt.zero_grad(set_to_none=True)
            out.loss.backward()
            opt.step()
            total_loss += value
            total_active += out.active
            total_cand += out.candidates
            steps += 1
            images += len(batch)
            bar.update(1)
            bar.postfix(loss=f"{total_loss / steps:.4f}", active=f"{total_active / max(total_cand, 1):.3f}")
    finally:
        bar.close()
    refresh = getattr(sampler, "refresh_seconds", 0.0) - refresh0
    seconds = time.perf_counter() - t0 - refresh  # training steps only; re-clustering apart
    stats = {"epoch": epoch, "loss": total_loss / max(steps, 1),
             "active_fraction": total_active / max(total_cand, 1), "steps": steps, "images": images,
             "seconds": round(seconds, 3), "images_per_s": round(images / seconds, 2) if seconds else None}
    if hasattr(sampler, "refresh_seconds"):
        stats["refresh_seconds"] = round(refresh, 3)
    return stats
