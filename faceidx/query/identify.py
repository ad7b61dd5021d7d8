"""1:N identification: top-k distinct identities per probe, and the open-set decision.

A person's score is the best (highest exact cosine) of their gallery faces; a person is
never listed twice. The index returns faces, so the search goes deeper than k faces
(`depth`, doubled as needed) until k distinct identities are found or the gallery is
exhausted. Decisions use EXACT scores (`index.exact_scores`), never compressed-code
estimates: the top identity is the answer when its exact score >= threshold, otherwise
the probe is "unknown".

    hits = identify(open_index("idx"), probes, k=5, threshold=0.62)
    hits[0].decision          # "Ada_Lovelace" or None (unknown)
    hits[0].candidates[0]     # Candidate(identity, score, face_id, source)
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Protocol

import numpy as np

from faceidx.errors import DataError

log = logging.getLogger(__name__)

UNKNOWN = "unknown"
MAX_DEPTH = 8192


class SearchableIndex(Protocol):
    """What identification needs from an index (faceidx.index.open_index gives it)."""

    ntotal: int

    def search(self, queries: np.ndarray, k: int, nprobe: int | None = None,
               k_factor: int | None = None) -> tuple[np.ndarray, np.ndarray]: ...

    def lookup(self, face_ids: np.ndarray) -> tuple[np.ndarray, np.ndarray]: ...

    def exact_scores(self, queries: np.ndarray, face_ids: np.ndarray) -> np.ndarray: ...


@dataclass(frozen=True)
class Candidate:
    """One identity in a probe's list, with its best face."""

    identity: str | None
    score: float
    face_id: int
    source: str | None

    def to_json(self, rank: int) -> dict:
        return {"rank": rank, "identity": self.identity, "score": round(self.score, 6),
                "face_id": self.face_id, "source": self.source}


@dataclass
class Identification:
    """The answer for one probe: candidates best first, and the decision."""

    candidates: list[Candidate] = field(default_factory=list)
    threshold: float | None = None

    @property
    def top_score(self) -> float:
        return self.candidates[0].score if self.candidates else float("-inf")

    @property
    def decision(self) -> str | None:
        """The top identity if its exact score >= threshold; None means unknown.

        Without a threshold (None) the top identity is returned (closed-set answer).
        """
        if not self.candidates:
            return None
        if self.threshold is not None and not self.top_score >= self.threshold:
            return None
        return self.candidates[0].identity

    def to_json(self) -> dict:
        d = self.decision
        return {"decision": UNKNOWN if d is None else d,
                "score": round(self.top_score, 6) if self.candidates else None,
                "threshold": self.threshold,
                "candidates": [c.to_json(r + 1) for r, c in enumerate(self.candidates)]}


def check_threshold(threshold: float | None) -> None:
    """Cosine scores lie in [-1, 1]; a threshold outside accepts all or nothing."""
    if threshold is not None and not -1.0 <= threshold <= 1.0:
        raise ValueError(f"threshold {threshold} is outside the cosine score range [-1, 1]")


def identify(index: SearchableIndex, queries: np.ndarray, k: int = 5,
             threshold: float | None = None, depth: int | None = None,
             nprobe: int | None = None, max_depth: int = MAX_DEPTH) -> list[Identification]:
    """Top-k distinct identities for each row of `queries` (float32 (q, D), unit norm).

    depth: faces fetched per probe at first (default 4*k + 16); probes that got fewer
    than k identities from a full list are searched again with twice the depth, up to
    max_depth. Faces without an identity count as their own candidate (identity None).
    """
    if k < 1:
        raise ValueError(f"k must be >= 1, got {k}")
    check_threshold(threshold)
    q = np.ascontiguousarray(queries, dtype=np.float32)
    if q.ndim != 2:
        raise ValueError(f"queries must be 2-D (q, D), got shape {q.shape}")
    ntotal = int(index.ntotal)
    out: list[Identification | None] = [None] * len(q)
    todo = np.arange(len(q))
    d = min(max(depth or 4 * k + 16, k), max(ntotal, 1))
    while len(todo):
        cand, full = _search_identities(index, q[todo], k, d, nprobe)
        again = []
        for row, c, f in zip(todo, cand, full, strict=True):
            if len(c) < k and f and d < min(ntotal, max_depth):
                again.append(row)
            else:
                out[row] = Identification(c[:k], threshold)
        todo = np.asarray(again, dtype=np.int64)
        d = min(2 * d, ntotal, max_depth)
    return out  # type: ignore[return-value]


def _search_identities(index: SearchableIndex, q: np.ndarray, k: int, depth: int,
                       nprobe: int | None) -> tuple[list[list[Candidate]], list[bool]]:
    _, ids = index.search(q, depth, nprobe=nprobe)
    ids = np.asarray(ids, dtype=np.int64)
    valid = ids >= 0
    safe = np.where(valid, ids, ids[valid][0] if valid.any() else 0)
    exact = np.asarray(index.exact_scores(q, safe), dtype=np.float64)
    if exact.shape != ids.shape:
        raise DataError(f"index returned exact scores of shape {exact.shape} for ids {ids.shape}")
    flat = np.unique(ids[valid])
    names, sources = index.lookup(flat) if len(flat) else (np.empty(0, object), np.empty(0, object))
    where = {int(f): i for i, f in enumerate(flat)}
    results, full = [], []
    for r in range(len(ids)):
        n = int(valid[r].sum())
        full.append(n == ids.shape[1])
        cols = np.flatnonzero(valid[r])
        # best exact score first; face_id breaks ties so the order is deterministic
        order = cols[np.lexsort((ids[r, cols], -exact[r, cols]))]
        seen: set[str] = set()
        cands: list[Candidate] = []
        for c in order:
            fid = int(ids[r, c])
            name = names[where[fid]]
            if name is not None and name != "":
                if name in seen:
                    continue
                seen.add(name)
            else:
                name = None
            cands.append(Candidate(name, float(exact[r, c]), fid, sources[where[fid]]))
            if len(cands) == k:
                break
        results.append(cands)
    return results, full


def mate_ranks(results: Sequence[Identification], identities: Sequence[str]
               ) -> tuple[np.ndarray, np.ndarray]:
    """(rank, score) of each probe's own identity in its candidate list.

    rank is 1-based, 0 when the identity is not in the list (score then -inf).
    """
    ranks = np.zeros(len(results), np.int64)
    scores = np.full(len(results), -np.inf)
    for i, (res, name) in enumerate(zip(results, identities, strict=True)):
        for r, c in enumerate(res.candidates):
            if c.identity == name:
                ranks[i], scores[i] = r + 1, c.score
                break
    return ranks, scores

