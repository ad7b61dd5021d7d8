"""Calibrate an index's decision threshold on labelled held-out faces.

Two questions, two thresholds:

* 1:1 verification (are these two faces the same person?): genuine and impostor pairs
  within the holdout give the ROC, the EER, TAR at the target FAR and its threshold, and
  the LFW-style 10-fold accuracy on a balanced set of pairs.
* 1:N open-set identification (is this probe one of the N enrolled people, and who?):
  every holdout face is searched against the index AS BUILT. A search is MATED when its
  person is enrolled (the probe image itself must not be a gallery entry: probes whose
  best same-person face has the same source or an identical vector are dropped), and
  NON-MATED when the person is not enrolled. Mated searches also give one non-mated
  score each: their best score among the other N-1 identities (the mate removed from
  the gallery). The threshold for the target FPIR is what `faceidx query` uses.
  The threshold needs only non-mated searches, so a holdout of strangers alone (the usual
  case: a public labelled set of other people) calibrates it; TPIR/FNIR/CMC need mated
  searches and are then reported as not measured.

A 1:1 threshold is not a 1:N threshold: with N identities a stranger has N chances to
match someone, so FPIR at the 1:1 threshold is reported next to the 1:N one.
"""

from __future__ import annotations

import logging
import math
import time
from dataclasses import dataclass

import numpy as np

from faceidx import __version__
from faceidx.errors import DataError
from faceidx.io import EmbeddingBatch
from faceidx.query import metrics as M
from faceidx.query.calibfile import gallery_size, index_id
from faceidx.query.identify import search_identities
from faceidx.query.pairs import generate_pairs, pairs_to_indices
from faceidx.query.quality_gate import fit_gate, rates_by_bucket
from faceidx.query.tail import fit_impostor_tail, growth_table
from faceidx.query.template import TEMPLATE, check_score, rescore_templates

log = logging.getLogger(__name__)

SAME_IMAGE = 1.0 - 1e-5
STRANGERS_ONLY = ("no holdout face belongs to an enrolled person: the 1:N threshold comes from "
                  "the strangers' non-mated searches alone, and TPIR, FNIR and CMC are not "
                  "measured; to measure them, add to the holdout other photos (not the "
                  "gallery images) of some enrolled people")


class CalibrationError(DataError):
    """The holdout cannot support the requested calibration (too few identities/pairs)."""


@dataclass
class CalibrationOptions:
    target_far: float = 1e-3
    target_fpir: float = 1e-2
    max_genuine: int = 200_000
    max_impostor: int = 2_000_000
    tail_k: int = 20           # identities listed per search (tail fit needs ~0.5 above u)
    folds: int = 10
    seed: int = 0
    min_support: float = 10.0  # warn below min_support / target; refuse below 1 / target
    score: str = "best"        # what query decides on: "best" face or "template"


def enrolled_identities(index) -> set[str]:
    """All identity names in the index (read from each shard's row store)."""
    if hasattr(index, "identity_set"):
        return set(index.identity_set())
    from faceidx.index.store import identity_names_of

    names: set[str] = set()
    for shard in index.store.shards:
        names.update(identity_names_of(shard.folder))
    return names


