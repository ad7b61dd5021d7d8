"""Tune search defaults at build time against exact search on a held-back sample.

Queries are rows sampled from the index itself; the ground truth is exact cosine
search over every indexed vector except the query's own row (a held-out probe whose
mates are enrolled). Two things are compared with exact search at each setting:
- rank-1 identity agreement;
- open-set decision agreement: the answer is the rank-1 identity when its (exact)
  score reaches a threshold, else "unknown". The threshold is calibrated on the same
  sample at FPIR 1%: the 99th percentile of each query's best score among *other*
  identities (what a stranger scores).

A setting is (nprobe, candidates): the lists probed and the candidates re-ranked with
the exact vectors. For each nprobe (1, 2, 4, ... until one reaches the target) one
search returns the most candidates any setting needs, and each candidate count
re-ranks a prefix of that list, so one search measures every count. The nprobe range
between the first hit and the power of two below it is then bisected. The stored
default is the *fastest* measured setting whose rank-1 and decision agreement both
reach the target, and whose single-query latency is within `max_latency_ms` when given.
Search re-ranks max(k * k_factor, candidates) candidates, so what is tuned here is what
a caller gets whatever k it asks for.
"""

from __future__ import annotations

import logging
import time
from pathlib import Path

import numpy as np

from faceidx.index.manifest import IndexManifest

log = logging.getLogger(__name__)

CANDIDATES = (1, 2, 4, 8, 16, 32, 64, 128, 256, 512)
BISECT_STEPS = 3
FPIR = 0.01
UNKNOWN = "<unknown>"
LATENCY_QUERIES = 32
RERANK_BYTES = 32 << 20  # candidate vectors gathered at once while tuning


def exact_top1_other(unit: np.ndarray, query_rows: np.ndarray, store,
                     chunk: int = 32_768) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Streamed exact search for each query: (global row of its nearest neighbour other
    than itself, that cosine, the best cosine among rows of *other* identities)."""
    q = len(unit)
    best = np.full(q, -np.inf, np.float32)
    arg = np.full(q, -1, np.int64)
    impostor = np.full(q, -np.inf, np.float32)
    mine_keys = identity_keys(store, query_rows)
    for shard in store.shards:
        erased = np.asarray(shard.face_ids) < 0  # an erased row's slot: a zero vector
        mates = _mates(shard, mine_keys)
        for lo, block in shard.vector_blocks(chunk):
            s = unit @ block.T
            s[:, erased[lo:lo + len(block)]] = -np.inf
            rows = shard.row_offset + lo + np.arange(len(block))
            mine = np.flatnonzero((query_rows >= rows[0]) & (query_rows <= rows[-1]))
            s[mine, query_rows[mine] - rows[0]] = -np.inf
            j = np.argmax(s, axis=1)
            v = s[np.arange(q), j]
            better = v > best
            best[better] = v[better]
            arg[better] = rows[j[better]]
            qi, local = mates
            inside = (local >= lo) & (local < lo + len(block))
            s[qi[inside], local[inside] - lo] = -np.inf
            impostor = np.maximum(impostor, s.max(axis=1))
    return arg, best, impostor


def _mates(shard, keys: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(query number, local row) of every row of `shard` holding a query's identity."""
    names = {shard.names.get(i): i for i in range(len(shard.names))}
    qcode = np.asarray([names.get(k, -2) for k in keys], np.int64)
    codes = np.asarray(shard.codes, np.int64)
    labelled = np.flatnonzero(qcode >= 0)
    if not len(labelled):
        return np.empty(0, np.int64), np.empty(0, np.int64)
    order = np.argsort(codes, kind="stable")
    sorted_codes = codes[order]
    lo = np.searchsorted(sorted_codes, qcode[labelled], side="left")
    hi = np.searchsorted(sorted_codes, qcode[labelled], side="right")
    qi = np.repeat(labelled, hi - lo)
    local = np.concatenate([order[a:b] for a, b in zip(lo, hi, strict=True)]) if len(qi) \
        else np.empty(0, np.int64)
    return qi, local.astype(np.int64)


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


def decisions(keys: np.ndarray, scores: np.ndarray, threshold: float) -> np.ndarray:
    """Open-set answers: the identity where its score reaches `threshold`, else unknown."""
    return np.where(np.asarray(scores) >= threshold, keys, UNKNOWN)


def fpir_threshold(impostor_scores: np.ndarray, fpir: float = FPIR) -> float:
    """The score a stranger reaches with probability `fpir` (from best non-mate scores)."""
    finite = np.asarray(impostor_scores, np.float64)
    finite = finite[np.isfinite(finite)]
    return float(np.quantile(finite, 1 - fpir)) if len(finite) else 1.0


class Truth:
    """Exact answers for the tuning queries: rank-1 keys and open-set decisions."""

    def __init__(self, keys: np.ndarray, scores: np.ndarray, threshold: float):
        self.keys = keys
        self.threshold = threshold
        self.decisions = decisions(keys, scores, threshold)


