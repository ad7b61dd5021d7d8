"""Index benchmark: faceidx build + search vs exact FAISS search, on a synthetic collection.

    python benchmarks/synth_write.py ...   # or: faceidx synth --out syn1m ...
    python benchmarks/index_bench.py --collection syn1m --work /tmp/w1m --out bench-out
    faceidx export syn1m --out syn1m.hdf5 --test-size 1000 -k 100   # ann-benchmarks layout
    python benchmarks/index_bench.py --collection syn1m.hdf5 --work /tmp/w1mh --out bench-out

Prints one JSON line per measurement and writes bench-out/index_recall_qps.png.
Queries are rows sampled from the collection; each query's own row is excluded from
both the exact and the approximate results (the same protocol as build-time tuning).
Measured per setting: recall@1 / recall@10 against exact top-10, rank-1 identity
agreement with exact search, rank-1 identity accuracy (the query's own identity at
rank 1, as exact search gets it), batch QPS (best of 3), single-query latency
(median, 1 thread), bytes per vector (FAISS part resident in RAM; whole directory on
disk), plus the build's train time, add throughput (vs bare FAISS add of the same
vectors into the same trained index) and peak RSS (the build runs as a child process).
With --merge the shards are then merged and the same settings measured again.

--collection may also be an ann-benchmarks HDF5 file or a big-ann folder / .fbin:
`faceidx build` indexes its train set, the queries are its test set (none excluded),
exact top-10 is computed as usual and checked against the file's own `neighbors`
(`file_truth_recall@10`), and identity accuracy uses the file's test identities when
it has them (faceidx's export writes them).
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
from pathlib import Path

import numpy as np

REPEATS = 3
IMPOSTOR_DEPTH = 64  # exact neighbours searched to find each query's best other identity


def emit(obj: dict) -> None:
    print(json.dumps(obj), flush=True)


def dir_bytes(path: Path) -> int:
    return sum(p.stat().st_size for p in path.rglob("*") if p.is_file())


def build(collection: Path, index_dir: Path, spec: str) -> dict:
    """Run `faceidx build` as a child process; wall time and the child's peak RSS."""
    if (index_dir / "manifest.json").exists():
        m = json.loads((index_dir / "manifest.json").read_text())
        if m.get("complete"):
            return {"reused": True}
    t0 = time.perf_counter()
    cmd = [str(Path(sys.executable).parent / "faceidx"), "-q", "build", str(collection), "--out",
           str(index_dir), "--index-spec", spec, "--json"]
    child = subprocess.Popen(cmd, stdout=subprocess.DEVNULL)
    peak = {"RssAnon": 0, "RssFile": 0}  # polled: memory-mapped vector pages count apart
    while True:
        pid, status, usage = os.wait4(child.pid, os.WNOHANG)
        if pid:
            break
        try:
            for line in Path(f"/proc/{child.pid}/status").read_text().splitlines():
                key, _, value = line.partition(":")
                if key in peak:
                    peak[key] = max(peak[key], int(value.split()[0]) * 1024)
        except (OSError, ValueError):
            pass
        time.sleep(0.5)
    if os.waitstatus_to_exitcode(status):
        raise subprocess.CalledProcessError(os.waitstatus_to_exitcode(status), cmd)
    wall = time.perf_counter() - t0
    return {"build_seconds": round(wall, 1), "build_peak_rss_bytes": usage.ru_maxrss * 1024,
            "build_peak_rss_anon_bytes": peak["RssAnon"], "build_peak_rss_file_bytes": peak["RssFile"]}