def verification_scores(vectors: np.ndarray, labels: np.ndarray, max_genuine: int,
                        max_impostor: int, seed: int = 0) -> tuple[np.ndarray, np.ndarray, int]:
    """(genuine scores, impostor scores, impostor pairs possible) among holdout faces.

    All same-person pairs (subsampled to max_genuine) and different-person pairs (all if
    at most max_impostor exist, else a uniform sample of that many).
    """
    rng = np.random.default_rng(seed)
    x = np.asarray(vectors, np.float32)
    codes, inverse, counts = np.unique(labels, return_inverse=True, return_counts=True)
    n = len(x)
    by_id = np.argsort(inverse, kind="stable")
    starts = np.concatenate([[0], np.cumsum(counts)])
    ga, gb = [], []
    for c in np.flatnonzero(counts >= 2):
        rows = by_id[starts[c]:starts[c + 1]]
        i, j = np.triu_indices(len(rows), 1)
        ga.append(rows[i])
        gb.append(rows[j])
    ga = np.concatenate(ga) if ga else np.empty(0, np.int64)
    gb = np.concatenate(gb) if gb else np.empty(0, np.int64)
    if len(ga) > max_genuine:
        pick = rng.choice(len(ga), max_genuine, replace=False)
        ga, gb = ga[pick], gb[pick]
    genuine = np.einsum("nd,nd->n", x[ga], x[gb]) if len(ga) else np.empty(0)
    possible = int((n * n - int((counts.astype(np.int64) ** 2).sum())) // 2)
    if possible <= max_impostor:
        parts = []
        for lo in range(0, n, 2048):
            s = x[lo:lo + 2048] @ x.T
            rows = np.arange(lo, min(lo + 2048, n))[:, None]
            keep = (np.arange(n)[None, :] > rows) & (inverse[lo:lo + 2048, None] != inverse[None, :])
            parts.append(s[keep])
        impostor = np.concatenate(parts) if parts else np.empty(0)
    else:
        parts, have = [], 0
        while have < max_impostor:
            a = rng.integers(n, size=1 << 18)
            b = rng.integers(n, size=1 << 18)
            ok = inverse[a] != inverse[b]
            a, b = a[ok][:max_impostor - have], b[ok][:max_impostor - have]
            parts.append(np.einsum("nd,nd->n", x[a], x[b]))
            have += len(a)
        impostor = np.concatenate(parts)
    return genuine.astype(np.float64), impostor.astype(np.float64), possible


def _support(name: str, have: int, target: float, opts: CalibrationOptions, warnings: list) -> None:
    need = math.ceil(opts.min_support / target)
    if have < math.ceil(1.0 / target):
        raise CalibrationError(
            f"{have} {name} cannot estimate a rate of {target:g} (at least {need} wanted, "
            f"{math.ceil(1 / target)} is the bare minimum): use a larger holdout or a "
            "higher target")
    if have < need:
        msg = (f"only {have} {name} back the {target:g} target (fewer than {need} = "
               f"{opts.min_support:g}/target): the threshold is a rough estimate")
        log.warning("%s", msg.upper())
        warnings.append(msg)


NO_GENUINE = ("1:1 verification not measured: the holdout has no genuine pairs (no person "
              "with two or more photos); add a second photo of some holdout people to get "
              "the 1:1 threshold, TAR and EER (the 1:N threshold does not need them)")


def verification(vectors, labels, opts: CalibrationOptions, warnings: list
                 ) -> tuple[dict | None, dict]:
    """1:1 results (JSON-able) and the raw score arrays (for plots); (None, {}) with a
    warning when the holdout has no genuine pairs (single photos of strangers)."""
    genuine, impostor, possible = verification_scores(vectors, labels, opts.max_genuine,
                                                      opts.max_impostor, opts.seed)
    if not len(genuine):
        log.warning("%s", NO_GENUINE)
        warnings.append(NO_GENUINE)
        return None, {}
    if not len(impostor):
        raise CalibrationError("the holdout has no impostor pairs (only one identity)")
    _support("impostor pairs", len(impostor), opts.target_far, opts, warnings)
    tar, thr = M.tar_at_far(genuine, impostor, opts.target_far)
    eer, eer_thr = M.eer(genuine, impostor)
    out = {"genuine_pairs": len(genuine), "impostor_pairs": len(impostor),
           "impostor_pairs_possible": possible, "target_far": opts.target_far,
           "threshold": thr, "tar": tar, "far": float(M.accept_rate(impostor, thr)),
           "eer": eer, "eer_threshold": eer_thr}
    out["kfold"] = _kfold(vectors, labels, opts, warnings)
    return out, {"genuine": genuine, "impostor": impostor}


def _kfold(vectors, labels, opts: CalibrationOptions, warnings: list) -> dict | None:
    """LFW-style 10-fold accuracy on seeded balanced pairs (fewer per fold if needed)."""
    for per_fold in (300, 100, 30, 10):
        try:
            pairs = generate_pairs(list(labels), folds=opts.folds, per_fold=per_fold, seed=opts.seed)
        except DataError:
            continue
        a, b, same = pairs_to_indices(pairs, labels)
        s = np.einsum("nd,nd->n", vectors[a], vectors[b])
        mean, std, thrs = M.kfold_accuracy(s, same, folds=opts.folds, seed=None)
        return {"folds": opts.folds, "per_fold": per_fold, "accuracy": mean, "std": std,
                "threshold": float(np.mean(thrs))}
    warnings.append(f"too few identities for {opts.folds}-fold pairs: no k-fold accuracy")
    return None


def openset(index, vectors, labels, sources, opts: CalibrationOptions, warnings: list,
            templates_of=None) -> tuple[dict, dict]:
    """1:N results against the index as built, and raw arrays (for plots); on the scores
    query decides on (opts.score; "template" needs `templates_of`)."""
    enrolled = enrolled_identities(index)
    n_ids = len(enrolled)
    is_mated = np.array([x in enrolled for x in labels], bool)
    k = max(10, opts.tail_k)
    t0 = time.perf_counter()
    hits = search_identities(index, vectors, k=min(k, max(n_ids, 1)))
    if check_score(opts.score) == TEMPLATE:
        if templates_of is None:
            raise ValueError("score='template' needs templates_of (the listed people's templates)")
        hits = rescore_templates(vectors, hits, templates_of)
    search_s = time.perf_counter() - t0
    is_mate = hits.identities == np.asarray(labels, dtype=object)[:, None]
    found = is_mate.any(axis=1)
    ranks = np.where(found, is_mate.argmax(axis=1) + 1, 0)
    mate_s = np.where(found, hits.scores[np.arange(len(ranks)), is_mate.argmax(axis=1)], -np.inf)
    # A mated probe must not be its own gallery entry: same source or identical vector.
    own = np.zeros(len(labels), bool)
    for i in np.flatnonzero(is_mated & found):
        src = hits.sources[i, ranks[i] - 1]
        own[i] = mate_s[i] >= SAME_IMAGE or (sources is not None and src is not None
                                             and src == sources[i])
    if own.any():
        warnings.append(f"{int(own.sum())} holdout faces are gallery entries themselves "
                        "(same source or identical vector): left out of the mated searches")
    mated = is_mated & ~own
    nonmated = ~is_mated
    # non-mated candidate lists: all identities of a stranger; all but the mate otherwise
    impostor = (hits.face_ids >= 0) & ~is_mate
    lists = [hits.scores[i][impostor[i]] for i in np.flatnonzero(mated | nonmated)]
    top = np.array([x[0] if len(x) else -np.inf for x in lists])
    from_mated = int(mated.sum())
    if not len(top):
        raise CalibrationError("every holdout face is a gallery entry itself: no search is "
                               "left to calibrate on (hold out other photos)")
    _support("non-mated searches", len(top), opts.target_fpir, opts, warnings)
    thr = M.threshold_at_fpir(top, opts.target_fpir)
    r, s = ranks[mated], mate_s[mated]
    out = {"gallery_identities": n_ids, "gallery_faces": int(index.ntotal),
           "mated_searches": from_mated, "nonmated_searches": len(top),
           "nonmated_strangers": int(nonmated.sum()), "nonmated_mate_removed": from_mated,
           "target_fpir": opts.target_fpir, "threshold": thr,
           "fpir": float(M.fpir_curve(top, thr)),
           "tpir": None, "rank1": None, "rank5": None, "rank10": None,
           "not_measured": [], "search_seconds": search_s}
    if mated.any():
        cmc = M.cmc(r, 10)
        out.update(tpir=float(1 - M.fnir_curve(r, s, thr)), rank1=float(cmc[0]),
                   rank5=float(cmc[4]), rank10=float(cmc[9]))
    else:
        out["not_measured"] = ["tpir", "fnir", "cmc"]
        warnings.append(STRANGERS_ONLY)
    tail = fit_impostor_tail(lists, n_ids)
    if tail is None:
        warnings.append("too few high impostor scores to fit the tail: no growth extrapolation")
        out["extrapolation"] = None
    else:
        out["extrapolation"] = {"tail": tail.to_json(), "model": "exponential tail of "
                                "per-identity impostor scores; FPIR_N'(t) = 1-exp(-(N'/N) "
                                "lambda_N(t)) (see faceidx/query/tail.py)",
                                "growth": growth_table(tail, thr, opts.target_fpir)}
    return out, {"nonmated_top": top, "mate_rank": r, "mate_score": s,
                 "nonmated_rows": np.flatnonzero(mated | nonmated), "mated_rows": np.flatnonzero(mated)}


def calibrate(index, holdout: EmbeddingBatch, opts: CalibrationOptions | None = None,
              holdout_path: str | None = None, templates_of=None) -> tuple[dict, dict]:
    """Run both calibrations; returns (calibration dict for calibration.json, raw arrays).

    `holdout` must carry embeddings and identities (rows without identity are ignored).
    Raises CalibrationError for a holdout with one identity or no search left; without
    genuine pairs (one photo per person) "verification" is None, with a warning.
    A holdout of strangers only (nobody enrolled) calibrates the 1:N threshold from its
    non-mated searches; TPIR, FNIR and CMC are then None, listed in
    openset["not_measured"], with a warning saying what would measure them.
    """
    opts = opts or CalibrationOptions()
    for name, rate in (("target FAR", opts.target_far), ("target FPIR", opts.target_fpir)):
        if not 0 < rate < 1:
            raise ValueError(f"{name} must be in (0, 1), got {rate}")
    if holdout.identities is None or holdout.embeddings is None:
        raise CalibrationError("holdout needs embeddings and identity labels", holdout_path)
    keep = np.array([x is not None and x != "" for x in holdout.identities], bool)
    if not keep.any():
        raise CalibrationError("holdout has no labelled faces", holdout_path)
    x = np.ascontiguousarray(holdout.embeddings[keep], np.float32)
    x /= np.linalg.norm(x, axis=1, keepdims=True)
    labels = np.asarray(holdout.identities[keep], dtype=object)
    sources = None if holdout.sources is None else holdout.sources[keep]
    quality = (holdout.extra or {}).get("quality")
    quality = None if quality is None else np.asarray(quality, np.float64)[keep]
    n_people = len(set(labels))
    if n_people < 2:
        raise CalibrationError(f"holdout holds {n_people} identity: calibration needs at "
                               "least two people (and many more for a useful estimate)",
                               holdout_path)
    warnings: list[str] = []
    verif, vraw = verification(x, labels, opts, warnings)
    oset, oraw = openset(index, x, labels, sources, opts, warnings, templates_of)
    oset["fpir_at_verification_threshold"] = None if verif is None else float(
        M.fpir_curve(oraw["nonmated_top"], verif["threshold"]))
    manifest = index.manifest
    result = {
        "faceidx_version": __version__,
        "created": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        "index": {"id": index_id(manifest), **gallery_size(manifest),
                  "model": manifest.get("meta", {}).get("model")},
        "holdout": {"path": holdout_path, "faces": int(len(x)), "identities": n_people},
        "threshold": {"value": oset["threshold"], "kind": "1:N open-set",
                      "target_fpir": opts.target_fpir, "gallery_identities": oset["gallery_identities"],
                      "score": opts.score},
        "verification": verif,
        "openset": oset,
        "warnings": warnings,
    }
    if quality is not None and np.isfinite(quality).any():
        result["quality"] = quality_calibration(quality, oraw, opts, warnings)
        gate = result["quality"]["gate"]
        if gate["gate"] > 0:
            result["threshold"].update(value=gate["threshold"], quality_gate=gate["gate"])
            oset.update(threshold=gate["threshold"], fpir=gate["fpir"], tpir=gate["tpir"])
    return result, {**vraw, **oraw}


def quality_calibration(quality: np.ndarray, oraw: dict, opts: CalibrationOptions,
                        warnings: list) -> dict:
    """The probe quality gate fitted on the holdout (faceidx.query.quality_gate) and the
    rates per quality bucket at the ungated threshold. Faces without a quality (NaN) are
    never gated: they count as quality 1."""
    missing = ~np.isfinite(quality)
    if missing.any():
        warnings.append(f"{int(missing.sum())} holdout faces have no quality score: "
                        "counted as never gated")
    q = np.where(missing, 1.0, quality)
    top, rank, score = oraw["nonmated_top"], oraw["mate_rank"], oraw["mate_score"]
    qn, qm = q[oraw["nonmated_rows"]], q[oraw["mated_rows"]]
    fit = fit_gate(top, qn, rank, score, qm, opts.target_fpir)
    keep = ("gate", "threshold", "tpir", "fpir", "refused")

    def pick(row):
        return {k: None if math.isnan(row[k]) else row[k] for k in keep}

    return {"gate": pick(fit), "no_gate": pick(fit["no_gate"]),
            "buckets": rates_by_bucket(qn, top, qm, rank, score, fit["no_gate"]["threshold"])}
