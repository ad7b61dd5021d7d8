"""Embedder throughput on a CUDA GPU: aligned chips in, L2-normalised embeddings out.

    python benchmarks/embed_gpu.py --make-chips chips.npz          # here: LFW chips + dlib's descriptors
    python benchmarks/embed_gpu.py --chips chips.npz --weights dlib_face_recognition_resnet_model_v1.dat

`--make-chips` cuts aligned 150x150 chips from LFW with dlib's own pipeline (HOG,
5-point landmarks, get_face_chip) and stores them with dlib's raw descriptors, so the
GPU machine needs neither dlib nor the images. The timed run then reports, on that
machine's GPU:
  - parity: max |raw - dlib| of the torch port in fp32 on CUDA, and the worst cosine of
    fp16 / bf16 autocast against fp32 (what `--precision auto` checks);
  - `host`: the path `faceidx embed` takes (Encoder: uint8 chips from host memory through
    pinned memory, normalised float32 back to host), per batch size, fp32 and auto (auto
    uses the checked fp16/bf16 only from Encoder's AUTOCAST_MIN_BATCH images a pass);
  - `resident`: the model alone on chips already on the GPU (the GPU's ceiling).
Chips are the real ones tiled to `--faces`. One JSON line per measurement, then a summary
with the goal of issue 16 (>= 5,000 aligned faces/s).
"""

from __future__ import annotations

import argparse
import json
import os
import time
from pathlib import Path

import numpy as np

DATA = Path(__file__).resolve().parents[1].parent / "shared" / "data"


def emit(obj: dict) -> None:
    print(json.dumps(obj), flush=True)


def make_chips(out: Path, n: int, data: Path) -> None:
    """Save n LFW chips (dlib's pipeline) and dlib's raw descriptors of them to `out` (.npz)."""
    import dlib
    import embed_speed  # the one place that cuts reference chips with dlib

    from faceidx.embedder.weights import dlib_resnet_path

    chips, source = embed_speed.reference_chips(n, data)
    reference = dlib.face_recognition_model_v1(str(dlib_resnet_path()))
    desc = np.array([np.array(reference.compute_face_descriptor(c)) for c in chips], np.float32)
    np.savez_compressed(out, chips=chips, dlib=desc, source=np.array(source))
    emit({"bench": "embed_gpu", "made": str(out), "chips": len(chips), "source": source})


def timed_rate(fn, faces: int, rounds: int) -> float:
    """Best faces/s over `rounds` calls of fn (after one warm-up), GPU synchronised."""
    import torch

    fn()
    torch.cuda.synchronize()
    best = float("inf")
    for _ in range(rounds):
        t0 = time.perf_counter()
        fn()
        torch.cuda.synchronize()
        best = min(best, time.perf_counter() - t0)
    return faces / best


def run(args: argparse.Namespace) -> None:
    import torch

    from faceidx.embedder.device import autocast_cosines, chips_to_tensor
    from faceidx.embedder.encode import Encoder
    from faceidx.embedder.registry import load_model

    if not torch.cuda.is_available():
        raise SystemExit("embed_gpu: torch sees no CUDA GPU here")
    saved = np.load(args.chips)
    chips, ref = saved["chips"], saved["dlib"]
    spec = args.weights or "dlib-resnet-v1"
    model = load_model(spec, device="cuda")
    raw = model.embed_chips(chips, raw=True)
    x = chips_to_tensor(chips, torch.device("cuda"))
    cos = {str(dt).replace("torch.", ""): float(autocast_cosines(model.raw, x, dt).min())
           for dt in (torch.float16, torch.bfloat16)}
    emit({"bench": "embed_gpu", "what": "parity", "chips": len(chips),
          "max_abs_diff_vs_dlib_fp32": float(np.abs(raw - ref).max()),
          "worst_cosine_vs_fp32": cos, "gpu": torch.cuda.get_device_name(0),
          "torch": torch.__version__})

    tiled = np.ascontiguousarray(np.resize(chips, (args.faces,) + chips.shape[1:]))
    resident = torch.from_numpy(tiled).cuda()
    rows = []
    for precision in ("fp32", "auto"):
        enc = Encoder(load_model(spec, device="cuda"), "cuda", precision=precision)
        enc(chips)  # the first call decides autocast (auto) on real chips
        chosen = str(enc.autocast_dtype or "fp32").replace("torch.", "")
        for batch in [int(b) for b in args.batch_sizes.split(",")]:
            def host(enc=enc, batch=batch):
                for s in range(0, len(tiled), batch):
                    enc(tiled[s:s + batch])

            def on_gpu(enc=enc, batch=batch):
                with torch.inference_mode():
                    for s in range(0, len(resident), batch):
                        t = resident[s:s + batch].permute(0, 3, 1, 2).float()
                        enc.embed_tensor(t.contiguous(memory_format=torch.channels_last))

            for path, fn in (("host", host), ("resident", on_gpu)):
                rate = timed_rate(fn, len(tiled), args.rounds)
                row = {"bench": "embed_gpu", "what": path, "precision": precision,
                       "dtype": chosen, "batch": batch, "faces": len(tiled),
                       "faces_per_s": round(rate, 1)}
                rows.append(row)
                emit(row)
    best = max(r["faces_per_s"] for r in rows if r["what"] == "host")
    emit({"bench": "embed_gpu", "summary": True, "best_host_faces_per_s": best,
          "best_resident_faces_per_s": max(r["faces_per_s"] for r in rows if r["what"] == "resident"),
          "goal_5000_met": best >= 5000, "cpu_cores": len(os.sched_getaffinity(0))})


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                formatter_class=argparse.RawDescriptionHelpFormatter, epilog=__doc__)
    p.add_argument("--make-chips", type=Path, help="write LFW chips + dlib descriptors here and stop")
    p.add_argument("--count", type=int, default=128, help="chips --make-chips cuts")
    p.add_argument("--data", type=Path, default=DATA)
    p.add_argument("--chips", type=Path, help="a --make-chips file")
    p.add_argument("--weights", default="", help="dlib .dat file (default: the installed model)")
    p.add_argument("--faces", type=int, default=32768, help="faces per timed pass")
    p.add_argument("--batch-sizes", default="128,512,1024,2048")
    p.add_argument("--rounds", type=int, default=3)
    args = p.parse_args()
    if args.make_chips:
        make_chips(args.make_chips, args.count, args.data)
    elif args.chips:
        run(args)
    else:
        p.error("give --make-chips OUT or --chips FILE")


if __name__ == "__main__":
    main()