def measure(reader, unit: np.ndarray, query_rows: np.ndarray, truth: Truth, nprobe: int,
            counts=CANDIDATES) -> dict[int, tuple[float, float, float]]:
    """{candidates: (rank-1 agreement, decision agreement, seconds per query)} at one nprobe."""
    n_max = max(counts) + 1  # + the query's own row
    t0 = time.perf_counter()
    _, cand = reader.candidates(unit, n_max, nprobe)
    t_cand = (time.perf_counter() - t0) / len(unit)
    out = {}
    for c in counts:
        t1 = time.perf_counter()
        step = max(1, RERANK_BYTES // ((c + 1) * unit.shape[1] * 4))
        got = [reader.rerank(unit[a:a + step], cand[a:a + step, :c + 1], 2)
               for a in range(0, len(unit), step)]
        scores = np.concatenate([g[0] for g in got])
        rows = np.concatenate([g[1] for g in got])
        own = rows[:, 0] == query_rows
        other = np.where(own, rows[:, 1], rows[:, 0])
        score = np.where(own, scores[:, 1], scores[:, 0])
        keys = identity_keys(reader.store, other)
        t = t_cand + (time.perf_counter() - t1) / len(unit)
        out[c] = (float(np.mean(keys == truth.keys)),
                  float(np.mean(decisions(keys, score, truth.threshold) == truth.decisions)), t)
    return out


RERANK_COST_BYTES = 2048


def search_cost(reader):
    """cost(nprobe, candidates): bytes of codes scanned in the probed lists of every part,
    plus RERANK_COST_BYTES per re-ranked candidate. One candidate (a 4*D-byte vector
    gathered from a random row, and its dot product) cost about as much as scanning 1-2 KB
    of 4-bit codes in the 1M measurements (docs/INDEX.md). A model, not a timing: the
    same index always gets the same defaults."""
    per_list = sum(p.ivf.ntotal * p.ivf.code_size / max(p.ivf.nlist, 1)
                   for p in reader.parts if p.ivf is not None)
    flat = sum(p.ntotal * reader.dim * 4 for p in reader.parts if p.ivf is None)

    def cost(nprobe: int, candidates: int) -> float:
        return nprobe * per_list + flat + candidates * RERANK_COST_BYTES

    return cost


def single_query_ms(reader, unit: np.ndarray, nprobe: int, candidates: int) -> float:
    """Median wall time of one query searched alone (what a service's caller waits)."""
    spent = []
    for i in range(min(LATENCY_QUERIES, len(unit))):
        t0 = time.perf_counter()
        reader.search_rows(unit[i:i + 1], 2, nprobe, candidates + 1)
        spent.append(time.perf_counter() - t0)
    return float(np.median(spent) * 1e3)


def tune_search(index_dir: Path, manifest: IndexManifest, target: float = 0.995,
                queries: int = 1000, seed: int = 0, force: bool = False,
                max_latency_ms: float | None = None) -> dict:
    """Choose and store (in `manifest`) the fastest (nprobe, candidates) reaching `target`.

    Skipped when the manifest was already tuned for this target, latency cap and sample
    size, unless `force` (`faceidx tune`: after adding shards, or for another target).
    """
    from faceidx.index.search import open_index

    t = manifest.tuning
    if not force and t.get("target") == target and t.get("queries") == queries \
            and t.get("max_latency_ms") == max_latency_ms and "candidates" in manifest.search:
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
    rows, scores, impostor = exact_top1_other(unit, query_rows, reader.store)
    truth = Truth(identity_keys(reader.store, rows), scores, fpir_threshold(impostor))
    exact_s = (time.perf_counter() - t0) / len(unit)
    nlist = max([p.ivf.nlist for p in reader.parts if p.ivf is not None], default=1)
    grid = Grid(target, search_cost(reader))

    def hit(nprobe: int) -> bool:
        grid.add(nprobe, measure(reader, unit, query_rows, truth, nprobe))
        reader.store.release()  # keep the build's RSS to what it holds, not the page cache
        return grid.reached(nprobe)

    nprobe, below = 1, 0
    while not hit(nprobe) and nprobe < nlist:
        below, nprobe = nprobe, min(nprobe * 2, nlist)
    above = nprobe
    for _ in range(BISECT_STEPS if grid.reached(above) else 0):  # the smallest nprobe that reaches it, within (below, above]
        mid = (below + above) // 2
        if mid <= below or mid >= above:
            break
        if hit(mid):
            above = mid
        else:
            below = mid
    chosen = grid.fastest()
    latency = None
    if max_latency_ms is not None:
        chosen, latency = grid.within_latency(
            chosen, max_latency_ms, lambda g: single_query_ms(reader, unit, g["nprobe"], g["candidates"]))
    early = None
    if max_latency_ms is None and grid.meets(chosen):  # escalated queries take both stages
        early = tune_early(reader, unit, query_rows, truth, grid, chosen, target)
    reader.store.release()
    if not grid.meets(chosen):
        log.warning("no setting%s reached rank-1 and decision agreement %.4f with exact search; "
                    "kept nprobe %d, %d candidates (rank-1 %.4f, decisions %.4f)",
                    f" within {max_latency_ms} ms" if max_latency_ms is not None else "", target,
                    chosen["nprobe"], chosen["candidates"], chosen["agreement"],
                    chosen["decision_agreement"])
    manifest.search = {"nprobe": chosen["nprobe"], "k_factor": 1, "candidates": chosen["candidates"]}
    if early:
        manifest.search["early"] = {k: early[k] for k in ("nprobe", "candidates", "accept")}
    manifest.tuning = {"target": target, "queries": len(unit), "agreement": chosen["agreement"],
                       "decision_agreement": chosen["decision_agreement"],
                       "decision_threshold": round(truth.threshold, 5), "fpir": FPIR,
                       "reached": grid.meets(chosen), "max_latency_ms": max_latency_ms,
                       "latency_ms": None if latency is None else round(latency, 3),
                       "ms_per_query": chosen["ms_per_query"],
                       "exact_ms_per_query": round(exact_s * 1e3, 4), "grid": grid.rows,
                       "early": early}
    log.info("search defaults: nprobe %d, %d candidates (rank-1 agreement %.4f, decisions %.4f "
             "on %d queries)", chosen["nprobe"], chosen["candidates"], chosen["agreement"],
             chosen["decision_agreement"], len(unit))
    return manifest.search


def tune_early(reader, unit: np.ndarray, query_rows: np.ndarray, truth: Truth, grid: Grid,
               chosen: dict, target: float) -> dict | None:
    """The early-stop rule for the chosen setting (faceidx/index/early.py), or None."""
    from faceidx.index.early import choose_early, outcomes, stage_one_candidates, stage_one_nprobes

    smalls = [(p, c) for p in stage_one_nprobes([g["nprobe"] for g in grid.rows], chosen["nprobe"])
              for c in stage_one_candidates(chosen["candidates"])]
    if not smalls:
        return None
    cand = chosen["candidates"]

    def keys_of(rows):
        return identity_keys(reader.store, rows)

    full = outcomes(reader, unit, query_rows, chosen["nprobe"], cand, keys_of)
    found = {(p, c): outcomes(reader, unit, query_rows, p, c, keys_of) for p, c in smalls}
    rule = choose_early(truth, target, full, grid.cost(chosen["nprobe"], cand), found,
                        {(p, c): grid.cost(p, c) for p, c in smalls},
                        lambda keys, scores: decisions(keys, scores, truth.threshold))
    if rule:
        log.info("early stop: %d lists and %d candidates first, the rest when the rank-1 score "
                 "< %.4f (%.1f%% of the sample; cost %.2f of one stage)", rule["nprobe"],
                 rule["candidates"], rule["accept"], 100 * rule["escalated"], rule["cost_ratio"])
    return rule


class Grid:
    """Measured settings, and the choice among them."""

    def __init__(self, target: float, cost=None):
        self.target = target
        self.cost = cost  # cost(nprobe, candidates) -> a deterministic work estimate
        self.rows: list[dict] = []

    def add(self, nprobe: int, res: dict[int, tuple[float, float, float]]) -> None:
        for c, (agree, dec, sec) in res.items():
            self.rows.append({"nprobe": nprobe, "candidates": c, "agreement": round(agree, 5),
                              "decision_agreement": round(dec, 5),
                              "ms_per_query": round(sec * 1e3, 4)}
                             | ({"cost_kb": round(self.cost(nprobe, c) / 1024, 1)} if self.cost else {}))

    def _speed_key(self, g: dict):
        return g["cost_kb"] if self.cost else g["ms_per_query"]

    def meets(self, g: dict) -> bool:
        return g["agreement"] >= self.target and g["decision_agreement"] >= self.target

    def reached(self, nprobe: int) -> bool:
        return any(self.meets(g) for g in self.rows if g["nprobe"] == nprobe)

    def fastest(self) -> dict:
        """The fastest setting meeting the target; else the most accurate (then fastest).

        Fastest by the cost model when there is one (the same choice on every run),
        else by the measured time."""
        ok = [g for g in self.rows if self.meets(g)]
        if ok:
            return min(ok, key=lambda g: (self._speed_key(g), g["nprobe"], g["candidates"]))
        return max(self.rows, key=lambda g: (min(g["agreement"], g["decision_agreement"]),
                                             -self._speed_key(g)))

    def within_latency(self, chosen: dict, cap_ms: float, latency) -> tuple[dict, float]:
        """`chosen` if its single-query latency is within cap_ms; else, going down the
        measured nprobes, the most accurate setting of the first nprobe that fits (and
        the smallest nprobe's when none does). latency(g) measures one setting."""
        lat = latency(chosen)
        if lat <= cap_ms:
            return chosen, lat
        for nprobe in sorted({g["nprobe"] for g in self.rows if g["nprobe"] < chosen["nprobe"]},
                             reverse=True):
            mine = [g for g in self.rows if g["nprobe"] == nprobe]
            best = max(mine, key=lambda g: (min(g["agreement"], g["decision_agreement"]),
                                            -g["candidates"]))
            lat = latency(best)
            if lat <= cap_ms:
                return best, lat
            chosen = best
        return chosen, lat
