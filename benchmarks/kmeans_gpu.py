"""Coarse k-means: faceidx's torch k-means on a CUDA GPU against FAISS's on the CPU.

    faceidx synth --out syn1m --identities 100000 --per-identity 10
    python benchmarks/kmeans_gpu.py --collection syn1m --runs 500000:16384,1000000:32768 --faiss-threads 16

For each SAMPLE:K, the same uniform sample of the collection (normalised as `faceidx
build` prepares it) is clustered into K centroids with the IVF's settings (10 Lloyd
iterations, at most 256 points per centroid) by faceidx.index.kmeans on the GPU and by
faiss.Clustering on the CPU with each thread count given (0 skips FAISS). One JSON line
each: seconds, objective (sum of squared distances), and the GPU's speed-up and
objective ratio against FAISS.
"""

from __future__ import annotations

import argparse
import json
import os
import time

import numpy as np


def emit(obj: dict) -> None:
    print(json.dumps(obj), flush=True)


def faiss_kmeans(x: np.ndarray, k: int, threads: int, seed: int) -> dict:
    import faiss

    from faceidx.index.kmeans import IVF_ITERATIONS, MAX_POINTS_PER_CENTROID

    faiss.omp_set_num_threads(threads)
    cp = faiss.ClusteringParameters()
    cp.niter, cp.seed = IVF_ITERATIONS, seed
    cp.max_points_per_centroid = MAX_POINTS_PER_CENTROID
    clus = faiss.Clustering(x.shape[1], k, cp)
    t0 = time.perf_counter()
    clus.train(x, faiss.IndexFlatL2(x.shape[1]))
    seconds = time.perf_counter() - t0
    last = clus.iteration_stats.at(clus.iteration_stats.size() - 1).obj
    return {"seconds": round(seconds, 3), "objective": round(float(last), 4)}


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                formatter_class=argparse.RawDescriptionHelpFormatter, epilog=__doc__)
    p.add_argument("--collection", required=True)
    p.add_argument("--runs", default="500000:16384", help="SAMPLE:K pairs, comma-separated")
    p.add_argument("--faiss-threads", default="16", help="CPU thread counts for FAISS (0: skip)")
    p.add_argument("--seed", type=int, default=0)
    args = p.parse_args()
    import torch

    from faceidx.index.faissio import prepare
    from faceidx.index.kmeans import kmeans
    from faceidx.io import open_collection

    device = "cuda" if torch.cuda.is_available() else "cpu"
    coll = open_collection(args.collection)
    kmeans(np.random.default_rng(0).normal(size=(4096, 128)).astype(np.float32), 64,
           device=device)  # warm-up: CUDA context, cuBLAS handles
    for pair in args.runs.split(","):
        size, k = (int(v) for v in pair.split(":"))
        t0 = time.perf_counter()
        x = prepare(coll.sample(size, seed=args.seed, columns=["embedding"]).embeddings)
        read_s = time.perf_counter() - t0
        _, stats = kmeans(x, k, device=device, seed=args.seed)
        row = {"bench": "kmeans", "points": len(x), "k": k, "read_seconds": round(read_s, 2),
               "torch_device": device, "torch_seconds": stats["seconds"],
               "torch_objective": stats["objective"],
               "gpu": torch.cuda.get_device_name(0) if device == "cuda" else None}
        emit(row)
        for threads in [int(t) for t in args.faiss_threads.split(",") if int(t) > 0]:
            ref = faiss_kmeans(x, k, threads, args.seed)
            emit({"bench": "kmeans", "points": len(x), "k": k, "faiss_threads": threads,
                  "faiss_seconds": ref["seconds"], "faiss_objective": ref["objective"],
                  "speedup_torch_vs_faiss": round(ref["seconds"] / stats["seconds"], 1),
                  "objective_ratio_torch_vs_faiss": round(stats["objective"] / ref["objective"], 4),
                  "cpu_cores": len(os.sched_getaffinity(0))})


if __name__ == "__main__":
    main()
