"""1:N identification: top-k distinct identities per probe, and the open-set decision.

A person's score is the best (highest exact cosine) of their gallery faces; a person is
never listed twice. The index returns faces, so the search goes deeper than k faces
(`depth`, doubled as needed) until k distinct identities are found or the gallery is
exhausted. Decisions use EXACT scores (`index.exact_scores`), never compressed-code
estimates: the top identity is the answer when its exact score >= threshold, otherwise
the probe is "unknown".

    hits = identify(open_index("idx"), probes, k=5, threshold=0.62)
    hits[0].decision          # "Ada_Lovelace" or None (see hits[0].status)
    hits[0].status            # "known", "unknown", "unlabelled" (a nameless face) or "no_face"
    hits[0].candidates[0]     # Candidate(identity, score, face_id, source)
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Protocol

import numpy as np

from faceidx.errors import DataError
from faceidx.query.template import TEMPLATE, check_score, rescore_templates

log = logging.getLogger(__name__)

UNKNOWN = "unknown"
MAX_DEPTH = 8192
BLOCK_BYTES = 256 << 20  # candidate vectors re-ranked per search call


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


#: status of an Identification: who the probe is, as far as the gallery and threshold say
KNOWN = "known"              # the top identity scored >= threshold: decision is its name
UNLABELLED = "unlabelled"    # the top face scored >= threshold but was enrolled without a name
NO_FACE = "no_face"          # nothing to search: the image had no usable face (see reason)
LOW_QUALITY = "low_quality"  # the probe face scored below calibration's quality gate: no name


@dataclass
class Identification:
    """The answer for one probe: candidates best first, and the decision.

    `status` says what the answer is: KNOWN (decision = the name), UNKNOWN (nobody scored
    the threshold), UNLABELLED (a nameless gallery face did: not the same as a stranger)
    or NO_FACE (a skipped probe; `reason` says why). `fpir` is the calibrated false
    positive identification rate at `threshold` for this gallery (None when unknown);
    `box` is the probe face's (left, top, right, bottom) in its image when it came from one.
    """

    candidates: list[Candidate] = field(default_factory=list)
    threshold: float | None = None
    fpir: float | None = None
    box: tuple[int, int, int, int] | None = None
    reason: str | None = None
    quality: float | None = None

    @classmethod
    def skipped(cls, reason: str, threshold: float | None = None) -> Identification:
        """The record of a probe that could not be searched (reason: no_face, corrupt...)."""
        return cls([], threshold, reason=reason)

    @property
    def top_score(self) -> float:
        return self.candidates[0].score if self.candidates else float("-inf")

    @property
    def margin(self) -> float | None:
        """Top score minus the runner-up's (None with fewer than two candidates)."""
        if len(self.candidates) < 2:
            return None
        return self.candidates[0].score - self.candidates[1].score

    @property
    def accepted(self) -> bool:
        """The top candidate scored the threshold (always, without a threshold)."""
        if not self.candidates:
            return False
        return self.threshold is None or self.top_score >= self.threshold

    @property
    def status(self) -> str:
        if self.reason is not None:
            return NO_FACE if self.reason == NO_FACE else self.reason
        if not self.accepted:
            return UNKNOWN
        return KNOWN if self.candidates[0].identity is not None else UNLABELLED

    @property
    def decision(self) -> str | None:
        """The top identity if its exact score >= threshold; None otherwise (see status).

        Without a threshold (None) the top identity is returned (closed-set answer); a
        refused probe (reason set, e.g. LOW_QUALITY) gets None.
        """
        if self.reason is not None:
            return None
        return self.candidates[0].identity if self.accepted else None

    def to_json(self) -> dict:
        """decision: the name, "unknown" (nobody scored the threshold) or null (unlabelled
        face or skipped probe); status tells them apart."""
        status = self.status
        decision = self.decision if status == KNOWN else (UNKNOWN if status == UNKNOWN else None)
        margin = self.margin
        out = {"decision": decision, "status": status,
               "score": round(self.top_score, 6) if self.candidates else None,
               "threshold": self.threshold, "fpir": self.fpir,
               "margin": None if margin is None else round(margin, 6),
               "candidates": [c.to_json(r + 1) for r, c in enumerate(self.candidates)]}
        if self.box is not None:
            out["box"] = [int(v) for v in self.box]
        if self.reason is not None:
            out["reason"] = self.reason
        if self.quality is not None:
            out["quality"] = round(float(self.quality), 4)
        return out


