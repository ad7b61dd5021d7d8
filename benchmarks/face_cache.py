"""Detect and align every image of a tree once per pipeline; cache chips and face facts.

    python benchmarks/face_cache.py --data ../shared/data/lfw-subset --out /tmp/acc/cache

Pipelines (one cache folder each, reused by lfw_verify.py and openset.py):

    pil-hog     faceidx before issue 13: Pillow's JPEG pixels, HOG upsample 1, no retry
    dlib-hog    JPEGs decoded like dlib, HOG upsample 1 then 2 when nothing is found
                (`faceidx embed --detector hog`)
    hog+mtcnn   dlib-hog, then MTCNN where HOG found nothing (`--detector hog+mtcnn`)
    dlib-own    dlib's own pipeline: dlib.load_rgb_image, HOG upsample 1,
                get_face_chip, compute_face_descriptor (descriptors, not chips)

Per pipeline: OUT/<name>/chips.npy (uint8 (n, 150, 150, 3), memory-mapped), faces.npz
(paths, identity, ok, box, det score, detector, landmarks, faces found, image size) and
for dlib-own vectors.npy. A rerun skips what is cached. One JSON line per pipeline.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import numpy as np

from faceidx.embedder.align import CHIP_SIZE, Aligner
from faceidx.embedder.detect import detect_one
from faceidx.embedder.sources import SourceItem
from faceidx.query.pairs import tree_labels

PIPELINES = ("pil-hog", "dlib-hog", "hog+mtcnn", "dlib-own")


def emit(obj: dict) -> None:
    print(json.dumps(obj), flush=True)


def build(name: str, files: list[str], labels: list[str], out: Path, sample: int = 0) -> None:
    folder = out / name
    if (folder / "faces.npz").exists():
        emit({"bench": "face_cache", "pipeline": name, "cached": True})
        return
    folder.mkdir(parents=True, exist_ok=True)
    n = len(files)
    t0 = time.perf_counter()
    meta = {"ok": np.zeros(n, bool), "box": np.zeros((n, 4), np.int32),
            "score": np.full(n, np.nan, np.float32), "detector": np.full(n, "", object),
            "landmarks": np.zeros((n, 5, 2), np.float32), "faces_found": np.zeros(n, np.int32),
            "hw": np.zeros((n, 2), np.int32)}
    if name == "dlib-own":
        vectors = _dlib_own(files, meta, sample)
        np.save(folder / "vectors.npy", vectors)
    else:
        chips = np.lib.format.open_memmap(folder / "chips.npy.tmp", "w+", np.uint8,
                                          (n, CHIP_SIZE, CHIP_SIZE, 3))
        aligner = Aligner("hog", retry_upsample=name != "pil-hog")
        decoder = "pil" if name == "pil-hog" else "dlib"
        todo = range(n)
        if name == "hog+mtcnn":   # = dlib-hog, plus MTCNN where HOG found nothing
            base = load(out, "dlib-hog")
            chips[:] = base["chips"]
            for k in meta:
                if k != "hw":
                    meta[k][:] = base[k]
            todo = np.flatnonzero(~base["ok"])
            aligner = Aligner("mtcnn")
        for i in todo:
            path = files[i]
            det = detect_one(SourceItem(path, None), aligner, "largest", decoder)
            if det.chips:
                c = det.chips[0]
                chips[i] = c.chip
                meta["ok"][i], meta["box"][i], meta["score"][i] = True, c.box, c.score
                meta["detector"][i], meta["landmarks"][i] = c.detector, c.landmarks
                meta["faces_found"][i] = c.faces_in_image
        chips.flush()
        del chips
        (folder / "chips.npy.tmp").rename(folder / "chips.npy")
    from PIL import Image

    for i, path in enumerate(files):
        with Image.open(path) as im:
            meta["hw"][i] = (im.height, im.width)
    np.savez(folder / "faces.npz", paths=np.array(files), identity=np.array(labels),
             **{k: (v.astype(str) if v.dtype == object else v) for k, v in meta.items()})
    seconds = time.perf_counter() - t0
    emit({"bench": "face_cache", "pipeline": name, "images": n, "no_face": int((~meta["ok"]).sum()),
          "by_detector": {str(k): int(v) for k, v in zip(*np.unique(meta["detector"][meta["ok"]],
                                                                   return_counts=True), strict=True)},
          "seconds": round(seconds, 1), "ms_per_image": round(1000 * seconds / n, 1),
          "note": "2-core machine shared with other jobs (loaded)"})


def _dlib_own(files: list[str], meta: dict, sample: int = 0) -> np.ndarray:
    """dlib's reference pipeline end to end; raw 128-D descriptors (zeros: no face or not
    in the sample). `sample` > 0: only that many images drawn with seed 0 (``meta["run"]``
    marks them): dlib's descriptor costs ~0.1 s of CPU per face."""
    import dlib

    from faceidx.embedder.weights import dlib_landmarks_path, dlib_resnet_path

    detector = dlib.get_frontal_face_detector()
    landmarks = dlib.shape_predictor(str(dlib_landmarks_path()))
    net = dlib.face_recognition_model_v1(str(dlib_resnet_path()))
    out = np.zeros((len(files), 128), np.float32)
    rows = np.arange(len(files))
    if 0 < sample < len(files):
        rows = np.sort(np.random.default_rng(0).choice(len(files), sample, replace=False))
    meta["run"] = np.isin(np.arange(len(files)), rows)
    for i in rows:
        path = files[i]
        img = dlib.load_rgb_image(path)
        rects, scores, _ = detector.run(img, 1, 0.0)
        if not len(rects):
            continue
        j = max(range(len(rects)), key=lambda k: (rects[k].area(), scores[k]))
        r = rects[j]
        shape = landmarks(img, r)
        out[i] = np.array(net.compute_face_descriptor(img, shape))
        meta["ok"][i], meta["score"][i], meta["detector"][i] = True, scores[j], "hog"
        meta["box"][i] = (r.left(), r.top(), r.right(), r.bottom())
        meta["landmarks"][i] = [[p.x, p.y] for p in shape.parts()]
        meta["faces_found"][i] = len(rects)
    return out


