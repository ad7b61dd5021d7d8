"""A trained.index with another code on the same coarse quantizer, for code-size experiments.

    python benchmarks/swap_codes.py --trained idx/trained.index --factory IVF16384_HNSW32,PQ32x4fs \
        --collection syn10m --out pq32.trained.index
    faceidx build syn10m --out idx-pq32 --index-spec IVF16384_HNSW32,PQ32x4fs --trained pq32.trained.index

The coarse centroids of `--trained` go into the quantizer of an empty `--factory` index
(which must have as many lists), and FAISS trains only its codes, on residuals of a
uniform sample of the collection (as `faceidx build` samples it). Comparing two codes on
one partition keeps the k-means out of the comparison (and its minutes out of the run).
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                 formatter_class=argparse.RawDescriptionHelpFormatter, epilog=__doc__)
    ap.add_argument("--trained", type=Path, required=True)
    ap.add_argument("--factory", required=True)
    ap.add_argument("--collection", type=Path, required=True)
    ap.add_argument("--out", type=Path, required=True)
    ap.add_argument("--sample", type=int, default=500_000)
    args = ap.parse_args()
    from faceidx.index.faissio import ivf_of, prepare, read_index, write_index
    from faceidx.index.train import make_index
    from faceidx.io import open_collection

    trained = read_index(args.trained)  # referenced: ivf_of points inside it
    source = ivf_of(trained)
    coll = open_collection(args.collection)
    index = make_index(args.factory, coll.dim)
    target = ivf_of(index)
    if target is None or target.nlist != source.nlist:
        raise SystemExit(f"{args.factory} must be an IVF with {source.nlist} lists")
    target.quantizer.add(source.quantizer.reconstruct_n(0, source.nlist))
    t0 = time.perf_counter()
    x = prepare(coll.sample(args.sample, seed=0, columns=["embedding"]).embeddings)
    index.train(x)  # the quantizer holds nlist vectors: FAISS trains the codes only
    write_index(index, args.out)
    print(json.dumps({"out": str(args.out), "factory": args.factory, "lists": target.nlist,
                      "sample": len(x), "seconds": round(time.perf_counter() - t0, 1)}))


if __name__ == "__main__":
    main()