def check_threshold(threshold: float | None) -> None:
    """Cosine scores lie in [-1, 1]; a threshold outside accepts all or nothing."""
    if threshold is not None and not -1.0 <= threshold <= 1.0:
        raise ValueError(f"threshold {threshold} is outside the cosine score range [-1, 1]")


def identify(index: SearchableIndex, queries: np.ndarray, k: int = 5,
             threshold: float | None = None, depth: int | None = None,
             nprobe: int | None = None, max_depth: int = MAX_DEPTH, score: str = "best",
             templates_of=None) -> list[Identification]:
    """Top-k distinct identities for each row of `queries` (float32 (q, D), unit norm).

    See :func:`search_identities` for depth and scores; `threshold` (or None for a
    closed-set answer) sets each Identification's decision. score="template" re-scores
    the listed people against their templates (faceidx.query.template; needs
    `templates_of`, e.g. faceidx.gallery.templates.templates_for(index)).
    """
    check_threshold(threshold)
    if check_score(score) == TEMPLATE and templates_of is None:
        raise ValueError("score='template' needs templates_of (the listed people's templates)")
    hits = search_identities(index, queries, k, depth, nprobe, max_depth)
    if score == TEMPLATE:
        hits = rescore_templates(queries, hits, templates_of)
    out = []
    for r in range(len(hits.scores)):
        n = int((hits.face_ids[r] >= 0).sum())
        out.append(Identification(
            [Candidate(hits.identities[r, c], float(hits.scores[r, c]), int(hits.face_ids[r, c]),
                       hits.sources[r, c]) for c in range(n)], threshold))
    return out


@dataclass
class IdentityHits:
    """Arrays (q, k), best first: exact scores (-inf pad), face ids of each identity's
    best face (-1 pad), identities (None for unlabelled faces) and sources."""

    scores: np.ndarray
    face_ids: np.ndarray
    identities: np.ndarray
    sources: np.ndarray


