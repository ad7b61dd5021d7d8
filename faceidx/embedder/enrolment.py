"""Embedding for enrolment: one face per photo, group photos held back unless told which face.

    listing = name_photos(["known/", "Jane_Doe.jpg"], name=None)     # who is who, and how
    result = embed_for_enrolment(listing.items, "people.index.enrolled/3f2a9c", workers=2)
    result.group_photos        # [(path, faces)] not enrolled: several faces, no --face given

A photo with one face gives one row, and so does a portrait with bystanders: when every
other face covers less than BYSTANDER_AREA (1/4) of the largest face's area (half its
width), the largest is the person. A photo with faces of comparable size (a group photo)
gives none unless `choose` names the face to keep ("largest", "central": the selection
policies of faceidx/embedder/faces.py): enrolling the wrong person under a name is the
one mistake identification cannot recover from. (On 250 LFW photos, 11 held two or more
faces; 3 of them were portraits with bystanders by this rule.) Group photos are detected
again with `choose` only when there are some, so the common case costs one detection.

The output is an ordinary resumable collection (faceidx/embedder/pipeline.py): a rerun
skips photos already embedded, and its settings record the naming used.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

from faceidx.embedder.detect import Detection, iter_detections
from faceidx.embedder.sources import Listing, SourceItem, list_labelled, relative_to

CHOICES = ("largest", "central")
BYSTANDER_AREA = 0.25  # other faces below this share of the largest face's area: bystanders


def is_group_photo(boxes) -> bool:
    """Several faces of comparable size: the second largest covers >= BYSTANDER_AREA of the
    largest's area. Boxes are (left, top, right, bottom), inclusive."""
    areas = sorted(((r - left + 1) * (b - t + 1) for left, t, r, b in boxes), reverse=True)
    return len(areas) > 1 and areas[1] >= BYSTANDER_AREA * areas[0]


@dataclass
class Naming:
    """The photos of every SOURCE with their identities, and one line per SOURCE saying how."""

    items: list[SourceItem]
    lines: list[str]
    people: dict[str, int] = field(default_factory=dict)  # identity -> photos

    @property
    def unlabelled(self) -> list[str]:
        return [it.path for it in self.items if it.identity is None]

    def key(self) -> str:
        """A short stable id of this set of (photo, identity) pairs (names its collection)."""
        import hashlib

        h = hashlib.sha256()
        for it in sorted(self.items, key=lambda it: it.path):
            h.update(f"{os.path.abspath(it.path)}\0{it.identity}\n".encode())
        return h.hexdigest()[:12]


def name_photos(sources: Sequence[str | os.PathLike], name: str | None = None) -> Naming:
    """List the photos of `sources` and name them: folder tree = person, other files by
    their file name (face_recognition's convention), or all `name` when given. Photo
    files given one by one are summed up in one line."""
    listings = [list_labelled(source, naming="files") for source in sources]
    files = [lst for src, lst in zip(sources, listings, strict=True) if Path(src).is_file()]
    if len(files) > 1:
        merged = Listing(f"{len(files)} photo files", [], {}, {})
        for lst in files:
            merged.items += lst.items
            merged.rules.update(lst.rules)
            for rule, n in lst.how.items():
                merged.how[rule] = merged.how.get(rule, 0) + n
        listings = [lst for lst in listings if all(lst is not f for f in files)] + [merged]
    if name is not None:
        listings = [Listing(lst.source, [SourceItem(it.path, name, it.source) for it in lst.items],
                            {"--name": len(lst.items)}, {it.path: "--name" for it in lst.items},
                            lst.mixed) for lst in listings]
    items: dict[str, SourceItem] = {}
    for lst in listings:
        for it in lst.items:
            items.setdefault(it.path, it)
    # stored sources relative to the folder all SOURCES share (unique across them)
    roots = [os.path.abspath(src if Path(src).is_dir() else Path(src).parent) for src in sources]
    out = relative_to(sorted(items.values(), key=lambda it: it.path), os.path.commonpath(roots))
    people: dict[str, int] = {}
    for it in out:
        if it.identity is not None:
            people[it.identity] = people.get(it.identity, 0) + 1
    return Naming(out, [lst.explain() for lst in listings], people)