def exact_truth(reader, q: np.ndarray, qrows: np.ndarray, k: int, in_memory: bool):
    """Exact top-k rows (self excluded) by inner product, and batch/single timings.

    in_memory: one IndexFlatIP over all vectors (the usual peer). Otherwise the same
    exact scan streamed over 1M-row blocks read from the row store, with FAISS's
    ResultHeap merging per-block IndexFlatIP results (bounded RAM, e.g. at 10M).
    """
    import faiss

    def search(xq, kk=k + 1):
        if in_memory:
            return flat.search(xq, kk)
        heap = faiss.ResultHeap(len(xq), kk, keep_max=True)
        for shard in reader.store.shards:
            for lo, block in shard.vector_blocks(1 << 20):
                d, i = faiss.knn(xq, block, kk, metric=faiss.METRIC_INNER_PRODUCT)
                heap.add_result(d, i + shard.row_offset + lo)
        heap.finalize()
        return heap.D, heap.I

    flat = None
    if in_memory:
        flat = faiss.IndexFlatIP(q.shape[1])
        for shard in reader.store.shards:
            for _, block in shard.vector_blocks(1 << 20):
                flat.add(block)
    if in_memory:
        search(q[:50])  # warm-up
    batch = float("inf")
    for _ in range(REPEATS if in_memory else 1):  # best of REPEATS, as for every index
        t0 = time.perf_counter()
        _, rows = search(q)
        batch = min(batch, time.perf_counter() - t0)
    deep = search(q, max(k + 1, IMPOSTOR_DEPTH))
    faiss.omp_set_num_threads(1)
    lat = []
    for i in range(min(20 if in_memory else 5, len(q))):
        t1 = time.perf_counter()
        search(q[i:i + 1])
        lat.append(time.perf_counter() - t1)
    faiss.omp_set_num_threads(os.cpu_count() or 1)
    return drop_self(rows, qrows, k), len(q) / batch, float(np.median(lat)), deep


def open_set(deep, qrows: np.ndarray, ident: np.ndarray, qident: np.ndarray):
    """(exact top-1 score, FPIR-1% threshold) from exact top-IMPOSTOR_DEPTH lists: the
    threshold is the 99th percentile of each query's best score among other identities
    (what a stranger scores), as the tuner calibrates it (faceidx/index/tune.py)."""
    from faceidx.index.tune import fpir_threshold

    scores, rows = deep
    top = np.full(len(rows), -np.inf, np.float32)
    impostor = np.full(len(rows), -np.inf, np.float32)
    for i, (s, r) in enumerate(zip(scores, rows, strict=True)):
        keep = (r >= 0) & (r != qrows[i])
        s, r = s[keep], r[keep]
        if len(s):
            top[i] = s[0]
        other = s[ident[r] != qident[i]]
        if len(other):
            impostor[i] = other[0]
    return top, fpir_threshold(impostor)


def drop_self(rows: np.ndarray, qrows: np.ndarray, k: int) -> np.ndarray:
    out = np.full((len(rows), k), -1, np.int64)
    for i, (r, own) in enumerate(zip(rows, qrows, strict=True)):
        kept = r[r != own][:k]
        out[i, :len(kept)] = kept
    return out


def measure(reader, q, qrows, truth, ident, qident, nprobe, k_factor, k=10,
            candidates: int = 0, exact_top=None, threshold=None, early=None) -> dict:
    """Recall and speed of reader at one setting (search rows: k+1 to drop self).

    Re-ranks max((k + 1) * k_factor, candidates) candidates, as the reader's search does
    with its tuned `candidates` floor; `early`: the tuned early-stop rule (the query's
    own row does not settle it)."""
    unit = reader._check(q)
    n_cand = max((k + 1) * k_factor, candidates)

    def run(a, b):
        return reader.search_rows(unit[a:b], k + 1, nprobe, n_cand, early, qrows[a:b])

    run(0, len(q))  # warm-up (page faults)
    batch = float("inf")
    for _ in range(REPEATS):  # best of REPEATS: the machine is shared and noisy
        t0 = time.perf_counter()
        scores, rows = run(0, len(q))
        batch = min(batch, time.perf_counter() - t0)
    lat = []
    for i in range(min(100, len(q))):
        t1 = time.perf_counter()
        run(i, i + 1)
        lat.append(time.perf_counter() - t1)
    got = drop_self(rows, qrows, k)
    top = np.where(rows[:, 0] == qrows, scores[:, 1], scores[:, 0])
    out = {"nprobe": nprobe, "k_factor": k_factor, "candidates": n_cand}
    if early:
        out["early"] = early
    out.update(quality(got, top, truth, ident, qident, exact_top, threshold))
    out.update({"qps": round(len(q) / batch, 1), "single_query_ms": round(np.median(lat) * 1e3, 3),
                "single_query_p99_ms": round(float(np.quantile(lat, 0.99)) * 1e3, 3)})
    return out


