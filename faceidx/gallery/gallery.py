"""The library entry point: a gallery opened once from an index directory.

    import faceidx
    g = faceidx.open_gallery("faces.index")            # index, calibration, threshold "auto"
    g.identify_image("photo.jpg")[0].decision           # "Ada_Lovelace", or None: see .status
    g.identify(vectors, k=3)                            # embeddings (q, D) -> Identifications
    g.verify("photo.jpg", "Ada_Lovelace").match         # 1:1 against the calibrated FAR
    ids = g.enrol("Grace_Hopper", ["g1.jpg", "g2.jpg"]) # face ids; searchable at once
    g.erase(identities=["Grace_Hopper"])

A Gallery answers from one snapshot per call (the index generation and calibration it
holds when the call starts), so any number of threads may use it at once. The face model
loads on the first image probe; nothing is cached at module level. Writes (enrol, erase)
take the index's writer lock for their duration; a service that keeps the lock does its
own writes (faceidx.serve) and swaps snapshots in with `use`.
"""

from __future__ import annotations

import logging
import os
import threading
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from faceidx.errors import DataError, NotFoundError
from faceidx.gallery.threshold import Threshold, load_calibration_or_none, resolve_threshold
from faceidx.query.identify import Identification, identify
from faceidx.query.quality_gate import gate_results

log = logging.getLogger(__name__)


@dataclass
class Snapshot:
    """What one call answers from: the searchable index (a reader or a LayeredIndex),
    its calibration and the default threshold ("auto" resolved, or the error saying why
    it cannot be)."""

    index: object
    calibration: dict | None
    threshold: Threshold | None
    threshold_error: DataError | None = None
    count: Callable[[], Counter] | None = field(default=None, repr=False)
    _counts: Counter | None = field(default=None, repr=False)

    def counts(self) -> Counter:
        """{identity: faces} (computed on first use, kept with this snapshot)."""
        if self._counts is None:
            from faceidx.gallery.catalog import identity_counts

            self._counts = self.count() if self.count else identity_counts(self.index)
        return self._counts


@dataclass(frozen=True)
class Verification:
    """1:1: is the probe `identity`? score = best exact cosine over their faces."""

    identity: str
    match: bool
    score: float
    threshold: float
    threshold_from: str
    target_far: float | None
    face_id: int | None
    box: tuple | None = None

    def to_json(self) -> dict:
        out = {"identity": self.identity, "match": self.match, "score": round(self.score, 6),
               "threshold": self.threshold, "threshold_from": self.threshold_from,
               "target_far": self.target_far, "face_id": self.face_id}
        if self.box is not None:
            out["box"] = [int(v) for v in self.box]
        return out


def open_gallery(index_dir: str | os.PathLike, threshold: str | float = "auto",
                 device: str = "auto", model: str | None = None, detector: str | None = None,
                 threads: int | None = None, score: str = "best") -> Gallery:
    """Open a gallery for identification. See the module docstring for an example.

    threshold: the default decision threshold, "auto" (calibration.json) or a cosine.
    score: how a listed person scores, "best" face or "template" (faceidx.query.template);
    "auto" refuses a calibration.json made on the other score.
    model/detector: to embed probe images (default: those the index was built with).
    threads: FAISS's OpenMP threads, set once here (None: FAISS's default).
    """
    return Gallery(index_dir, threshold, device, model, detector, threads, score)