def search_identities(index: SearchableIndex, queries: np.ndarray, k: int = 5,
                      depth: int | None = None, nprobe: int | None = None,
                      max_depth: int = MAX_DEPTH) -> IdentityHits:
    """Top-k distinct identities per query, as arrays (the vectorised core of identify).

    depth: faces fetched per probe at first (default: `default_depth`); probes that got fewer
    than k identities from a full list are searched again deeper (twice, or 1.5 x the
    depth the identities found so far say k needs), up to max_depth. Faces are grouped by identity in the index's (exactly re-ranked) order,
    a person keeping their best face; then the k chosen faces are re-scored with
    `index.exact_scores` and re-sorted, so every returned score is exact. Faces without
    an identity count as their own candidate.
    """
    if k < 1:
        raise ValueError(f"k must be >= 1, got {k}")
    q = np.ascontiguousarray(queries, dtype=np.float32)
    if q.ndim != 2:
        raise ValueError(f"queries must be 2-D (q, D), got shape {q.shape}")
    if len(q) > 1:
        step = _block_rows(index, q.shape[1], k, depth)
        if step < len(q):
            parts = [search_identities(index, q[lo:lo + step], k, depth, nprobe, max_depth)
                     for lo in range(0, len(q), step)]
            return IdentityHits(*(np.concatenate([getattr(p, f) for p in parts])
                                  for f in ("scores", "face_ids", "identities", "sources")))
    ntotal = int(index.ntotal)
    out = IdentityHits(np.full((len(q), k), -np.inf), np.full((len(q), k), -1, np.int64),
                       np.full((len(q), k), None, object), np.full((len(q), k), None, object))
    todo = np.arange(len(q))
    d = min(max(depth or default_depth(index, k), k), max(ntotal, 1))
    while len(todo):
        ids, names, srcs, full = _distinct(index, q[todo], k, d, nprobe)
        short = (ids < 0).any(axis=1) & full
        done = ~short if d < min(ntotal, max_depth) else np.ones(len(todo), bool)
        rows = todo[done]
        out.face_ids[rows], out.identities[rows], out.sources[rows] = ids[done], names[done], srcs[done]
        todo = todo[~done]
        # deeper: at least twice, or as deep as the identities found so far say k needs
        # (a person with thousands of faces fills a shallow list alone)
        found = int((ids[~done] >= 0).sum(axis=1).min(initial=k))
        d = min(max(2 * d, -(-d * k * 3 // (2 * max(found, 1)))), ntotal, max_depth)
    valid = out.face_ids >= 0
    if valid.any():
        exact = np.asarray(index.exact_scores(q, np.where(valid, out.face_ids, out.face_ids[valid][0])),
                           dtype=np.float64)
        if exact.shape != out.face_ids.shape or np.isnan(exact[valid]).any():
            raise DataError("index could not give exact scores for its own search results",
                            getattr(index, "path", None))
        exact[~valid] = -np.inf
        order = np.argsort(-exact, axis=1, kind="stable")  # ties keep the index's order
        for name in ("face_ids", "identities", "sources"):
            setattr(out, name, np.take_along_axis(getattr(out, name), order, axis=1))
        out.scores = np.take_along_axis(exact, order, axis=1)
    return out


def default_depth(index: SearchableIndex, k: int) -> int:
    """Faces fetched per probe at first: 4k + 16, or the k * k_factor candidates the
    search re-ranks anyway for k identities (free depth: fewer second rounds when a
    person has many faces)."""
    tuned = int(getattr(index, "manifest", {}).get("search", {}).get("k_factor", 1) or 1)
    return max(4 * k + 16, k * tuned)


def _block_rows(index: SearchableIndex, dim: int, k: int, depth: int | None) -> int:
    """Queries per search call so that re-ranked candidate vectors stay within `budget`
    bytes (the deepest search: max_depth faces times the k_factor used)."""
    d = max(depth or default_depth(index, k), k)
    tuned = int(getattr(index, "manifest", {}).get("search", {}).get("k_factor", 1) or 1)
    cand = max(d, k * tuned) * 2   # the depth may double once for short lists
    return max(1, BLOCK_BYTES // (cand * dim * 4 + 1))


def _distinct(index: SearchableIndex, q: np.ndarray, k: int, depth: int, nprobe: int | None):
    """First k distinct identities in each row of the index's top-`depth` faces.

    Returns (face_ids, identities, sources) (q, k) with -1/None pads, and whether each
    row's face list was full (the gallery may hold more)."""
    # The stored k_factor is tuned for the rank-1 face: k identities need about k * k_factor
    # exactly re-ranked candidates, which a deep list (depth > k) already partly provides.
    tuned = int(getattr(index, "manifest", {}).get("search", {}).get("k_factor", 1) or 1)
    k_factor = max(1, -(-k * tuned // depth))
    _, ids = index.search(q, depth, nprobe=nprobe, k_factor=k_factor)   # best first, -1 padded
    ids = np.asarray(ids, dtype=np.int64)
    valid = ids >= 0
    full = valid.all(axis=1)
    flat, inv = np.unique(ids, return_inverse=True)
    inv = inv.reshape(ids.shape)
    key = _identity_codes(index, flat)          # per distinct face: identity code, -1 none
    n_codes = int(key.max(initial=-1)) + 1
    m = n_codes + ids.size
    c = key[inv]
    c = np.where(c >= 0, c, n_codes + np.arange(ids.size).reshape(ids.shape))  # unlabelled: unique
    row_key = np.arange(len(ids))[:, None] * m + c
    first = np.zeros(ids.size, bool)
    first[np.unique(row_key.ravel(), return_index=True)[1]] = True
    keep = first.reshape(ids.shape) & valid
    keep &= np.cumsum(keep, axis=1) <= k
    out_ids = np.full((len(ids), k), -1, np.int64)
    out_names = np.full((len(ids), k), None, object)
    out_src = np.full((len(ids), k), None, object)
    r, col = np.nonzero(keep)
    slot = (np.cumsum(keep, axis=1) - 1)[r, col]
    out_ids[r, slot] = ids[r, col]
    chosen = out_ids >= 0
    if chosen.any():   # names and sources only for the faces kept
        names, sources = index.lookup(out_ids[chosen])
        out_names[chosen] = [None if n in (None, "") else n for n in names]
        out_src[chosen] = sources
    return out_ids, out_names, out_src, full


def _identity_codes(index: SearchableIndex, face_ids: np.ndarray) -> np.ndarray:
    """0..U-1 per identity among `face_ids`, -1 for faces without one. Uses the index's
    vectorised `identity_keys` when it has one, else names from `lookup`."""
    keys_of = getattr(index, "identity_keys", None)
    if keys_of is not None:
        keys = np.asarray(keys_of(face_ids), np.int64)
        labelled = keys != -1
        out = np.full(len(keys), -1, np.int64)
        out[labelled] = np.unique(keys[labelled], return_inverse=True)[1]
        return out
    names, _ = index.lookup(face_ids)
    codes: dict = {}
    return np.array([codes.setdefault(n, len(codes)) if n not in (None, "") else -1
                     for n in names], np.int64)


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

