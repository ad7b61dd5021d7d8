"""The probe quality gate: below it `query` answers low_quality instead of a name.

    gate = fit_gate(nonmated_top, nonmated_q, mate_rank, mate_score, mated_q, 0.01)
    gate["gate"], gate["threshold"], gate["tpir"], gate["mated_lost"]

A gated probe is neither a false positive nor a hit: it is refused. For each candidate
gate g (0 = no gate, then quantiles of the holdout's quality scores up to `max_refused`
of the probes refused) the score threshold t(g) is the lowest that keeps the FPIR over
ALL non-mated searches (refused ones count as not accepted) at the target; TPIR(g) is
the share of ALL mated searches that pass the gate, rank their mate first and score
>= t(g). The gate chosen maximises TPIR (ties: the lower gate); it is 0 (no gate) unless
gating wins mated searches back. Needs mated searches: with a holdout of strangers only
there is nothing to trade, and the gate stays 0.

`gate_results(results, quality, gate)` applies a gate to query answers: a probe whose
quality is below it gets status low_quality (no name); a probe without a quality (NaN,
or None: an embedding given as it is) is never gated.
"""

from __future__ import annotations

import numpy as np

from faceidx.query import metrics as M


def fit_gate(nonmated_top, nonmated_q, mate_rank, mate_score, mated_q, target_fpir: float,
             max_refused: float = 0.3, steps: int = 31) -> dict:
    """The gate and threshold that keep `target_fpir` losing the fewest mated searches."""
    top = np.asarray(nonmated_top, np.float64)
    qn = np.asarray(nonmated_q, np.float64)
    rank = np.asarray(mate_rank)
    score = np.asarray(mate_score, np.float64)
    qm = np.asarray(mated_q, np.float64)
    finite = np.concatenate([top[np.isfinite(top)], score[np.isfinite(score)], [0.0]])
    floor = float(finite.min()) - 1.0          # "never accepted" (refused, or no face)
    top = np.where(np.isfinite(top), top, floor)
    everyone = np.concatenate([qn, qm])
    cands = np.unique(np.concatenate([[0.0], np.quantile(everyone, np.linspace(0, max_refused, steps))]))
    rows = []
    for g in cands:
        t = M.threshold_at_fpir(np.where(qn >= g, top, floor), target_fpir)
        hit = (qm >= g) & (rank == 1) & (score >= t)
        rows.append({"gate": float(g), "threshold": float(t),
                     "tpir": float(hit.mean()) if len(hit) else float("nan"),
                     "fpir": float(np.mean((qn >= g) & (top >= t))),
                     "refused": float(np.mean(everyone < g))})
    best = max(rows, key=lambda r: (r["tpir"], -r["gate"])) if len(qm) else rows[0]
    return {**best, "no_gate": rows[0], "curve": rows}


def rates_by_bucket(q_nonmated, nonmated_top, q_mated, mate_rank, mate_score, threshold: float,
                    edges=(0.0, 0.25, 0.5, 0.75, 1.0001)) -> list[dict]:
    """FPIR and TPIR at `threshold` per quality bucket [edges[i], edges[i+1])."""
    qn, top = np.asarray(q_nonmated, np.float64), np.asarray(nonmated_top, np.float64)
    qm, rank = np.asarray(q_mated, np.float64), np.asarray(mate_rank)
    score = np.asarray(mate_score, np.float64)
    out = []
    for lo, hi in zip(edges[:-1], edges[1:], strict=True):
        n_in, m_in = (qn >= lo) & (qn < hi), (qm >= lo) & (qm < hi)
        out.append({"quality": [float(lo), float(min(hi, 1.0))],
                    "nonmated": int(n_in.sum()), "mated": int(m_in.sum()),
                    "fpir": float(np.mean(top[n_in] >= threshold)) if n_in.any() else None,
                    "tpir": float(np.mean((rank[m_in] == 1) & (score[m_in] >= threshold)))
                    if m_in.any() else None})
    return out


def gate_results(results, quality, gate: float) -> None:
    """Mark each Identification whose quality is < `gate` as low_quality (in place); every
    result with a quality keeps it in `.quality`. quality None: nothing to gate."""
    from faceidx.query.identify import LOW_QUALITY

    if quality is None:
        return
    q = np.asarray(quality, np.float64).reshape(-1)
    if len(q) != len(results):
        raise ValueError(f"{len(q)} quality scores for {len(results)} probes")
    for res, value in zip(results, q, strict=True):
        if np.isfinite(value):
            res.quality = float(value)
            if gate > 0 and value < gate and res.reason is None:
                res.reason = LOW_QUALITY