class Gallery:
    """An index directory ready to identify, verify, enrol and erase. Use open_gallery."""

    def __init__(self, index_dir, threshold: str | float = "auto", device: str = "auto",
                 model: str | None = None, detector: str | None = None,
                 threads: int | None = None, score: str = "best"):
        from faceidx.index import open_index
        from faceidx.index.faissio import set_threads
        from faceidx.query.template import check_score

        self.path = Path(index_dir)
        self.score = check_score(score)
        self.device, self.model, self.detector = device, model, detector
        self.default_threshold = threshold
        set_threads(threads)
        self._lock = threading.Lock()
        self._counts_lock = threading.Lock()
        self._base_counts: tuple = (None, Counter())
        self._embedder = None
        self._snap = None
        self._snap = self.snapshot_of(self.layer(open_index(self.path)))

    # -- snapshots ----------------------------------------------------------------------

    def snapshot_of(self, index) -> Snapshot:
        """A snapshot for `index`: calibration read and the default threshold resolved now
        (kept from the current snapshot when only the delta of a LayeredIndex changed)."""
        base = getattr(index, "base", index)
        cur = getattr(self, "_snap", None)
        if cur is not None and getattr(cur.index, "base", cur.index) is base:
            return Snapshot(index, cur.calibration, cur.threshold, cur.threshold_error,
                            lambda: self._counts_of(index))
        manifest = index.manifest
        calibration, thr, error = None, None, None
        try:
            calibration = load_calibration_or_none(self.path, manifest)
            thr = resolve_threshold(self.path, manifest, self.default_threshold, calibration,
                                    self.score)
        except DataError as err:
            error = err
        return Snapshot(index, calibration, thr, error, lambda: self._counts_of(index))

    def base_counts(self, reader) -> Counter:
        """{identity: faces} of an index reader (kept for the latest reader asked about)."""
        from faceidx.gallery.catalog import identity_counts

        with self._counts_lock:
            if self._base_counts[0] is not reader:
                self._base_counts = (reader, identity_counts(reader))
            return self._base_counts[1]

    def _counts_of(self, index) -> Counter:
        counts = Counter(self.base_counts(getattr(index, "base", index)))
        delta = getattr(index, "delta", None)
        if delta is not None:
            counts.update(n for n in delta.identities if n is not None)
        return counts

    @property
    def snapshot(self) -> Snapshot:
        return self._snap

    def layer(self, reader, delta=None):
        """`reader` (plus `delta`, faces not yet in it) as the LayeredIndex searches use,
        keeping the identity keys already read for the shards it shares with the current one."""
        from faceidx.gallery.catalog import IdentityKeys
        from faceidx.gallery.layered import Delta, LayeredIndex

        cur = None if self._snap is None else self._snap.index
        keys = getattr(cur, "keys", None)
        if keys is None or getattr(cur, "base", None) is not reader:
            keys = IdentityKeys(reader, previous=keys)
        return LayeredIndex(reader, Delta.empty(reader.dim) if delta is None else delta, keys)

    def use(self, index) -> Snapshot:
        """Answer from `index` from now on: a newer reader (wrapped by `layer`), or a
        LayeredIndex (a reader with a delta)."""
        if not hasattr(index, "delta"):
            index = self.layer(index)
        snap = self.snapshot_of(index)
        self._snap = snap   # one reference swap: a call sees the old or the new one whole
        return snap

    def refresh(self) -> bool:
        """Reopen the index when a writer published a newer generation; True if it did."""
        from faceidx.index import open_index
        from faceidx.index.writer import current_generation

        if current_generation(self.path) == self._snap.index.generation:
            return False
        self.use(open_index(self.path))
        return True

    @property
    def index(self):
        return self._snap.index

    @property
    def dim(self) -> int:
        return int(self._snap.index.dim)

    # -- thresholds ---------------------------------------------------------------------

    def threshold_for(self, threshold: str | float | None, snap: Snapshot | None = None) -> Threshold:
        """The Threshold to use: the gallery's default (None) or the one given."""
        snap = snap or self._snap
        if threshold is None:
            if snap.threshold is None:
                raise snap.threshold_error
            return snap.threshold
        return resolve_threshold(self.path, snap.index.manifest, threshold, snap.calibration,
                                 self.score)

    # -- identification -----------------------------------------------------------------

    def identify(self, vectors: np.ndarray, k: int = 5, threshold: str | float | None = None,
                 snap: Snapshot | None = None, quality=None) -> list[Identification]:
        """Top-k identities and a decision for each embedding row (1-D: one probe).

        quality: each probe face's quality score (faceidx.embedder.quality; NaN or None: not
        gated); below the calibrated gate (threshold "auto") a probe answers low_quality."""
        snap = snap or self._snap
        q = self._vectors(vectors)
        thr = self.threshold_for(threshold, snap)
        templates_of = None
        if self.score == "template":
            from faceidx.gallery.templates import templates_for

            templates_of = templates_for(snap.index)
        out = identify(snap.index, q, k=k, threshold=thr.value, score=self.score,
                       templates_of=templates_of) if len(q) else []
        for res in out:
            res.fpir = thr.fpir
        gate_results(out, quality, thr.quality_gate)
        return out

    def identify_image(self, image, k: int = 5, threshold: str | float | None = None,
                       faces: str = "largest") -> list[Identification]:
        """One Identification per face kept by `faces` ("largest" or "all"), each with its
        box; an image without a usable face gives one skipped record (status no_face)."""
        return self.identify_images([image], k, threshold, faces)[0]

    def identify_images(self, images, k: int = 5, threshold: str | float | None = None,
                        faces: str = "largest") -> list[list[Identification]]:
        """identify_image for each image (paths, bytes or RGB arrays), in one model batch."""
        snap = self._snap
        thr = self.threshold_for(threshold, snap)
        found = self.embedder().embed(list(images), faces)
        rows = [fs.vectors for fs in found]
        flat = self.identify(np.concatenate(rows) if rows else np.empty((0, self.dim)), k,
                             thr.value, snap)
        gate_results(flat, np.concatenate([np.full(len(fs.vectors), np.nan) if fs.quality is None
                                           else fs.quality for fs in found]) if found else None,
                     thr.quality_gate)
        out, at = [], 0
        for fs in found:
            if fs.reason is not None:
                res = Identification.skipped(fs.reason, thr.value)
                res.fpir = thr.fpir
                out.append([res])
                continue
            mine = flat[at:at + len(fs.vectors)]
            for res, box in zip(mine, fs.boxes, strict=True):
                res.box = tuple(int(v) for v in box)
            out.append(mine)
            at += len(fs.vectors)
        return out

    def verify(self, probe, identity: str, threshold: str | float | None = None) -> Verification:
        """1:1: the probe (an embedding, or an image whose largest face is used) against
        every face of `identity`. The default threshold is the calibrated 1:1 one."""
        from faceidx.gallery.catalog import identity_faces
        from faceidx.gallery.threshold import parse_threshold, verification_threshold

        snap = self._snap
        box = None
        if isinstance(probe, np.ndarray) and probe.dtype != np.uint8:
            q = self._vectors(probe)[:1]
        else:
            fs = self.embedder().embed([probe])[0]
            if fs.reason is not None:
                raise DataError(f"no usable face in the probe ({fs.reason})", fs.source)
            q, box = fs.vectors[:1], tuple(int(v) for v in fs.boxes[0])
        face_ids, _ = identity_faces(snap.index, identity)
        if not len(face_ids):
            raise NotFoundError(f"identity {identity!r} is not in the gallery", self.path)
        scores = snap.index.exact_scores(q, face_ids[None, :])[0]
        best = int(np.nanargmax(scores))
        t = parse_threshold(threshold)
        if t is None:
            t, far = verification_threshold(snap.calibration, self.path)
            origin = f"calibration.json (1:1, FAR {far:g})"
        else:
            far, origin = None, "--threshold"
        score = float(scores[best])
        return Verification(identity, score >= t, score, t, origin, far, int(face_ids[best]), box)

    def _vectors(self, vectors) -> np.ndarray:
        q = np.asarray(vectors, np.float64)
        q = q[None, :] if q.ndim == 1 else q
        if q.ndim != 2 or q.shape[1] != self.dim:
            raise ValueError(f"embeddings must have shape (n, {self.dim}), got {np.shape(vectors)}")
        if not np.isfinite(q).all() or (np.abs(q) > 1e30).any():
            raise ValueError("embeddings hold NaN, inf or values beyond float32")
        q = q.astype(np.float32)
        if len(q) and (np.linalg.norm(q, axis=1) < 1e-6).any():
            raise ValueError("embeddings hold a zero (or nearly zero) vector")
        return q

    def embedder(self):
        """The ImageEmbedder of this gallery (the index's model, loaded on first use)."""
        with self._lock:
            if self._embedder is None:
                from faceidx.gallery.probes import ImageEmbedder

                self._embedder = ImageEmbedder(self._snap.index, self.model, self.detector,
                                               self.device)
            return self._embedder

    # -- catalog ------------------------------------------------------------------------

    def identities(self, prefix: str = "", offset: int = 0, limit: int = 100
                   ) -> tuple[int, list[tuple[str, int]]]:
        """(how many identities match `prefix`, a page of (identity, faces) sorted by name)."""
        counts = self._snap.counts()
        names = sorted(n for n in counts if n.startswith(prefix))
        return len(names), [(n, counts[n]) for n in names[offset:offset + limit]]

    def identity(self, name: str) -> dict:
        """{"identity", "faces": [{"face_id", "source"}]}; NotFoundError when absent."""
        from faceidx.gallery.catalog import identity_faces

        ids, sources = identity_faces(self._snap.index, name)
        if not len(ids):
            raise NotFoundError(f"identity {name!r} is not in the gallery", self.path)
        return {"identity": name, "faces": [{"face_id": int(f), "source": s}
                                            for f, s in zip(ids, sources, strict=True)]}

    def info(self) -> dict:
        """Index, calibration, counts and model of the snapshot answering now."""
        snap = self._snap
        m = snap.index.manifest
        cal = snap.calibration
        thr = snap.threshold
        delta = getattr(snap.index, "delta", None)
        return {
            "index": {"path": str(self.path), "generation": m.get("generation"),
                      "factory": m.get("factory"), "faces": int(snap.index.ntotal),
                      "identities": len(snap.counts()),
                      "pending_faces": 0 if delta is None else len(delta),
                      "search": m.get("search", {})},
            "model": m.get("meta", {}),
            "calibration": None if cal is None else {
                "created": cal.get("created"), "threshold": cal.get("threshold"),
                "verification_threshold": (cal.get("verification") or {}).get("threshold"),
                "target_far": (cal.get("verification") or {}).get("target_far")},
            "threshold": None if thr is None else {"value": thr.value, "from": thr.origin,
                                                   "fpir": thr.fpir, "warnings": list(thr.warnings)},
            "threshold_error": None if snap.threshold_error is None else str(snap.threshold_error),
        }

    # -- writes (library use: the writer lock is taken for each call) ---------------------

    def enrol(self, identity: str | None, probes, sources=None) -> np.ndarray:
        """Add faces under `identity`: embeddings (n, D), or images (the largest face of
        each; an image without one is a DataError). Returns the new face ids."""
        from faceidx.index.writer import open_writer

        vectors, sources = self.enrolment_vectors(probes, sources)
        with open_writer(self.path, holder="faceidx.Gallery.enrol") as w:
            ids = w.add_arrays(vectors, [identity] * len(vectors), sources)
        self.refresh()
        return ids

    def enrolment_vectors(self, probes, sources=None) -> tuple[np.ndarray, list]:
        """(unit vectors, sources) of embeddings or images to enrol (images: largest face)."""
        if isinstance(probes, np.ndarray) and probes.dtype != np.uint8:
            q = self._vectors(probes)
            q = q / np.linalg.norm(q, axis=1, keepdims=True)
            return q, list(sources) if sources is not None else [None] * len(q)
        found = self.embedder().embed(list(probes))
        bad = [fs for fs in found if fs.reason is not None]
        if bad:
            raise DataError(f"no usable face to enrol ({bad[0].reason})", bad[0].source)
        srcs = list(sources) if sources is not None else [fs.source for fs in found]
        return np.concatenate([fs.vectors[:1] for fs in found]), srcs

    def erase(self, face_ids=(), identities=()) -> dict:
        """Erase faces by id and/or every face of identities (unknown ones: NotFoundError)."""
        from faceidx.gallery.catalog import check_known
        from faceidx.index.writer import open_writer

        check_known(self._snap.index, self._snap.counts(), face_ids, identities)
        with open_writer(self.path, holder="faceidx.Gallery.erase") as w:
            out = w.erase(face_ids=list(face_ids), identities=list(identities))
        self.refresh()
        return out