def quality(got, top, truth, ident, qident, exact_top, threshold, k=10) -> dict:
    """recall@1/@10, rank-1 identity agreement and accuracy, open-set decision agreement
    (name or unknown at the FPIR-1% threshold, against exact search's decision)."""
    r1 = float(np.mean(got[:, 0] == truth[:, 0]))
    r10 = float(np.mean([len(set(a) & set(b)) / k for a, b in zip(got, truth, strict=True)]))
    agree = float(np.mean(ident[got[:, 0]] == ident[truth[:, 0]]))
    out = {"recall@1": round(r1, 4), "recall@10": round(r10, 4),
           "rank1_identity_agreement": round(agree, 4),
           "rank1_identity_accuracy": accuracy(got, qident, ident)}
    if threshold is not None:
        mine = np.where(top >= threshold, ident[got[:, 0]], "<unknown>")
        exact = np.where(exact_top >= threshold, ident[truth[:, 0]], "<unknown>")
        out["decision_agreement"] = round(float(np.mean(mine == exact)), 4)
    return out


def accuracy(got: np.ndarray, qident: np.ndarray, ident: np.ndarray) -> float:
    """Share of queries whose rank-1 face (own row excluded) has the query's identity."""
    return round(float(np.mean(ident[got[:, 0]] == qident)), 4)


def file_queries(path: Path, count: int):
    """(unit queries, their identities, the file's top-10 train rows) of a benchmark file."""
    from faceidx.io.vector_sources import open_vector_source

    with open_vector_source(path) as src:
        q = np.concatenate([b for _, b in src.iter_vectors("test", 65_536)])[:count]
        names = src.column("test", "identity", 0, len(q))
        truth, _ = src.truth()
    q = q / np.linalg.norm(q, axis=1, keepdims=True)
    names = np.full(len(q), "<none>", object) if names is None else \
        np.asarray([n if n is not None else "<none>" for n in names], object)
    return q.astype(np.float32), names, truth[:len(q), :10]


