"""Fine-tune the pretrained dlib ResNet with the triplet loss on LFW-subset; compare miners.

Data: the identities of ../shared/data/lfw-subset with >= 2 images; a seeded 20% of them is
held out for validation (LFW-style pairs generated from them, fixed for the run). The
chips are detected and aligned once (HOG, as `faceidx embed`) and cached in --cache.

Per mining strategy (batch-hard, semi-hard, batch-all) the same pretrained weights are
fine-tuned for --epochs x --batches of P x K images; before (shared) and after, the
held-out 10-fold verification accuracy and TAR@FAR=1e-3 are measured. Training
throughput (images/s, forward + backward + step, without validation) is reported per
strategy. One JSON line per measurement, flushed as it comes, also appended to
<out>/results.jsonl, so a run cut short still leaves what finished.

    python benchmarks/train_triplet.py --out bench-out/train_triplet --epochs 1 --batches 30 --lr 1e-6
"""

from __future__ import annotations

import argparse
import json
import logging
import shutil
import sys
import time
from collections import Counter
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
LFW = ROOT.parent / "shared" / "data" / "lfw-subset"


def emit(obj: dict, out: Path) -> None:
    line = json.dumps(obj)
    print(line, flush=True)
    with open(out / "results.jsonl", "a") as fh:
        fh.write(line + "\n")


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--data", type=Path, default=LFW)
    ap.add_argument("--out", type=Path, default=ROOT / "bench-out" / "train_triplet")
    ap.add_argument("--cache", type=Path, default=None, help="chip cache folder (default OUT/chips)")
    ap.add_argument("--mining", nargs="+", default=["batch-hard", "semi-hard", "batch-all"])
    ap.add_argument("--epochs", type=int, default=2)
    ap.add_argument("--batches", type=int, default=40, help="batches per epoch")
    ap.add_argument("--p", type=int, default=8)
    ap.add_argument("--k", type=int, default=4)
    ap.add_argument("--lr", type=float, default=1e-6)
    ap.add_argument("--margin", type=float, default=0.2)
    ap.add_argument("--val", type=float, default=0.2)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--workers", type=int, default=0, help="detection processes for the chip cache")
    ap.add_argument("--device", default="cpu")
    args = ap.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s",
                        stream=sys.stderr)

    import torch

    from faceidx.train.data import list_training_items, load_chips, split_identities
    from faceidx.train.loop import TrainConfig, train
    from faceidx.train.nets import initial_net
    from faceidx.train.validate import make_validator

    args.out.mkdir(parents=True, exist_ok=True)
    common = {"bench": "train_triplet", "device": args.device, "threads": torch.get_num_threads()}

    t0 = time.perf_counter()
    items = list_training_items(args.data)
    counts = Counter(identity for _, identity in items)
    items = [(p, i) for p, i in items if counts[i] >= 2]
    chips = load_chips(items, args.cache or args.out / "chips", "hog", workers=args.workers)
    emit({**common, "measure": "chips", "images": len(items), "faces": len(chips),
          "identities": len(set(chips.labels)), "failures": len(chips.failures),
          "seconds": round(time.perf_counter() - t0, 1)}, args.out)

    held = split_identities(chips.labels, args.val, seed=args.seed)
    train_set, val_set = chips.subset(~held), chips.subset(held)
    validate = make_validator(val_set, seed=args.seed)
    split = {"train_faces": len(train_set), "train_identities": len(set(train_set.labels)),
             "val_faces": len(val_set), "val_identities": len(set(val_set.labels))}

    net, arch = initial_net("dlib-resnet-v1", 128, seed=args.seed)
    t0 = time.perf_counter()
    with torch.no_grad():
        before = validate(net.eval().to(args.device))
    emit({**common, **split, "measure": "pretrained", **before,
          "seconds": round(time.perf_counter() - t0, 1)}, args.out)

    for mining in args.mining:
        run_dir = args.out / f"model-{mining}"
        shutil.rmtree(run_dir, ignore_errors=True)
        net, arch = initial_net("dlib-resnet-v1", 128, seed=args.seed)
        config = TrainConfig(architecture=arch, embedding_dim=128, base="dlib-resnet-v1",
                             margin=args.margin, mining=mining, p=args.p, k=args.k,
                             epochs=args.epochs, lr=args.lr, augment=True,
                             batches_per_epoch=args.batches, seed=args.seed)
        t0 = time.perf_counter()
        result = train(net, train_set, run_dir, config, validate=validate, device=args.device,
                       validate_first=False)
        epochs = [h for h in result.history if h["epoch"] > 0]
        images = sum(h["images"] for h in epochs)
        seconds = sum(h["seconds"] for h in epochs)
        last = epochs[-1]
        emit({**common, **split, "measure": "fine-tuned", "mining": mining, "epochs": args.epochs,
              "steps": sum(h["steps"] for h in epochs), "batch": args.p * args.k, "lr": args.lr,
              "margin": args.margin,
              "val_accuracy_before": before["val_accuracy"],
              "val_tar_at_far_1e-3_before": before["val_tar_at_far_1e-3"],
              "val_accuracy": last["val_accuracy"], "val_accuracy_std": last["val_accuracy_std"],
              "val_tar_at_far_1e-3": last["val_tar_at_far_1e-3"], "val_pairs": last["val_pairs"],
              "loss_per_epoch": [round(h["loss"], 4) for h in epochs],
              "active_fraction_per_epoch": [round(h["active_fraction"], 4) for h in epochs],
              "val_accuracy_per_epoch": [round(h["val_accuracy"], 4) for h in epochs],
              "train_images_per_s": round(images / seconds, 2),
              "wall_seconds": round(time.perf_counter() - t0, 1)}, args.out)
    return 0


if __name__ == "__main__":
    sys.exit(main())
