"""How a listed person is scored: their best face, or their template (issue 13, item 6).

    hits = search_identities(index, probes, k=5)
    hits = rescore_templates(probes, hits, templates_of)   # score="template"

The index lists each probe's k distinct identities by their best face (``best``, the
default). With ``template`` each listed person is re-scored exactly as the cosine between
the probe and their template, the normalised mean of ALL their gallery faces, and the
list is re-sorted. Only the listed candidates are re-scored: no template index is needed,
and a person whose best face did not make the list is not brought in (the list is what
the best-face search found). A face without an identity is its own template (its score is
unchanged). `face_ids` keep each person's best face (what the search found).

`templates_of(names)` gives {name: unit template (D,)}; faceidx.gallery.templates builds
it from an index (its rows and delta). Measured on LFW (docs/QUERY.md: 3 photos per
person, 5 identity splits) the template gains TPIR at FPIR 1% over the best face.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Sequence

import numpy as np

BEST = "best"
TEMPLATE = "template"
SCORES = (BEST, TEMPLATE)

TemplatesOf = Callable[[Sequence[str]], dict]


def check_score(score: str) -> str:
    if score not in SCORES:
        raise ValueError(f"score must be one of {SCORES}, got {score!r}")
    return score


def template(vectors: np.ndarray) -> np.ndarray:
    """The normalised mean of a person's face vectors (n, D) -> (D,)."""
    v = np.asarray(vectors, np.float64)
    if v.ndim != 2 or not len(v):
        raise ValueError("a template needs at least one face vector")
    t = v.sum(axis=0)
    return (t / max(float(np.linalg.norm(t)), 1e-12)).astype(np.float32)


def templates_from(vectors_of: Callable[[str], np.ndarray], names: Iterable[str]) -> dict:
    """{name: template} from a function giving a person's face vectors."""
    out = {}
    for name in names:
        v = vectors_of(name)
        if len(v):
            out[name] = template(v)
    return out


def rescore_templates(queries: np.ndarray, hits, templates_of: TemplatesOf):
    """The IdentityHits `hits` with each labelled candidate scored against their template
    and every row re-sorted best first (ties keep the search's order; pads stay last)."""
    q = np.asarray(queries, np.float32)
    q = q / np.maximum(np.linalg.norm(q, axis=1, keepdims=True), 1e-12)
    labelled = (hits.face_ids >= 0) & np.array(
        [[n is not None for n in row] for row in hits.identities], bool).reshape(hits.face_ids.shape)
    if not labelled.any():
        return hits
    names = sorted({hits.identities[r, c] for r, c in zip(*np.nonzero(labelled), strict=True)})
    found = templates_of(names)
    missing = [n for n in names if n not in found]
    if missing:
        raise LookupError(f"no gallery faces found for listed identities {missing[:3]}")
    code = {n: i for i, n in enumerate(names)}
    t = np.stack([found[n] for n in names]).astype(np.float32)
    r, c = np.nonzero(labelled)
    cols = np.array([code[hits.identities[i, j]] for i, j in zip(r, c, strict=True)], np.int64)
    scores = np.array(hits.scores, np.float64, copy=True)
    scores[r, c] = np.einsum("nd,nd->n", q[r], t[cols])
    order = np.argsort(-scores, axis=1, kind="stable")
    return type(hits)(np.take_along_axis(scores, order, axis=1),
                      *(np.take_along_axis(getattr(hits, f), order, axis=1)
                        for f in ("face_ids", "identities", "sources")))