def bare_add(reader, index_dir: Path) -> float:
    """Vectors/s of bare FAISS add_with_ids of every vector (blocks already in RAM)."""
    import faiss

    index = faiss.read_index(str(index_dir / "trained.index"))
    spent = 0.0
    for shard in reader.store.shards:
        for lo, block in shard.vector_blocks(1 << 20):
            ids = np.arange(len(block), dtype=np.int64) + shard.row_offset + lo
            t0 = time.perf_counter()
            index.add_with_ids(block, ids)
            spent += time.perf_counter() - t0
    return index.ntotal / spent


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    ap.add_argument("--collection", type=Path, required=True)
    ap.add_argument("--work", type=Path, required=True, help="where the index is built")
    ap.add_argument("--out", type=Path, default=Path("bench-out"))
    ap.add_argument("--spec", action="append",
                    help="index spec to build (repeat to compare several in one run; default auto)")
    ap.add_argument("--setting", action="append", default=[],
                    help="also measure NPROBE:K_FACTOR[:CANDIDATES] on every faceidx index "
                         "(e.g. a previous default)")
    ap.add_argument("--queries", type=int, default=1000)
    ap.add_argument("--nprobes", default="8,16,32,64,128,256")
    ap.add_argument("--no-bare-add", action="store_true")
    ap.add_argument("--exact-in-memory", type=int, default=2_000_000,
                    help="largest n searched exactly with one in-RAM IndexFlatIP")
    ap.add_argument("--hnswlib", action="store_true", help="also build an hnswlib peer (M=16)")
    ap.add_argument("--hnswlib-efs", default="32,64,128,256,512", help="efSearch values of that peer")
    ap.add_argument("--faiss-peer", default=None,
                    help="also a bare FAISS index held in RAM, e.g. IVF16384_HNSW32,PQ32x4fsr,RFlat")
    ap.add_argument("--peer-k-factor", type=int, default=10, help="k_factor_rf of an RFlat peer")
    ap.add_argument("--retune", action="store_true",
                    help="tune the search defaults again first (as `faceidx tune`)")
    ap.add_argument("--merge", action="store_true",
                    help="then merge the shards (`faceidx merge`) and measure the merged index too")
    args = ap.parse_args()
    os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")
    from faceidx.index import open_index

    args.work.mkdir(parents=True, exist_ok=True)
    specs = args.spec or ["auto"]
    dirs = [args.work / ("idx" if i == 0 else f"idx{i}") for i in range(len(specs))]
    builds = [build(args.collection, d, spec) for d, spec in zip(dirs, specs, strict=True)]
    if args.retune:
        for d in dirs:
            retune(d)
    reader = open_index(dirs[0])
    n = reader.ntotal
    label = f"n={n}"
    codes = []
    for s in reader.store.shards:
        names = np.asarray([s.names.get(i) for i in range(len(s.names))] + ["<none>"], object)
        codes.append(names[np.asarray(s.codes)])
    ident = np.concatenate(codes)
    from faceidx.io.vector_sources import vector_file_format

    file_truth = None
    if vector_file_format(args.collection):
        q, qident, file_truth = file_queries(args.collection, args.queries)
        qrows = np.full(len(q), -1, np.int64)  # test vectors are not in the index
    else:
        rng = np.random.default_rng(1)
        qrows = np.sort(rng.choice(n, size=min(args.queries, n), replace=False))
        q = reader.store.gather(qrows, "vectors")
        qident = ident[qrows]
    in_memory = n <= args.exact_in_memory
    truth, exact_qps, exact_lat, deep = exact_truth(reader, q, qrows, 10, in_memory)
    exact_top, threshold = open_set(deep, qrows, ident, qident)
    exact_name = "IndexFlatIP (exact)" if in_memory else "IndexFlatIP over streamed 1M blocks (exact)"
    exact_acc = accuracy(truth, qident, ident)
    if file_truth is not None:
        emit({"bench": "file_truth", "source": str(args.collection), "queries": len(q),
              "file_truth_recall@10": round(float(np.mean(
                  [len(set(a) & set(b)) / 10 for a, b in zip(truth, file_truth, strict=True)])), 4)})
    emit({"bench": "index_search", "n": n, "index": exact_name, "recall@1": 1.0,
          "recall@10": 1.0, "rank1_identity_agreement": 1.0, "decision_agreement": 1.0,
          "decision_threshold_fpir_1pct": round(threshold, 4), "rank1_identity_accuracy": exact_acc,
          "qps": round(exact_qps, 1), "single_query_ms": round(exact_lat * 1e3, 3),
          "ram_bytes_per_vector": 4 * q.shape[1]})
    context = {"q": q, "qrows": qrows, "truth": truth, "ident": ident, "qident": qident,
               "exact_top": exact_top, "threshold": threshold, "exact_qps": exact_qps,
               "exact_acc": exact_acc, "n": n}
    series = []
    for index_dir, b in zip(dirs, builds, strict=True):
        series += bench_index(index_dir, b, args, context, reader if index_dir == dirs[0] else None)
    peers = []
    if args.faiss_peer:
        peers.append(faiss_peer(reader, args.faiss_peer, args, context))
    if args.hnswlib:
        rows = hnswlib_peer(reader, args, context)
        peers.append(("hnswlib M=16", rows))
    plot(series + peers, exact_qps, args.out / f"index_recall_qps_{n}.png", label)


