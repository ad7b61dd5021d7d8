"""LFW 1:1 verification protocol on any identity-per-folder tree; one JSON line per result.

    python benchmarks/lfw_verify.py --data ../shared/data/lfw-subset --out lfw-verify
    python benchmarks/lfw_verify.py --data lfw --pairs pairs.txt --out lfw-verify --tta flip

Pairs: read from `--pairs` (LFW's pairs.txt format), or generated seeded from the tree
(10 folds x 300 genuine + 300 impostor, no identity in two folds) and written to
OUT/pairs.txt. Image i of a person is the i-th file of its folder in sorted order
(LFW's Name_000i.jpg).

Embeddings: every image named by a pair goes through the embed pipeline (HOG + 5-point
alignment + chip, model on the chip and on its mirror) once; OUT/embeddings.npz caches
both the plain and the flip (chip + mirror, averaged, renormalised) vectors, so runs with
`--tta none` and `--tta flip` share one detection pass, and a rerun reuses the cache.

Protocol: cosine similarity per pair; for each of the 10 folds the best-accuracy
threshold is chosen on the other 9 and accuracy measured on it; mean +- std over folds.
Also TAR at FAR = 1e-3 and the EER over all pairs. Pairs with an image where no face was
found are dropped and counted (`pairs_dropped`).

dlib's published figures for this model on full LFW: 99.13% without jitter and 99.38%
with 100 jitters (dlib.net, dnn_face_recognition_ex.cpp).
"""

from __future__ import annotations

import argparse
import json
import logging
import sys
import time
from pathlib import Path

import numpy as np

from faceidx.embedder.align import mirror
from faceidx.embedder.detect import iter_detections
from faceidx.embedder.encode import Encoder
from faceidx.embedder.pipeline import open_model
from faceidx.embedder.sources import SourceItem
from faceidx.io.atomic import atomic_path
from faceidx.progress import Counter, bars_wanted
from faceidx.query.metrics import best_accuracy_threshold, eer, tar_at_far
from faceidx.query.pairs import generate_pairs, read_pairs, tree_labels, write_pairs

DLIB_PUBLISHED = {"dlib_lfw_no_jitter": 0.9913, "dlib_lfw_100_jitters": 0.9938}
CACHE_NAME = "embeddings.npz"
CHECKPOINT_EVERY = 512


def emit(obj: dict) -> None:
    print(json.dumps(obj), flush=True)


def embed_cached(paths: list[str], out: Path, model_spec: str, device: str, workers: int,
                 batch_size: int) -> dict[str, tuple[np.ndarray | None, np.ndarray | None]]:
    """path -> (plain vector, flip vector), None for images without a face; cached in OUT."""
    cache_path = out / CACHE_NAME
    model = open_model(model_spec, device)
    key = f"{model.name}@{model.version}"
    cache: dict[str, tuple] = {}
    if cache_path.exists():
        with np.load(cache_path, allow_pickle=False) as z:
            if str(z["model"]) == key:
                for p, ok, a, b in zip(z["paths"], z["ok"], z["none"], z["flip"], strict=True):
                    cache[str(p)] = (a, b) if ok else (None, None)
    todo = [p for p in paths if p not in cache]
    emit({"bench": "lfw_verify.embed", "images": len(paths), "cached": len(paths) - len(todo),
          "model": key})
    if not todo:
        return cache
    encoder = Encoder(model, device, "none")
    start, done = time.perf_counter(), 0
    pending: list = []
    dim = encoder.dim

    def flush() -> None:
        if not pending:
            return
        chips = np.stack([c for _, c in pending] + [mirror(c) for _, c in pending])
        vecs = encoder(chips)
        n = len(pending)
        for k, (p, _) in enumerate(pending):
            both = vecs[k] + vecs[n + k]
            cache[p] = (vecs[k], both / np.linalg.norm(both))
        pending.clear()

    items = [SourceItem(p, None) for p in todo]
    with Counter(bars_wanted(), total=len(items), desc="embed", unit="img") as bar:
        for det in iter_detections(items, "hog", "largest", workers):
            if det.chips:
                pending.append((det.item.path, det.chips[0].chip))
            else:
                cache[det.item.path] = (None, None)
            done += 1
            bar.update()
            if len(pending) >= batch_size:
                flush()
            if done % CHECKPOINT_EVERY == 0:
                flush()
                _save(cache_path, cache, key, dim)
    flush()
    _save(cache_path, cache, key, dim)
    seconds = time.perf_counter() - start
    emit({"bench": "lfw_verify.embed", "images_embedded": len(todo), "seconds": round(seconds, 2),
          "images_per_s": round(len(todo) / seconds, 2), "workers": workers,
          "note": "detection + alignment + 2 forward passes (chip and mirror) per image"})
    return cache


