"""Compare training ideas on the same data and the same evaluation (issue 17).

Data: the identities with >= 2 images of ../shared/data/lfw-subset (HOG + alignment as
`faceidx embed`), ORL (already-cropped: detector none) and Yale (HOG). Per data set a
seeded share of the identities is held out (--val-lfw, --val-small for ORL and Yale);
every run trains on the union of the other identities and is evaluated on the held-out
ones of each data set separately:

  1:1   10-fold accuracy (LFW protocol pairs when the set allows, else a pool) and
        TAR@FAR=1e-3, by cosine; Siamese runs also by the trained head's score;
  1:N   open set: half the held-out identities enrolled with one image each, their
        other images mated searches, every image of the rest non-mated; TPIR at FPIR=1%
        (exact cosine search).

Groups (--groups):
  sampler   random P x K vs cluster-aware batches (k-means on the current model's
            identity centroids, re-clustered every epoch and every --refresh-every steps)
  loss      triplet (batch-all) vs contrastive vs Siamese head (abs and chi-squared)
  backbone  fine-tuned dlib ResNet (lr 1e-6) vs Inception-ResNet-v1 from scratch
The sampler and loss groups train the small CNN from scratch (--steps), where the batch
composition and the loss decide what is learnt; the backbone group runs --backbone-steps.
Training images/s counts forward + backward + step only (not re-clustering: its seconds
are reported apart). One JSON line per measurement, also appended to OUT/results.jsonl;
the Markdown table at the end is what docs/TRAIN.md shows.

    OMP_WAIT_POLICY=PASSIVE python benchmarks/train_compare.py --groups sampler loss
    OMP_WAIT_POLICY=PASSIVE python benchmarks/train_compare.py --groups backbone
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

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
DATA = ROOT.parent / "shared" / "data"
SETS = [("lfw", "lfw-subset", "hog", None), ("orl", "orl", "none", None),
        ("yale", "yale", "hog", r"subject(\d+)\.")]


def emit(obj: dict, out: Path) -> None:
    line = json.dumps(obj)
    print(line, flush=True)
    with open(out / "results.jsonl", "a") as fh:
        fh.write(line + "\n")


def load_sets(args):
    """{name: (train ChipSet, held-out ChipSet)} with labels prefixed by the data set."""
    from faceidx.train.data import list_training_items, load_chips, split_identities

    sets = {}
    for name, folder, detector, regex in SETS:
        if name not in args.sets:
            continue
        items = list_training_items(DATA / folder, regex)
        counts = Counter(identity for _, identity in items)
        items = [(p, i) for p, i in items if counts[i] >= 2]
        chips = load_chips(items, args.cache, detector, workers=args.workers)
        chips.labels = [f"{name}/{lab}" for lab in chips.labels]
        held = split_identities(chips.labels, args.val_lfw if name == "lfw" else args.val_small, seed=args.seed)
        sets[name] = (chips.subset(~held), chips.subset(held))
    return sets


def union(parts):
    """One in-memory ChipSet of several (the training identities of every data set)."""
    from faceidx.train.data import ChipSet

    chips = np.concatenate([p.take(np.arange(len(p))) for p in parts])
    return ChipSet(chips, [lab for p in parts for lab in p.labels], [s for p in parts for s in p.sources])


class Evaluator:
    """Fixed pairs and open-set splits per held-out set; evaluate(net[, head]) -> {set: metrics}."""

    def __init__(self, held: dict, seed: int):
        from faceidx.train.evaluate import openset_split, verification_pairs

        self.held = held
        self.pairs = {n: verification_pairs(s.labels, seed) for n, s in held.items()}
        self.splits = {n: openset_split(s.labels, seed) for n, s in held.items()}

    def __call__(self, net, head=None) -> dict:
        import torch

        from faceidx.train.evaluate import cosine_scores, openset, verification
        from faceidx.train.validate import embed_chips

        net.eval()
        out = {}
        with torch.no_grad():
            for name, chips in self.held.items():
                emb = embed_chips(net, chips)
                pairs = self.pairs[name]
                v = verification(cosine_scores(emb, pairs), pairs)
                o = openset(emb, chips.labels, self.splits[name], 0.01)
                row = {"accuracy": round(v["accuracy"], 4), "accuracy_std": round(v["accuracy_std"], 4),
                       "tar_at_far_1e-3": round(v["tar_at_far"], 4), "pairs": v["pairs"],
                       "tpir_at_fpir_1e-2": round(o["tpir"], 4), "rank1": round(o["rank1"], 4),
                       "mated": o["mated"], "nonmated": o["nonmated"]}
                if head is not None:
                    e = torch.from_numpy(emb)
                    hv = verification(head.score(e[pairs.a], e[pairs.b]).double().numpy(), pairs)
                    row.update({"head_accuracy": round(hv["accuracy"], 4),
                                "head_tar_at_far_1e-3": round(hv["tar_at_far"], 4)})
                out[name] = row
        return out


def runs_for(groups, args) -> list[dict]:
    scratch = dict(init="scratch", architecture="small-cnn", lr=1e-3, steps=args.steps, loss="triplet",
                   sampler="random")
    table = {
        "sampler": [dict(scratch, name="small-cnn random P x K"),
                    dict(scratch, name="small-cnn cluster P x K", sampler="cluster")],
        "loss": [dict(scratch, name="small-cnn triplet"),
                 dict(scratch, name="small-cnn contrastive", loss="contrastive"),
                 dict(scratch, name="small-cnn siamese abs", loss="siamese", siamese_distance="abs"),
                 dict(scratch, name="small-cnn siamese chi2", loss="siamese", siamese_distance="chi2")],
        "backbone": [dict(name="dlib-resnet-v1 fine-tuned", init="dlib-resnet-v1", architecture="dlib-resnet",
                          lr=1e-6, steps=args.backbone_steps, loss="triplet", sampler="random"),
                     dict(name="inception-resnet-v1 scratch", init="scratch", architecture="inception-resnet-v1",
                          lr=1e-3, steps=args.backbone_steps, loss="triplet", sampler="random")],
    }
    out, seen = [], set()
    for g in groups:
        for run in table[g]:
            key = json.dumps({k: v for k, v in run.items() if k != "name"}, sort_keys=True)
            if key not in seen:  # the triplet/random small CNN serves both groups
                seen.add(key)
                out.append(dict(run, group=g))
    return out


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--out", type=Path, default=ROOT / "bench-out" / "train_compare")
    ap.add_argument("--cache", type=Path, default=None, help="chip cache folder (default OUT/chips)")
    ap.add_argument("--groups", nargs="+", default=["sampler", "loss", "backbone"],
                    choices=["sampler", "loss", "backbone"])
    ap.add_argument("--sets", nargs="+", default=[s[0] for s in SETS], choices=[s[0] for s in SETS])
    ap.add_argument("--only", nargs="+", default=None, help="runs whose name contains one of these")
    ap.add_argument("--skip-before", action="store_true", help="no evaluation of the starting weights")
    ap.add_argument("--steps", type=int, default=300, help="steps per small-CNN run (3 epochs)")
    ap.add_argument("--backbone-steps", type=int, default=16)
    ap.add_argument("--epochs", type=int, default=3)
    ap.add_argument("--refresh-every", type=int, default=50)
    ap.add_argument("--p", type=int, default=8)
    ap.add_argument("--k", type=int, default=4)
    ap.add_argument("--val-lfw", type=float, default=0.2)
    ap.add_argument("--val-small", type=float, default=0.5)
    ap.add_argument("--seed", type=int, default=0, help="the held-out split, pairs and open-set split")
    ap.add_argument("--train-seeds", type=int, nargs="+", default=[0],
                    help="initialisation, batches and augmentation; one run per seed")
    ap.add_argument("--workers", type=int, default=0)
    ap.add_argument("--device", default="cpu")
    args = ap.parse_args(argv)
    args.cache = args.cache or args.out / "chips"
    logging.basicConfig(level=logging.WARNING, stream=sys.stderr)

    import torch

    from faceidx.train.export import load_head
    from faceidx.train.loop import TrainConfig, train
    from faceidx.train.nets import initial_net

    args.out.mkdir(parents=True, exist_ok=True)
    common = {"bench": "train_compare", "device": args.device, "threads": torch.get_num_threads(),
              "seed": args.seed}
    t0 = time.perf_counter()
    sets = load_sets(args)
    train_set = union([tr for tr, _ in sets.values()])
    evaluate = Evaluator({n: held for n, (_, held) in sets.items()}, args.seed)
    emit({**common, "measure": "data", "train_faces": len(train_set),
          "train_identities": len(set(train_set.labels)),
          **{f"{n}_heldout": [len(h), len(set(h.labels))] for n, (_, h) in sets.items()},
          "seconds": round(time.perf_counter() - t0, 1)}, args.out)

    runs = [dict(r, train_seed=t, name=r["name"] + (f" (seed {t})" if t else ""))
            for r in runs_for(args.groups, args) for t in args.train_seeds
            if not args.only or any(o in r["name"] for o in args.only)]
    for start in sorted({(r["init"], r["architecture"]) for r in runs} if not args.skip_before else ()):
        net, _ = initial_net(start[0], 128, start[1], seed=args.seed)
        t0 = time.perf_counter()
        emit({**common, "measure": "before", "init": start[0], "architecture": start[1],
              "eval": evaluate(net), "seconds": round(time.perf_counter() - t0, 1)}, args.out)

    for run in runs:
        run_dir = args.out / ("model-" + run["name"].replace(" ", "-"))
        shutil.rmtree(run_dir, ignore_errors=True)
        net, arch = initial_net(run["init"], 128, run["architecture"], seed=run["train_seed"])
        epochs = args.epochs if run["steps"] >= 3 * args.epochs else 1
        config = TrainConfig(architecture=arch, embedding_dim=128, base=run["init"], loss=run["loss"],
                             mining="batch-all", siamese_distance=run.get("siamese_distance", "abs"),
                             sampler=run["sampler"], refresh_every=args.refresh_every, p=args.p, k=args.k,
                             epochs=epochs, lr=run["lr"], batches_per_epoch=run["steps"] // epochs,
                             seed=run["train_seed"])
        t0 = time.perf_counter()
        result = train(net, train_set, run_dir, config, device=args.device)
        wall = time.perf_counter() - t0
        h = [x for x in result.history if x["epoch"] > 0]
        images, seconds = sum(x["images"] for x in h), sum(x["seconds"] for x in h)
        head = load_head(run_dir) if run["loss"] == "siamese" else None
        t0 = time.perf_counter()
        scores = evaluate(net, head)
        emit({**common, "measure": "trained", **run, "epochs": epochs, "batch": args.p * args.k,
              "loss_per_epoch": [round(x["loss"], 4) for x in h],
              "active_fraction_per_epoch": [round(x["active_fraction"], 4) for x in h],
              "train_images_per_s": round(images / seconds, 2),
              "refresh_seconds": round(sum(x.get("refresh_seconds", 0.0) for x in h), 1),
              "train_wall_seconds": round(wall, 1), "eval": scores,
              **({"head_negative_weights": round(float((head.weight < 0).float().mean()), 3),
                  "head_bias": round(head.bias.item(), 3)} if head is not None else {}),
              "eval_seconds": round(time.perf_counter() - t0, 1)}, args.out)
    print_table(args.out / "results.jsonl")
    return 0


def print_table(results: Path) -> None:
    """The latest measurement of every run in results.jsonl as a Markdown table."""
    rows = {}
    for line in results.read_text().splitlines():
        r = json.loads(line)
        if r.get("measure") == "before":
            rows[f"{r['architecture']} {'untrained' if r['init'] == 'scratch' else 'pretrained'}"] = r
        elif r.get("measure") == "trained":
            rows[r["name"]] = r
    sets = [s for s, *_ in SETS if all(s in r["eval"] for r in rows.values())]
    print("| run | " + " | ".join(f"{s} acc / TAR@1e-3 / TPIR@1%" for s in sets) + " | train img/s |")
    print("| --- |" + " --- |" * (len(sets) + 1))
    for name, r in rows.items():
        cells = []
        for s in sets:
            e = r["eval"][s]
            cell = f"{e['accuracy']:.3f} / {e['tar_at_far_1e-3']:.3f} / {e['tpir_at_fpir_1e-2']:.3f}"
            if "head_accuracy" in e:
                cell += f" (head {e['head_accuracy']:.3f} / {e['head_tar_at_far_1e-3']:.3f})"
            cells.append(cell)
        speed = r.get("train_images_per_s", "")
        print(f"| {name} | " + " | ".join(cells) + f" | {speed} |")


if __name__ == "__main__":
    sys.exit(main())