def bench_index(index_dir: Path, b: dict, args, ctx: dict, reader=None) -> list[tuple[str, list]]:
    """Build line, add throughput and the search sweep of one faceidx index directory."""
    from faceidx.index import open_index

    reader = reader or open_index(index_dir)
    m = reader.manifest
    n = ctx["n"]
    ram = sum((index_dir / s["dir"] / "index.faiss").stat().st_size for s in m["shards"])
    add_s = m["build"].get("add_seconds")
    emit({"bench": "index_build", "n": n, "factory": m["factory"], **b,
          "train_seconds": m["build"].get("train", {}).get("train_seconds"),
          "add_vectors_per_s": round(n / add_s, 1) if add_s else None,
          "index_ram_bytes_per_vector": round(ram / n, 2),
          "disk_bytes_per_vector": round(dir_bytes(index_dir) / n, 2),
          "memory_model": m["params"].get("memory", {}).get("search_bytes"),
          "tuned": m["search"], "tuned_agreement": m["tuning"].get("agreement"),
          "tuned_decision_agreement": m["tuning"].get("decision_agreement")})
    if not args.no_bare_add:
        rate = bare_add(reader, index_dir)
        stream = n / add_s if add_s else None
        emit({"bench": "add_throughput", "n": n, "factory": m["factory"],
              "bare_faiss_vectors_per_s": round(rate, 1),
              "faceidx_streaming_vectors_per_s": round(stream, 1) if stream else None,
              "ratio": round(stream / rate, 3) if stream else None,
              "faiss_share_of_streaming_add": (round(m["build"]["faiss_add_seconds"] / add_s, 3)
                                               if m["build"].get("faiss_add_seconds") else None)})
    tuned = (int(m["search"]["nprobe"]), int(m["search"]["k_factor"]),
             int(m["search"].get("candidates", 0)))
    settings = {(int(p), tuned[1], tuned[2]) for p in args.nprobes.split(",")} | {tuned}
    for extra in args.setting:
        parts = [int(x) for x in extra.split(":")]
        settings.add((parts[0], parts[1], parts[2] if len(parts) > 2 else 0))

    early = m["search"].get("early")
    runs = sorted((s, None) for s in settings) + ([(tuned, early)] if early else [])

    def sweep(reader, label: str, ram_bytes: int) -> list[dict]:
        out = []
        for (nprobe, k_factor, cand), rule in runs:
            r = measure(reader, ctx["q"], ctx["qrows"], ctx["truth"], ctx["ident"], ctx["qident"],
                        nprobe, k_factor, candidates=cand, exact_top=ctx["exact_top"],
                        threshold=ctx["threshold"], early=rule)
            r.update({"bench": "index_search", "n": n, "index": label,
                      "tuned": (nprobe, k_factor, cand) == tuned and rule == early,
                      "qps_vs_exact": round(r["qps"] / ctx["exact_qps"], 1),
                      "accuracy_gap_pt": round(100 * (ctx["exact_acc"] - r["rank1_identity_accuracy"]), 2),
                      "ram_bytes_per_vector": round(ram_bytes / n, 2)})
            emit(r)
            out.append(r)
        return out

    layout = "merged" if m.get("merged") else f"{len(m['shards'])} shards"
    if m.get("merged"):
        ram = (index_dir / m["merged"]["file"]).stat().st_size
    dtype = m["params"].get("vector_dtype", "float32")
    name = f"faceidx {m['factory']}" + ("" if dtype == "float32" else f", {dtype} vectors")
    rows = sweep(reader, f"{name} ({layout})", ram)
    if not args.merge or m.get("merged"):
        return [(name, rows)]
    from faceidx.index.merge import merge_index

    t0 = time.perf_counter()
    info = merge_index(index_dir)
    merged_bytes = (index_dir / info["file"]).stat().st_size
    emit({"bench": "index_merge", "n": n, "merge_seconds": round(time.perf_counter() - t0, 1),
          "merged_ram_bytes_per_vector": round(merged_bytes / n, 2)})
    merged = sweep(open_index(index_dir), f"{name} (merged)", merged_bytes)
    return [(f"{name}, {layout}", rows), (f"{name} (merged)", merged)]