@dataclass
class EnrolEmbedding:
    """What embed_for_enrolment did: the embed summary and the group photos held back."""

    summary: object  # pipeline.EmbedSummary
    group_photos: list[tuple[str, int]] = field(default_factory=list)


def embed_for_enrolment(items: Sequence[SourceItem], out_dir: str | os.PathLike, model, *,
                        detector: str = "hog", choose: str | None = None, device: str = "auto",
                        batch_size: int = 64, workers: int = 0, shard_rows: int = 50_000,
                        progress: bool = False, labelling: dict | None = None) -> EnrolEmbedding:
    """Embed one face per photo into the collection `out_dir` (see the module docstring)."""
    from faceidx.embedder.encode import Encoder
    from faceidx.embedder.pipeline import (
        embedded_batches,
        model_meta,
        open_model,
        plan_embed,
        write_embedded,
    )

    if choose is not None and choose not in CHOICES:
        raise ValueError(f"choose must be one of {CHOICES} or None, got {choose!r}")
    face_model = open_model(model, device)
    plan = plan_embed(items, out_dir, model_meta(face_model), detector=detector,
                      policy="largest", labelling=labelling)
    encoder = Encoder(face_model, device, "none")
    groups: list[tuple[str, int]] = []
    template = getattr(face_model, "template", "dlib-150")  # chips the model's card asks for

    def detections():
        held: list[SourceItem] = []
        for det in iter_detections(plan.todo, detector, "all", workers, template=template):
            if len(det.chips) > 1 and is_group_photo([c.box for c in det.chips]):
                groups.append((det.item.path, len(det.chips)))
                held.append(det.item)
                if choose is None:
                    yield Detection(det.item)  # counted as done, neither written nor failed
                continue
            if len(det.chips) > 1:  # a portrait with bystanders: the largest face
                largest = max(det.chips, key=lambda c: (c.box[2] - c.box[0]) * (c.box[3] - c.box[1]))
                det = Detection(det.item, chips=[largest])
            yield det
        if choose is not None and held:
            yield from iter_detections(held, detector, choose, 0, template=template)

    batches = embedded_batches(encoder, detections(), batch_size, plan.skip_faces)
    summary = write_embedded(plan, batches, shard_rows, progress)
    return EnrolEmbedding(summary, groups)


@dataclass
class LabelledFaces:
    """Faces of named photos embedded in memory: row i of `embeddings` is `identities[i]`,
    from `sources[i]`; photos without a usable face are in `failures` as (path, reason)."""

    embeddings: object  # np.ndarray (n, D) float32, unit rows
    identities: list[str]
    sources: list[str]
    failures: list[tuple[str, str]]
    naming: Naming
    meta: object  # io.CollectionMeta of the model that embedded them


def embed_labelled_photos(source: str | os.PathLike, model, *, detector: str = "hog",
                          device: str = "auto", workers: int = 0) -> LabelledFaces:
    """Embed the largest face of each named photo of `source` (a folder tree, or files
    named after people) in memory: a calibration holdout given as images.

    Raises DataError when a photo gives no name (a holdout must be labelled).
    """
    import numpy as np

    from faceidx.embedder.pipeline import embed_paths
    from faceidx.errors import DataError

    naming = name_photos([source])
    if naming.unlabelled:
        raise DataError(f"{len(naming.unlabelled)} photo(s) give no name (e.g. "
                        f"{Path(naming.unlabelled[0]).name}): every holdout photo must say who "
                        "it is, by its folder (HOLDOUT/<name>/photo.jpg) or its file name "
                        "(Jane_Doe_0001.jpg)", source)
    who = {it.path: it.identity for it in naming.items}
    res = embed_paths([it.path for it in naming.items], model=model, detector=detector,
                      device=device, workers=workers)
    return LabelledFaces(np.asarray(res.embeddings, np.float32), [who[s] for s in res.sources],
                         list(res.sources), list(res.failures), naming, res.meta)
