"""Tune search defaults at build time against exact search on a held-back sample.

Queries are rows sampled from the index itself; the ground truth is exact cosine
search over every indexed vector except the query's own row. For each nprobe
(1, 2, 4, ... nlist) one search returns the most candidates any re-rank factor
needs; each k_factor re-ranks a prefix of that list, so one search measures every
k_factor. The first (smallest) nprobe whose smallest k_factor reaches the target
rank-1 identity agreement, refined by trying 3/4 of it (e.g. 768 when 1024 is the first
power of two that reaches it), is stored in manifest.json's ``search``.
"""

from __future__ import annotations

import logging
import time
from pathlib import Path

import numpy as np

from faceidx.index.manifest import IndexManifest

log = logging.getLogger(__name__)

K_FACTORS = (1, 2, 4, 8, 16, 32, 64)


def exact_top1_other(unit: np.ndarray, query_rows: np.ndarray, store,
                     chunk: int = 32_768) -> np.ndarray:
    """Global row of each query's exact nearest neighbour other than itself (streamed)."""
    best = np.full(len(unit), -np.inf, np.float32)
    arg = np.full(len(unit), -1, np.int64)
    for shard in store.shards:
        erased = np.asarray(shard.face_ids) < 0  # an erased row's slot: a zero vector
        for lo, block in shard.vector_blocks(chunk):
            s = unit @ block.T
            s[:, erased[lo:lo + len(block)]] = -np.inf
            rows = shard.row_offset + lo + np.arange(len(block))
            mine = np.flatnonzero((query_rows >= rows[0]) & (query_rows <= rows[-1]))
            s[mine, query_rows[mine] - rows[0]] = -np.inf
            j = np.argmax(s, axis=1)
            v = s[np.arange(len(s)), j]
            better = v > best
            best[better] = v[better]
            arg[better] = rows[j[better]]
    return arg


def live_rows(reader) -> np.ndarray:
    """Global rows holding a face (not erased), ascending."""
    rows = [s.row_offset + np.flatnonzero(np.asarray(s.face_ids) >= 0) for s in reader.store.shards]
    rows = np.concatenate(rows) if rows else np.empty(0, np.int64)
    return np.setdiff1d(rows, reader.erased, assume_unique=True) if len(reader.erased) else rows


def identity_keys(store, rows: np.ndarray) -> np.ndarray:
    """Identity of each row, or a unique '#row' key for unlabelled faces and misses."""
    ids, _ = store.identities_sources(rows)
    return np.asarray([f"#row{r}" if (i is None or r < 0) else i for i, r in zip(ids, rows, strict=True)],
                      dtype=object)


def measure(reader, unit: np.ndarray, query_rows: np.ndarray, truth_keys: np.ndarray,
            nprobe: int, k_factors=K_FACTORS) -> dict[int, tuple[float, float]]:
    """{k_factor: (agreement, seconds per query)} at one nprobe."""
    n_max = max(k_factors) + 1
    t0 = time.perf_counter()
    _, cand = reader.candidates(unit, n_max, nprobe)
    t_cand = (time.perf_counter() - t0) / len(unit)
    out = {}
    for kf in k_factors:
        t1 = time.perf_counter()
        _, rows = reader.rerank(unit, cand[:, :kf + 1], 2)
        other = np.where(rows[:, 0] == query_rows, rows[:, 1], rows[:, 0])
        keys = identity_keys(reader.store, other)
        t = t_cand + (time.perf_counter() - t1) / len(unit)
        out[kf] = (float(np.mean(keys == truth_keys)), t)
    return out


def tune_search(index_dir: Path, manifest: IndexManifest, target: float = 0.995,
                queries: int = 1000, seed: int = 0, force: bool = False) -> dict:
    """Choose and store (in `manifest`) the smallest nprobe / k_factor reaching `target`.

    Skipped when the manifest was already tuned for this target and sample size, unless
    `force` (`faceidx tune`: after adding shards, or for an index tuned by an older search).
    """
    from faceidx.index.search import open_index

    if not force and manifest.tuning.get("target") == target \
            and manifest.tuning.get("queries") == queries:
        return manifest.search
    reader = open_index(index_dir, allow_incomplete=True)
    live = live_rows(reader)
    n = len(live)
    if n < 2:
        manifest.search = {"nprobe": 1, "k_factor": 1}
        manifest.tuning = {"target": target, "queries": 0, "note": "too few vectors to tune"}
        return manifest.search
    rng = np.random.default_rng(seed)
    query_rows = live[np.sort(rng.choice(n, size=min(queries, n), replace=False))]
    unit = reader.store.gather(query_rows, "vectors")
    t0 = time.perf_counter()
    truth = identity_keys(reader.store, exact_top1_other(unit, query_rows, reader.store))
    exact_s = (time.perf_counter() - t0) / len(unit)
    nlist = max([p.ivf.nlist for p in reader.parts if p.ivf is not None], default=1)
    grid = []

    def first_hit(nprobe: int) -> dict | None:
        res = measure(reader, unit, query_rows, truth, nprobe)
        reader.store.release()  # keep the build's RSS to what it holds, not the page cache
        for kf, (agree, sec) in res.items():
            grid.append({"nprobe": nprobe, "k_factor": kf, "agreement": round(agree, 5),
                         "ms_per_query": round(sec * 1e3, 4)})
        hit = [kf for kf, (agree, _) in res.items() if agree >= target]
        return {"nprobe": nprobe, "k_factor": min(hit)} if hit else None

    chosen = None
    nprobe = 1
    while True:
        chosen = first_hit(nprobe)
        if chosen or nprobe >= nlist:
            break
        nprobe = min(nprobe * 2, nlist)
    if chosen and nprobe >= 8:  # one step between the last two powers of two
        chosen = first_hit(nprobe * 3 // 4) or chosen
    if chosen is None:
        best = max(grid, key=lambda g: (g["agreement"], -g["ms_per_query"]))
        chosen = {"nprobe": best["nprobe"], "k_factor": best["k_factor"]}
        log.warning("no setting reached rank-1 agreement %.4f with exact search; best %.4f "
                    "at nprobe %d, k_factor %d", target, best["agreement"], chosen["nprobe"],
                    chosen["k_factor"])
    agreement = next(g["agreement"] for g in grid if g["nprobe"] == chosen["nprobe"]
                     and g["k_factor"] == chosen["k_factor"])
    manifest.search = chosen
    manifest.tuning = {"target": target, "queries": len(unit), "agreement": agreement,
                       "reached": agreement >= target, "exact_ms_per_query": round(exact_s * 1e3, 4),
                       "grid": grid}
    log.info("search defaults: nprobe %d, k_factor %d (rank-1 agreement %.4f on %d queries)",
             chosen["nprobe"], chosen["k_factor"], agreement, len(unit))
    return chosen