def faiss_peer(reader, spec: str, args, ctx: dict, k: int = 10) -> tuple[str, list]:
    """A bare FAISS index_factory index (L2 on the unit vectors) held in RAM: train on the
    sample faceidx would use, add every vector, search with nprobe / efSearch 2*nprobe /
    k_factor_rf per setting. Its build time, add rate and size are reported too."""
    import faiss

    from faceidx.index.params import params_for_spec

    n, dim = ctx["n"], ctx["q"].shape[1]
    p = params_for_spec(spec, n, dim)
    rng = np.random.default_rng(0)
    sample = reader.store.gather(np.sort(rng.choice(n, size=p.train_size, replace=False)), "vectors")
    t0 = time.perf_counter()
    index = faiss.index_factory(dim, p.factory, faiss.METRIC_L2)
    index.train(sample)
    train_s = time.perf_counter() - t0
    del sample
    add_s = 0.0
    for shard in reader.store.shards:
        for _, block in shard.vector_blocks(1 << 20):
            t1 = time.perf_counter()
            index.add(block)
            add_s += time.perf_counter() - t1
    file = args.work / "faiss-peer.index"
    faiss.write_index(index, str(file))
    size = file.stat().st_size
    emit({"bench": "index_build", "n": n, "factory": p.factory, "peer": "bare FAISS",
          "train_seconds": round(train_s, 1), "build_seconds": round(train_s + add_s, 1),
          "add_vectors_per_s": round(n / add_s, 1), "index_ram_bytes_per_vector": round(size / n, 2)})
    space = faiss.ParameterSpace()
    rows = []
    for nprobe in sorted({int(x) for x in args.nprobes.split(",")}):
        space.set_index_parameters(index, f"nprobe={nprobe},k_factor_rf={args.peer_k_factor}"
                                   + (f",quantizer_efSearch={max(64, 2 * nprobe)}"
                                      if "_HNSW" in p.factory else ""))
        index.search(ctx["q"][:50], k + 1)  # warm-up
        batch = float("inf")
        for _ in range(REPEATS):
            t2 = time.perf_counter()
            dist, got = index.search(ctx["q"], k + 1)
            batch = min(batch, time.perf_counter() - t2)
        faiss.omp_set_num_threads(1)
        lat = []
        for i in range(min(100, len(ctx["q"]))):
            t3 = time.perf_counter()
            index.search(ctx["q"][i:i + 1], k + 1)
            lat.append(time.perf_counter() - t3)
        faiss.omp_set_num_threads(os.cpu_count() or 1)
        own = got[:, 0] == ctx["qrows"]
        top = 1 - np.where(own, dist[:, 1], dist[:, 0]) / 2  # cosine of unit vectors
        r = {"bench": "index_search", "n": n, "index": f"FAISS {p.factory}", "nprobe": nprobe,
             "k_factor": args.peer_k_factor}
        r.update(quality(drop_self(got, ctx["qrows"], k), top, ctx["truth"], ctx["ident"],
                         ctx["qident"], ctx["exact_top"], ctx["threshold"]))
        r.update({"qps": round(len(ctx["q"]) / batch, 1),
                  "qps_vs_exact": round(len(ctx["q"]) / batch / ctx["exact_qps"], 1),
                  "single_query_ms": round(float(np.median(lat)) * 1e3, 3),
                  "ram_bytes_per_vector": round(size / n, 2)})
        emit(r)
        rows.append(r)
    file.unlink()
    return f"FAISS {p.factory}", rows


def retune(index_dir: Path) -> None:
    """Tune the search defaults again (as `faceidx tune`) and report them."""
    from faceidx.index.manifest import IndexManifest
    from faceidx.index.tune import tune_search

    manifest = IndexManifest.load(index_dir)
    t0 = time.perf_counter()
    tune_search(index_dir, manifest, force=True)
    manifest.save(index_dir)
    emit({"bench": "index_tune", "seconds": round(time.perf_counter() - t0, 1),
          "search": manifest.search, "agreement": manifest.tuning.get("agreement")})