def _save(path: Path, cache: dict, key: str, dim: int) -> None:
    paths = sorted(cache)
    ok = np.array([cache[p][0] is not None for p in paths], bool)
    zero = np.zeros(dim, np.float32)
    plain = np.stack([cache[p][0] if cache[p][0] is not None else zero for p in paths])
    flip = np.stack([cache[p][1] if cache[p][1] is not None else zero for p in paths])
    with atomic_path(path) as tmp, open(tmp, "wb") as fh:
        np.savez(fh, paths=np.array(paths), ok=ok, none=plain, flip=flip, model=np.array(key))


def evaluate(pairs, vectors: dict[tuple[str, int], np.ndarray | None], folds: int) -> dict:
    """10-fold accuracy (threshold from the other folds), TAR@FAR=1e-3, EER, over pairs."""
    scores, same, fold_of, dropped = [], [], [], 0
    for p in pairs:
        a, b = vectors.get((p.name1, p.i)), vectors.get((p.name2, p.j))
        if a is None or b is None:
            dropped += 1
            continue
        scores.append(float(np.dot(a, b)))
        same.append(p.genuine)
        fold_of.append(p.fold)
    s, y, f = np.asarray(scores), np.asarray(same, bool), np.asarray(fold_of)
    accs = []
    for k in range(folds):
        test, train = f == k, f != k
        thr, _ = best_accuracy_threshold(s[train], y[train])
        accs.append(float(np.mean((s[test] >= thr) == y[test])))
    tar, far_thr = tar_at_far(s[y], s[~y], 1e-3)
    e, e_thr = eer(s[y], s[~y])
    return {"accuracy_mean": round(float(np.mean(accs)), 5), "accuracy_std": round(float(np.std(accs)), 5),
            "fold_accuracies": [round(a, 4) for a in accs], "tar_at_far_1e-3": round(tar, 5),
            "threshold_at_far_1e-3": round(far_thr, 5), "eer": round(e, 5), "eer_threshold": round(e_thr, 5),
            "pairs": int(len(s)), "pairs_dropped": dropped,
            "genuine_mean": round(float(s[y].mean()), 4), "impostor_mean": round(float(s[~y].mean()), 4)}