def load(out: Path, name: str) -> dict:
    """The cache of one pipeline: faces.npz arrays plus 'chips' (memmap) or 'vectors'."""
    folder = out / name
    with np.load(folder / "faces.npz", allow_pickle=False) as z:
        d = {k: z[k] for k in z.files}
    if (folder / "chips.npy").exists():
        d["chips"] = np.load(folder / "chips.npy", mmap_mode="r")
    if (folder / "vectors.npy").exists():
        d["vectors"] = np.load(folder / "vectors.npy")
    return d


def vectors(out: Path, name: str, tta: str = "none", rows: np.ndarray | None = None,
            batch: int = 64) -> np.ndarray:
    """Unit vectors (n, 128) of a pipeline's chips with `tta` (zeros where no face),
    embedded by faceidx's dlib-resnet-v1 port and cached as OUT/<name>/vec-<tta>.npy.
    dlib-own gives dlib's own descriptors, normalised (tta none only). `rows`: embed only
    these rows (the others stay zero; the cache file then carries the row set's size)."""
    d = load(out, name)
    if "vectors" in d:
        if tta != "none":
            raise ValueError("dlib-own has descriptors for tta none only")
        v = d["vectors"].astype(np.float32)
        n = np.linalg.norm(v, axis=1, keepdims=True)
        return np.divide(v, n, out=np.zeros_like(v), where=n > 0)
    ok = d["ok"] if rows is None else d["ok"] & np.isin(np.arange(len(d["ok"])), rows)
    path = out / name / f"vec-{tta}-{int(ok.sum())}.npy"
    if path.exists():
        return np.load(path)
    from faceidx.embedder.encode import Encoder
    from faceidx.embedder.registry import load_model

    enc = Encoder(load_model("dlib-resnet-v1", device="cpu"), "cpu", tta)
    v = np.zeros((len(ok), 128), np.float32)
    idx = np.flatnonzero(ok)
    if name == "hog+mtcnn":          # the dlib-hog chips plus MTCNN's: embed only the latter
        base = vectors(out, "dlib-hog", tta, rows)
        v[:] = base
        idx = np.flatnonzero(ok & (d["detector"] == "mtcnn"))
    t0 = time.perf_counter()
    for lo in range(0, len(idx), batch):
        sel = idx[lo:lo + batch]
        v[sel] = enc(np.asarray(d["chips"][sel]))
    seconds = time.perf_counter() - t0
    emit({"bench": "face_cache.embed", "pipeline": name, "tta": tta, "faces": len(idx),
          "seconds": round(seconds, 1), "ms_per_face": round(1000 * seconds / max(1, len(idx)), 2),
          "note": "CPU, 2-core machine shared with other jobs (loaded)"})
    np.save(path, v)
    return v


def dlib_own_parity(out: Path) -> dict:
    """dlib's own pipeline (run on a sample) against faceidx's dlib-hog rows found at
    upsample 1: how many no-face verdicts differ and the worst cosine of the vectors."""
    own, ours = load(out, "dlib-own"), load(out, "dlib-hog")
    run = own["run"] if "run" in own else np.ones(len(own["ok"]), bool)
    up1 = ours["ok"] & (ours["detector"] == "hog")
    both = run & own["ok"] & up1
    a = vectors(out, "dlib-own")[both]
    b = vectors(out, "dlib-hog")[both]
    cos = np.sum(a * b, axis=1)
    return {"bench": "face_cache.parity", "images_run_through_dlib": int(run.sum()),
            "faces_compared": int(both.sum()),
            "no_face_disagreements": int((run & (own["ok"] != up1)).sum()),
            "cosine_min": round(float(cos.min()), 7), "cosine_mean": round(float(cos.mean()), 7)}


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--data", required=True, type=Path)
    ap.add_argument("--out", required=True, type=Path)
    ap.add_argument("--pipelines", nargs="+", choices=PIPELINES, default=list(PIPELINES))
    ap.add_argument("--sample", type=int, default=0,
                    help="dlib-own: run dlib on this many images drawn with seed 0 (0: all)")
    args = ap.parse_args(argv)
    labels, files = tree_labels(args.data)
    for name in args.pipelines:
        build(name, [str(f) for f in files], list(labels), args.out, args.sample)
    return 0


if __name__ == "__main__":
    sys.exit(main())