def hnswlib_peer(reader, args, ctx: dict, k: int = 10, m: int = 16,
                 ef_construction: int = 100) -> list[dict]:
    """hnswlib (M=16) over the same unit vectors, inner product, 2 threads; one row per
    efSearch with the same quality columns as every other index (best of REPEATS)."""
    import hnswlib

    q, qrows = ctx["q"], ctx["qrows"]
    n, dim = reader.ntotal, q.shape[1]
    index = hnswlib.Index(space="ip", dim=dim)
    index.init_index(max_elements=n, M=m, ef_construction=ef_construction, random_seed=0)
    t0 = time.perf_counter()
    for shard in reader.store.shards:
        for lo, block in shard.vector_blocks(1 << 18):
            index.add_items(block, np.arange(len(block)) + shard.row_offset + lo, num_threads=2)
    build_s = time.perf_counter() - t0
    file = args.work / "hnswlib-peer.bin"
    index.save_index(str(file))
    size = file.stat().st_size
    file.unlink()
    emit({"bench": "index_build", "n": n, "factory": f"hnswlib M={m} efC={ef_construction}",
          "peer": "hnswlib", "build_seconds": round(build_s, 1),
          "add_vectors_per_s": round(n / build_s, 1), "index_ram_bytes_per_vector": round(size / n, 2)})
    out = []
    for ef in sorted({int(x) for x in args.hnswlib_efs.split(",")}):
        index.set_ef(max(ef, k + 1))
        index.knn_query(q[:50], k + 1, num_threads=2)  # warm-up
        batch = float("inf")
        for _ in range(REPEATS):
            t1 = time.perf_counter()
            rows, dist = index.knn_query(q, k + 1, num_threads=2)
            batch = min(batch, time.perf_counter() - t1)
        lat = []
        for i in range(min(100, len(q))):
            t2 = time.perf_counter()
            index.knn_query(q[i:i + 1], k + 1, num_threads=1)
            lat.append(time.perf_counter() - t2)
        rows = rows.astype(np.int64)
        own = rows[:, 0] == qrows
        top = 1 - np.where(own, dist[:, 1], dist[:, 0])  # hnswlib "ip" distance is 1 - ip
        r = {"bench": "index_search", "n": n, "index": f"hnswlib M={m}", "ef": ef}
        r.update(quality(drop_self(rows, qrows, k), top, ctx["truth"], ctx["ident"],
                         ctx["qident"], ctx["exact_top"], ctx["threshold"]))
        r.update({"qps": round(len(q) / batch, 1),
                  "qps_vs_exact": round(len(q) / batch / ctx["exact_qps"], 1),
                  "single_query_ms": round(float(np.median(lat)) * 1e3, 3),
                  "ram_bytes_per_vector": round(size / n, 2), "build_seconds": round(build_s, 1)})
        emit(r)
        out.append(r)
    return out


def plot(series: list[tuple[str, list]], exact_qps: float, path: Path, label: str) -> None:
    """Rank-1 identity agreement against batch QPS, one line per index (labels: nprobe)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    path.parent.mkdir(parents=True, exist_ok=True)
    fig, ax = plt.subplots(figsize=(7, 4.5))
    for (name, rows), marker in zip(series, "os^vDx<>", strict=False):
        for r in (r for r in rows if r.get("early")):  # the tuned early-stop rule: a star
            ax.plot([r["qps"]], [r["rank1_identity_agreement"]], "*", ms=11,
                    label=f"{name}, early stop {r['early']['nprobe']}/{r['nprobe']}")
        rows = sorted((r for r in rows if not r.get("early")),
                      key=lambda r: (r.get("nprobe", r.get("ef", 0)), r.get("candidates", 0)))
        ax.plot([r["qps"] for r in rows], [r["rank1_identity_agreement"] for r in rows],
                marker + "-", label=name, ms=4)
        for r in rows:
            if "nprobe" in r or "ef" in r:
                ax.annotate(str(r.get("nprobe", r.get("ef"))),
                            (r["qps"], r["rank1_identity_agreement"]), fontsize=6)
    ax.axhline(0.995, color="grey", ls="--", lw=0.8, label="99.5% agreement")
    ax.axvline(exact_qps, color="grey", ls=":", label="IndexFlatIP exact QPS")
    ax.set_xscale("log")
    ax.set_xlabel("queries per second (batch of 1000, 2 threads)")
    ax.set_ylabel("rank-1 identity agreement with exact")
    ax.set_title(f"faceidx index, {label} (labels: nprobe / ef)")
    ax.legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(path, dpi=120)


if __name__ == "__main__":
    main()
