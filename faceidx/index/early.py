"""Query-adaptive probing: stop after a few lists when the answer is already settled.

A probe whose enrolled mates sit close to it finds them in the few lists nearest to it;
probing hundreds more lists changes nothing for it. Search (IndexReader.search_rows,
`early`) first probes `nprobe` lists and re-ranks `candidates` (a small setting); a query
whose rank-1 exact score reaches `accept` keeps that answer, the rest are searched again
with the full setting.
Exact scores make the rule cheap and safe: a high rank-1 cosine is exactly the case in
which unprobed lists are least likely to hold something better.

The tuner chooses (small nprobe, accept) on its sample like every other default: the
cheapest rule, by the cost model, whose rank-1 and open-set decision agreement with
exact search both reach the target; then it escalates ACCEPT_MARGIN more of the sample
than that rule did, against sampling noise. The rule is kept only when it saves at least
MIN_SAVING of the one-stage cost.
"""

from __future__ import annotations

import numpy as np

ACCEPT_MARGIN = 0.02  # escalate this much more of the sample than the cheapest passing rule
MIN_SAVING = 0.10
SMALL_SETTINGS = 4  # stage-1 nprobes tried: the largest measured ones <= half the full nprobe
STAGE_ONE_CANDIDATES = (16, 32, 64)  # stage-1 re-rank depths tried beside the full setting's
ESCALATION_STEPS = np.linspace(0, 1, 101)


def outcomes(reader, unit: np.ndarray, query_rows: np.ndarray, nprobe: int,
             candidates: int, keys_of) -> tuple[np.ndarray, np.ndarray]:
    """(rank-1 identity key, its exact score) per query at one setting, own row excluded."""
    scores, rows = reader.search_rows(unit, 2, nprobe, candidates + 1)
    own = rows[:, 0] == query_rows
    other = np.where(own, rows[:, 1], rows[:, 0])
    return keys_of(other), np.where(own, scores[:, 1], scores[:, 0])


def choose_early(truth, target: float, full: tuple[np.ndarray, np.ndarray], full_cost: float,
                 smalls: dict[tuple[int, int], tuple[np.ndarray, np.ndarray]],
                 costs: dict[tuple[int, int], float], decide) -> dict | None:
    """The cheapest early-stop rule reaching `target`, or None when none saves MIN_SAVING.

    full: (keys, scores) of the one-stage setting; smalls: the same per stage-1 (nprobe,
    candidates); costs: the cost model's cost of each; decide(keys, scores): open-set
    decisions. Returns {"nprobe", "candidates", "accept", "escalated", "agreement",
    "decision_agreement", "cost_ratio"}.
    """
    keys_f, top_f = full
    best = None
    for (small, cand), (keys_s, top_s) in sorted(smalls.items()):
        levels = np.quantile(top_s, ESCALATION_STEPS)
        for i, accept in enumerate(levels):
            rule = _combine(truth, decide, keys_s, top_s, keys_f, top_f, accept)
            if rule["agreement"] < target or rule["decision_agreement"] < target:
                continue
            share = min(1.0, ESCALATION_STEPS[i] + ACCEPT_MARGIN)
            rule = _combine(truth, decide, keys_s, top_s, keys_f, top_f,
                            float(np.quantile(top_s, share)))
            cost = costs[small, cand] + rule["escalated"] * full_cost
            rule.update(nprobe=small, candidates=cand, cost_ratio=round(cost / full_cost, 4))
            if best is None or rule["cost_ratio"] < best["cost_ratio"]:
                best = rule
            break  # a higher accept escalates more: dearer for this stage-1 nprobe
    if best is None or best["cost_ratio"] > 1 - MIN_SAVING:
        return None
    return best


def _combine(truth, decide, keys_s, top_s, keys_f, top_f, accept: float) -> dict:
    keep = top_s >= accept
    keys = np.where(keep, keys_s, keys_f)
    top = np.where(keep, top_s, top_f)
    return {"accept": round(float(accept), 6), "escalated": round(float(1 - keep.mean()), 4),
            "agreement": round(float(np.mean(keys == truth.keys)), 5),
            "decision_agreement": round(float(np.mean(decide(keys, top) == truth.decisions)), 5)}


def stage_one_nprobes(measured: list[int], full: int) -> list[int]:
    """The stage-1 nprobes worth trying: the largest measured ones at most half of `full`."""
    return sorted({p for p in measured if p <= full // 2})[-SMALL_SETTINGS:]


def stage_one_candidates(full: int) -> list[int]:
    """The stage-1 re-rank depths worth trying: STAGE_ONE_CANDIDATES below `full`, and it."""
    return sorted({c for c in STAGE_ONE_CANDIDATES if c < full} | {full})
