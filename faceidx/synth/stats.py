"""Statistics that make face embeddings hard to index, and the table comparing them to targets.

`report_stats` is a pure numpy function of a sample of vectors and their identity labels;
run it on raw vectors (what the targets describe) and on the stored unit vectors (what an
index sees).
"""

from __future__ import annotations

import math

import numpy as np

from faceidx.synth.model import FaceTargets


def report_stats(vectors: np.ndarray, labels: np.ndarray, seed: int = 0,
                 max_pairs: int = 20_000) -> dict:
    """Statistics of `vectors` (n, D) with identity `labels` (n,), as a JSON-able dict.

    - mean_norm, avg_norm, norm_ratio: |mean vector|, average |x|, and their ratio.
    - same_cos / diff_cos (mean, std): cosine of same- / different-identity pairs after
      centering on the sample mean; raw_same_cos / raw_diff_cos: the same without
      centering (what a cosine index sees). Up to `max_pairs` seeded random pairs each;
      a same pair is a random row and another row of its identity. NaN when no pair exists.
    - pc1_share, top_half_share, participation_ratio: of the centred covariance's
      eigenvalues (top_half = the top D/2 directions, 64 of 128); participation ratio
      (sum l)^2 / sum l^2 counts the directions that effectively carry variance.
    """
    x = np.asarray(vectors, dtype=np.float64)
    if x.ndim != 2 or len(x) != len(labels):
        raise ValueError(f"vectors {x.shape} and labels ({len(labels)},) do not match")
    n, dim = x.shape
    _, ids = np.unique(np.asarray(labels), return_inverse=True)
    ids = ids.reshape(-1)
    rng = np.random.default_rng(seed)
    mean = x.mean(axis=0)
    centred = x - mean
    same = _same_pairs(ids, rng, max_pairs)
    diff = _diff_pairs(ids, rng, max_pairs)
    eig = np.linalg.eigvalsh(centred.T @ centred / max(n - 1, 1))[::-1].clip(min=0)
    total = eig.sum()

    out = {"rows": n, "identities": int(ids.max()) + 1 if n else 0, "dim": dim}
    norms = np.linalg.norm(x, axis=1)
    out["mean_norm"] = float(np.linalg.norm(mean))
    out["avg_norm"] = float(norms.mean())
    out["norm_ratio"] = out["mean_norm"] / out["avg_norm"]
    for prefix, data in (("", centred), ("raw_", x)):
        for name, pairs in (("same_cos", same), ("diff_cos", diff)):
            cos = _pair_cosines(data, pairs)
            out[f"{prefix}{name}"] = float(cos.mean()) if cos.size else math.nan
            out[f"{prefix}{name}_std"] = float(cos.std()) if cos.size else math.nan
    out["same_pairs"], out["diff_pairs"] = len(same[0]), len(diff[0])
    out["pc1_share"] = float(eig[0] / total) if total > 0 else math.nan
    out["top_half_share"] = float(eig[: dim // 2].sum() / total) if total > 0 else math.nan
    out["participation_ratio"] = float(total**2 / np.sum(eig**2)) if total > 0 else math.nan
    return out


def target_stats(targets: FaceTargets | None = None) -> dict:
    """The targets in report_stats' keys (centred cosines, raw norms)."""
    t = targets or FaceTargets()
    return {
        "mean_norm": t.mean_norm, "avg_norm": t.avg_norm, "norm_ratio": t.mean_norm / t.avg_norm,
        "same_cos": t.same_cos, "same_cos_std": t.same_cos_std,
        "diff_cos": 0.0, "diff_cos_std": t.diff_cos_std,
        "pc1_share": t.pc1_share, "top_half_share": t.top_half_share,
    }


REPORT_KEYS = (
    "mean_norm", "avg_norm", "norm_ratio", "same_cos", "same_cos_std", "diff_cos",
    "diff_cos_std", "raw_same_cos", "raw_same_cos_std", "raw_diff_cos", "raw_diff_cos_std",
    "pc1_share", "top_half_share", "participation_ratio",
)


def report_table(raw: dict, stored: dict, targets: dict) -> str:
    """A text table: statistic, target (dlib 128-D on LFW), raw vectors, stored unit vectors."""
    lines = [f"{'statistic':<22}{'target':>10}{'raw':>10}{'stored':>10}"]
    for key in REPORT_KEYS:
        target = targets.get(key)
        cells = ["-" if v is None or (isinstance(v, float) and math.isnan(v)) else f"{v:.3f}"
                 for v in (target, raw.get(key), stored.get(key))]
        lines.append(f"{key:<22}" + "".join(f"{c:>10}" for c in cells))
    lines.append(f"sample: {raw['rows']} rows, {raw['identities']} identities, D={raw['dim']}; "
                 "cosines centred on the sample mean unless prefixed raw_")
    return "\n".join(lines)


# -- pair sampling ----------------------------------------------------------------------------


def _same_pairs(ids: np.ndarray, rng: np.random.Generator, m: int) -> tuple[np.ndarray, np.ndarray]:
    """Random (i, j), i != j, same identity: i uniform over rows whose identity has 2+ rows."""
    order = np.argsort(ids, kind="stable")
    sizes = np.bincount(ids)
    starts = np.cumsum(sizes) - sizes
    eligible = np.flatnonzero(sizes[ids] >= 2)
    if eligible.size == 0:
        return np.empty(0, np.int64), np.empty(0, np.int64)
    i = eligible[rng.integers(0, eligible.size, size=m)]
    g = ids[i]
    rank = _rank_in_group(order, ids, starts)[i]
    other = (rank + 1 + rng.integers(0, sizes[g] - 1)) % sizes[g]
    j = order[starts[g] + other]
    return i, j


def _rank_in_group(order: np.ndarray, ids: np.ndarray, starts: np.ndarray) -> np.ndarray:
    """Position of each row inside its identity's run of the stable sort."""
    rank = np.empty(len(ids), dtype=np.int64)
    rank[order] = np.arange(len(ids)) - starts[ids[order]]
    return rank


def _diff_pairs(ids: np.ndarray, rng: np.random.Generator, m: int) -> tuple[np.ndarray, np.ndarray]:
    """Random (i, j) with different identities (rows uniform, rejection of same pairs)."""
    n = len(ids)
    if n < 2 or ids.min() == ids.max():
        return np.empty(0, np.int64), np.empty(0, np.int64)
    i_all, j_all, have = [], [], 0
    while have < m:
        i = rng.integers(0, n, size=2 * m)
        j = rng.integers(0, n, size=2 * m)
        keep = ids[i] != ids[j]
        i_all.append(i[keep])
        j_all.append(j[keep])
        have += int(keep.sum())
    return np.concatenate(i_all)[:m], np.concatenate(j_all)[:m]


def _pair_cosines(x: np.ndarray, pairs: tuple[np.ndarray, np.ndarray]) -> np.ndarray:
    i, j = pairs
    if i.size == 0:
        return np.empty(0)
    a, b = x[i], x[j]
    return np.einsum("ij,ij->i", a, b) / (np.linalg.norm(a, axis=1) * np.linalg.norm(b, axis=1))