def compare_pipelines(args, pairs, pairs_from, folds, path_of, wanted) -> int:
    """One result line per (pipeline, tta) from a face_cache folder, on the same pairs."""
    sys.path.insert(0, str(Path(__file__).parent))
    import face_cache

    if (args.cache / "dlib-own" / "faces.npz").exists():
        emit(face_cache.dlib_own_parity(args.cache))
    for name in args.pipelines:
        # dlib's own pipeline = faceidx's dlib-hog rows HOG found at upsample 1 (parity above)
        d = face_cache.load(args.cache, "dlib-hog" if name == "dlib-own" else name)
        ok = d["ok"] & (d["detector"] == "hog") if name == "dlib-own" else d["ok"]
        row_of = {str(p): i for i, p in enumerate(d["paths"])}
        for tta in (["none"] if name == "dlib-own" else args.tta):
            use, use_folds = pairs, folds
            if args.first_folds < folds:        # e.g. jitter's 10 views are costly on a CPU
                use_folds = args.first_folds
                use = [p for p in pairs if p.fold < use_folds]
            need = {(p.name1, p.i) for p in use} | {(p.name2, p.j) for p in use}
            sub = np.array(sorted({row_of[path_of[w]] for w in need}))
            v = face_cache.vectors(args.cache, "dlib-hog" if name == "dlib-own" else name, tta,
                                   rows=sub if tta == "jitter" else None)
            vectors = {w: (v[row_of[path_of[w]]] if ok[row_of[path_of[w]]] else None)
                       for w in need}
            emit({"bench": "lfw_verify", "pipeline": name, "pairs_from": pairs_from, "tta": tta,
                  "folds": use_folds, "images": len(need),
                  "images_no_face": int(sum(vectors[w] is None for w in need)),
                  **evaluate(use, vectors, use_folds), **DLIB_PUBLISHED})
    return 0


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--data", required=True, type=Path, help="identity-per-folder image tree")
    ap.add_argument("--out", required=True, type=Path, help="folder for pairs.txt, the cache, results")
    ap.add_argument("--pairs", type=Path, help="an LFW pairs.txt; default: generate one")
    ap.add_argument("--folds", type=int, default=10)
    ap.add_argument("--per-fold", type=int, default=300)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--tta", nargs="+", choices=["none", "flip", "jitter"], default=["none", "flip"])
    ap.add_argument("--model", default="dlib-resnet-v1")
    ap.add_argument("--device", default="auto")
    ap.add_argument("--workers", type=int, default=2)
    ap.add_argument("--batch-size", type=int, default=64)
    ap.add_argument("--cache", type=Path, default=None,
                    help="a benchmarks/face_cache.py folder: compare its pipelines side by side "
                         "(dlib's own included) instead of embedding here")
    ap.add_argument("--pipelines", nargs="+", default=["dlib-own", "pil-hog", "dlib-hog", "hog+mtcnn"])
    ap.add_argument("--first-folds", type=int, default=10,
                    help="with --cache: evaluate the first this many folds only (jitter is costly)")
    args = ap.parse_args(argv)
    logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(name)s: %(message)s")

    args.out.mkdir(parents=True, exist_ok=True)
    labels, files = tree_labels(args.data)
    if args.pairs:
        pairs = read_pairs(args.pairs)
        pairs_from = str(args.pairs)
    else:
        pairs = generate_pairs(labels, folds=args.folds, per_fold=args.per_fold, seed=args.seed)
        write_pairs(args.out / "pairs.txt", pairs, folds=args.folds, per_fold=args.per_fold)
        pairs_from = f"generated (seed {args.seed}) -> {args.out / 'pairs.txt'}"
    folds = max(p.fold for p in pairs) + 1
    path_of: dict[tuple[str, int], str] = {}
    count: dict[str, int] = {}
    for name, f in zip(labels, files, strict=True):
        count[name] = count.get(name, 0) + 1
        path_of[(name, count[name])] = str(f)
    wanted = {(p.name1, p.i) for p in pairs} | {(p.name2, p.j) for p in pairs}
    missing = sorted(w for w in wanted if w not in path_of)
    if missing:
        print(f"error: {len(missing)} pair images are not in {args.data}, e.g. {missing[0]}",
              file=sys.stderr)
        return 1
    if args.cache is not None:
        return compare_pipelines(args, pairs, pairs_from, folds, path_of, wanted)
    if "jitter" in args.tta:
        print("error: --tta jitter needs --cache (benchmarks/face_cache.py)", file=sys.stderr)
        return 2
    cache = embed_cached(sorted({path_of[w] for w in wanted}), args.out, args.model, args.device,
                         args.workers, args.batch_size)
    no_face = sum(cache[path_of[w]][0] is None for w in wanted)
    for tta in args.tta:
        slot = 0 if tta == "none" else 1
        vectors = {w: cache[path_of[w]][slot] for w in wanted}
        result = {"bench": "lfw_verify", "data": str(args.data), "pairs_from": pairs_from,
                  "model": args.model, "tta": tta, "folds": folds, "images": len(wanted),
                  "images_no_face": no_face, **evaluate(pairs, vectors, folds), **DLIB_PUBLISHED}
        emit(result)
        with open(args.out / f"result-{tta}.json", "w") as fh:
            json.dump(result, fh, indent=2)
    return 0


if __name__ == "__main__":
    sys.exit(main())
