"""faceidx.open_gallery: the one entry point (identify, verify, catalog, enrol, erase)."""

from __future__ import annotations

import shutil

import numpy as np
import pytest

import faceidx
from faceidx.errors import DataError, NotFoundError
from faceidx.gallery.layered import Delta, LayeredIndex
from faceidx.index import open_index
from faceidx.query.identify import identify


@pytest.fixture(scope="module")
def gallery(calibrated_index):
    return faceidx.open_gallery(calibrated_index[0])


def test_identify_equals_the_query_core(gallery, calibrated_index):
    _, s = calibrated_index
    x = s["x"][~s["gallery"]][:40]
    thr = gallery.threshold_for(None)
    assert thr.origin.startswith("calibration.json") and thr.fpir is not None
    got = gallery.identify(x, k=3)
    want = identify(open_index(calibrated_index[0]), x, k=3, threshold=thr.value)
    assert [r.to_json()["candidates"] for r in got] == [r.to_json()["candidates"] for r in want]
    assert [r.decision for r in got] == [r.decision for r in want]
    statuses = {r.status for r in got}
    assert statuses <= {"known", "unknown"} and len(statuses) == 2
    for r in got:
        j = r.to_json()
        assert j["fpir"] == thr.fpir and j["threshold"] == thr.value
        assert j["margin"] == pytest.approx(r.candidates[0].score - r.candidates[1].score, abs=1e-5)
        assert j["decision"] == (r.decision if r.status == "known" else "unknown")
    one = gallery.identify(x[0], k=3, threshold=0.5)[0]   # a 1-D vector and a given threshold
    assert one.threshold == 0.5 and one.candidates == got[0].candidates


def test_bad_vectors_and_thresholds(gallery):
    with pytest.raises(ValueError, match="shape"):
        gallery.identify(np.zeros((2, 5), np.float32))
    with pytest.raises(ValueError, match="nearly zero"):
        gallery.identify(np.zeros((1, gallery.dim), np.float32))
    with pytest.raises(ValueError, match="outside the cosine"):
        gallery.identify(np.ones((1, gallery.dim), np.float32), threshold=2)


def test_uncalibrated_gallery_needs_a_threshold(small_index):
    g = faceidx.open_gallery(small_index["index"])
    x = small_index["x"][:2]
    with pytest.raises(DataError, match="faceidx calibrate"):
        g.identify(x)
    assert len(g.identify(x, threshold=0.9)) == 2
    assert g.info()["threshold"] is None and "calibrate" in g.info()["threshold_error"]


def test_verify_and_catalog(gallery, calibrated_index):
    _, s = calibrated_index
    x, labels, enrolled = s["x"], s["labels"], s["gallery"]
    probe = np.flatnonzero(~enrolled & (np.arange(len(x)) < 800))[0]   # a mate, not enrolled
    v = gallery.verify(x[probe], labels[probe])
    assert v.threshold_from.startswith("calibration.json (1:1")
    other = labels[np.flatnonzero(enrolled & (labels != labels[probe]))[0]]
    w = gallery.verify(x[probe], other)
    assert v.score > w.score and v.match == (v.score >= v.threshold)
    faces = gallery.identity(labels[probe])["faces"]
    assert len(faces) == 2 and v.face_id in {f["face_id"] for f in faces}
    with pytest.raises(NotFoundError):
        gallery.verify(x[probe], "nobody")
    with pytest.raises(NotFoundError):
        gallery.identity("nobody")
    total, page = gallery.identities(prefix="id0001", limit=5)
    assert total == 10 and [n for n, _ in page] == [f"id0001{i}" for i in range(5)]
    assert all(c == 2 for _, c in page)
    info = gallery.info()
    assert info["index"]["identities"] == 200 and info["calibration"]["threshold"]["value"]


def test_layered_index_searches_the_delta_exactly(calibrated_index):
    reader = open_index(calibrated_index[0])
    rng = np.random.default_rng(5)
    new = rng.normal(size=(3, reader.dim)).astype(np.float32)
    delta = Delta.empty(reader.dim).add(new, ["zed", "zed", None], ["a", "b", None],
                                        np.array([10_000, 10_001, 10_002]))
    view = LayeredIndex(reader, delta)
    got = identify(view, new + 0.01, k=2, threshold=0.9)
    assert got[0].decision == "zed" and got[0].candidates[0].face_id == 10_000
    assert got[2].status == "unlabelled" and got[2].decision is None
    assert got[2].to_json()["decision"] is None
    assert view.ntotal == reader.ntotal + 3
    smaller, dropped = delta.without(identities=["zed"])
    assert list(dropped) == [10_000, 10_001] and len(smaller) == 1


def test_enrol_and_erase_through_the_writer(calibrated_index, tmp_path):
    d = tmp_path / "index"
    shutil.copytree(calibrated_index[0], d)
    g = faceidx.open_gallery(d)
    v = np.random.default_rng(9).normal(size=(2, g.dim)).astype(np.float32)
    ids = g.enrol("newcomer", v, sources=["n1", "n2"])
    assert len(ids) == 2
    res = g.identify(v, k=1)
    assert [r.decision for r in res] == ["newcomer", "newcomer"]
    assert g.erase(identities=["newcomer"])
    assert all(r.decision != "newcomer" for r in g.identify(v, k=1))
    with pytest.raises(DataError):
        g.erase(identities=["newcomer"])
