"""Directions for the index at 1M, measured with bare FAISS + numpy (no faceidx build):
coarse list count, code size, re-rank depth, float16 re-rank vectors.

    python benchmarks/index_directions.py --collection syn1m --cache /tmp/perf \
        --config 4096:64 --config 4096:32 --config 8192:64

For each NLIST:M, a flat k-means (10 iterations) on a sample of 64 points per centroid
(<= 256k), `IndexIVFPQFastScan` (M x 4-bit, not residual) over every vector, exact
coarse assignment (as faceidx searches), then for each nprobe one candidate search and
re-ranking of its first R candidates with float32 and with float16 copies of the exact
vectors. Queries: 2000 collection rows, their own row excluded. Prints JSON lines:
rank-1 identity agreement and open-set decision agreement (FPIR-1% threshold from each
query's best other-identity score) with exact search, and ms per query of the
candidate search and of the re-rank.
"""

from __future__ import annotations

import argparse
import json
import os
import time
from pathlib import Path

import numpy as np


def load(collection: Path, cache: Path):
    """Unit vectors and integer identities (unlabelled rows: their own), cached as .npy."""
    xs_path, ids_path = cache / "directions_x.npy", cache / "directions_ident.npy"
    if not xs_path.exists():
        from faceidx.io import open_collection

        xs, ids = [], []
        for b in open_collection(collection).iter_batches(65536, columns=["embedding", "identity"]):
            xs.append(b.embeddings.astype(np.float32))
            ids.append(np.asarray(b.identities, object))
        x = np.concatenate(xs)
        x /= np.linalg.norm(x, axis=1, keepdims=True)
        names = np.concatenate(ids)
        none = np.flatnonzero([v is None for v in names])
        names[none] = [f"#row{i}" for i in none]
        _, ident = np.unique(names.astype(str), return_inverse=True)
        np.save(xs_path, x)
        np.save(ids_path, ident.astype(np.int64))
    return np.load(xs_path), np.load(ids_path)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    ap.add_argument("--collection", type=Path, required=True)
    ap.add_argument("--cache", type=Path, required=True, help="folder for the .npy copies")
    ap.add_argument("--config", action="append", required=True, help="NLIST:M (repeat)")
    ap.add_argument("--nprobes", default="32,64,96,128,192,256")
    ap.add_argument("--candidates", default="8,16,32,64,128,256,512")
    ap.add_argument("--queries", type=int, default=2000)
    args = ap.parse_args()
    os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")
    import faiss

    from faceidx.index.tune import fpir_threshold

    args.cache.mkdir(parents=True, exist_ok=True)
    x, ident = load(args.collection, args.cache)
    n, d = x.shape
    rng = np.random.default_rng(7)
    qrows = np.sort(rng.choice(n, args.queries, replace=False))
    q = x[qrows]
    flat = faiss.IndexFlatIP(d)
    flat.add(x)
    scores, rows = flat.search(q, 64)
    del flat
    keep = rows != qrows[:, None]
    ex_row = np.array([r[k][0] for r, k in zip(rows, keep, strict=True)])
    ex_top = np.array([s[k][0] for s, k in zip(scores, keep, strict=True)])
    impostor = np.array([(list(s[(ident[r] != ident[qr]) & (r != qr)]) + [-np.inf])[0]
                         for s, r, qr in zip(scores, rows, qrows, strict=True)])
    thr = fpir_threshold(impostor)
    ex_dec = np.where(ex_top >= thr, ident[ex_row], -1)
    print(json.dumps({"n": n, "queries": len(q), "threshold_fpir_1pct": round(thr, 4)}), flush=True)
    x16 = x.astype(np.float16)
    counts = [int(c) for c in args.candidates.split(",")]
    for cfg in args.config:
        nlist, m = (int(v) for v in cfg.split(":"))
        t0 = time.perf_counter()
        train = x[np.sort(rng.choice(n, min(n, 64 * nlist, 262_144), replace=False))]
        quant = faiss.IndexFlatL2(d)
        km = faiss.Clustering(d, nlist)
        km.niter = 10
        km.train(train, quant)
        index = faiss.IndexIVFPQFastScan(quant, d, nlist, m, 4, faiss.METRIC_L2)
        index.by_residual = False
        index.train(train)
        t1 = time.perf_counter()
        index.add(x)
        print(json.dumps({"config": cfg, "train_s": round(t1 - t0, 1),
                          "add_s": round(time.perf_counter() - t1, 1),
                          "ram_bytes_per_vector": round(faiss.serialize_index(index).nbytes / n, 2)}),
              flush=True)
        for nprobe in (int(p) for p in args.nprobes.split(",")):
            t2 = time.perf_counter()
            dist, lists = quant.search(q, nprobe)
            params = faiss.SearchParametersIVF()
            params.nprobe = nprobe
            kmax = max(counts) + 1
            dd = np.empty((len(q), kmax), np.float32)
            ii = np.empty((len(q), kmax), np.int64)
            index.search_preassigned_c(len(q), faiss.swig_ptr(q), kmax, faiss.swig_ptr(lists),
                                       faiss.swig_ptr(dist), faiss.swig_ptr(dd), faiss.swig_ptr(ii),
                                       False, params, None)
            t_cand = (time.perf_counter() - t2) / len(q)
            for c in counts:
                for name, vecs in (("float32", x), ("float16", x16)):
                    t3 = time.perf_counter()
                    cand = ii[:, :c + 1]
                    v = vecs[np.maximum(cand, 0).reshape(-1)].reshape(len(q), c + 1, d).astype(np.float32)
                    s = np.einsum("qcd,qd->qc", v, q)
                    s[(cand < 0) | (cand == qrows[:, None])] = -9
                    best = cand[np.arange(len(q)), s.argmax(1)]
                    top = np.einsum("nd,nd->n", x[best], q)  # decisions use the exact score
                    t_rr = (time.perf_counter() - t3) / len(q)
                    print(json.dumps({
                        "config": cfg, "nprobe": nprobe, "candidates": c, "vectors": name,
                        "agreement": float(np.mean(ident[best] == ident[ex_row])),
                        "decision_agreement": float(np.mean(np.where(top >= thr, ident[best], -1)
                                                            == ex_dec)),
                        "ms_candidates": round(t_cand * 1e3, 4), "ms_rerank": round(t_rr * 1e3, 4)}),
                        flush=True)


if __name__ == "__main__":
    main()
