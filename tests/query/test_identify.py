"""Per-identity aggregation vs a naive exact reference; decisions vs exact decisions."""

from __future__ import annotations

import numpy as np
import pytest

from faceidx.index import BuildOptions, build_index, open_index
from faceidx.query.identify import Identification, identify, mate_ranks
from tests.query.conftest import write_collection


def naive_identify(gallery_x, gallery_labels, q, k):
    """Exact: score every face, keep each person's best face, sort, top-k."""
    out = []
    for row in q:
        s = gallery_x @ row
        best: dict[str, float] = {}
        for name, v in zip(gallery_labels, s, strict=True):
            best[name] = max(best.get(name, -np.inf), float(v))
        out.append(sorted(best.items(), key=lambda kv: -kv[1])[:k])
    return out


def test_matches_exact_reference_and_never_repeats(small_index, reader):
    x, labels, g = small_index["x"], small_index["labels"], small_index["gallery"]
    probes = x[~g][:60]
    want = naive_identify(x[g], labels[g], probes, 5)
    got = identify(reader, probes, k=5, depth=5)   # depth=k forces deeper searches
    for w, r in zip(want, got, strict=True):
        names = [c.identity for c in r.candidates]
        assert len(names) == len(set(names)) == 5
        assert names == [n for n, _ in w]
        np.testing.assert_allclose([c.score for c in r.candidates], [s for _, s in w], atol=1e-5)


def test_decisions_agree_with_exact_decisions(small_index, reader):
    x, labels, g = small_index["x"], small_index["labels"], small_index["gallery"]
    probes = x[~g]
    want = naive_identify(x[g], labels[g], probes, 1)
    mixed = 0
    for thr in (0.3, 0.55, 0.6, 0.7):
        got = identify(reader, probes, k=3, threshold=thr)
        exact = [w[0][0] if w[0][1] >= thr else None for w in want]
        assert [r.decision for r in got] == exact
        mixed += any(d is None for d in exact) and any(d is not None for d in exact)
    assert mixed >= 2


def test_best_face_and_source_reported(small_index, reader):
    x, g, sources = small_index["x"], small_index["gallery"], small_index["sources"]
    gi = np.flatnonzero(g)[7]
    (res,) = identify(reader, x[gi][None, :], k=2)
    top = res.candidates[0]
    assert top.score == pytest.approx(1.0, abs=1e-5) and top.source == sources[gi]
    assert res.decision == top.identity   # no threshold: closed-set answer


def test_decision_tie_accepts():
    res = Identification([], threshold=0.5)
    assert res.decision is None and res.to_json()["decision"] == "unknown"
    from faceidx.query.identify import Candidate

    res = Identification([Candidate("a", 0.5, 1, "s")], threshold=0.5)
    assert res.decision == "a"
    assert Identification([Candidate("a", 0.4999, 1, "s")], threshold=0.5).decision is None


def test_approximate_index_uses_exact_scores(tmp_path, small_index):
    x, labels, g, sources = (small_index[k] for k in ("x", "labels", "gallery", "sources"))
    write_collection(tmp_path / "g", x[g], labels[g], sources[g])
    build_index(tmp_path / "g", tmp_path / "ivf", BuildOptions(index_spec="IVF8,PQ4x4fs",
                                                               tune_queries=50))
    r = open_index(tmp_path / "ivf")
    probes = x[~g][:40]
    for res, row in zip(identify(r, probes, k=3), probes, strict=True):
        for c in res.candidates:
            gi = np.flatnonzero(sources == c.source)[0]
            assert c.score == pytest.approx(float(x[gi] @ row), abs=1e-5)


def test_unlabelled_faces_are_own_candidates(tmp_path):
    rng = np.random.default_rng(0)
    x = rng.normal(size=(30, 8)).astype(np.float32)
    x /= np.linalg.norm(x, axis=1, keepdims=True)
    from faceidx.io import CollectionMeta

    meta = CollectionMeta(model="m", dim=8)
    write_collection(tmp_path / "c", x, [None] * 30, [f"s{i}" for i in range(30)], meta)
    build_index(tmp_path / "c", tmp_path / "i", BuildOptions(tune_queries=10))
    (res,) = identify(open_index(tmp_path / "i"), x[:1], k=4)
    assert [c.identity for c in res.candidates] == [None] * 4
    assert len({c.face_id for c in res.candidates}) == 4


def test_small_gallery_and_bad_arguments(reader, small_index):
    x = small_index["x"]
    (res,) = identify(reader, x[:1], k=500)   # more than the 200 enrolled people
    assert len(res.candidates) == reader.num_identities
    with pytest.raises(ValueError, match="outside the cosine score range"):
        identify(reader, x[:1], threshold=1.5)
    with pytest.raises(ValueError):
        identify(reader, x[:1], k=0)


def test_mate_ranks():
    from faceidx.query.identify import Candidate

    res = [Identification([Candidate("a", .9, 1, None), Candidate("b", .8, 2, None)]),
           Identification([Candidate("a", .7, 1, None)])]
    ranks, scores = mate_ranks(res, ["b", "c"])
    assert list(ranks) == [2, 0] and scores[0] == 0.8 and scores[1] == -np.inf


def test_blocked_search_equals_one_call(small_index, reader, monkeypatch):
    import faceidx.query.identify as ident

    probes = small_index["x"][~small_index["gallery"]][:50]
    whole = ident.search_identities(reader, probes, k=4)
    monkeypatch.setattr(ident, "BLOCK_BYTES", 50_000)   # a few queries per search call
    assert ident._block_rows(reader, probes.shape[1], 4, None) < 10
    blocked = ident.search_identities(reader, probes, k=4)
    np.testing.assert_array_equal(whole.face_ids, blocked.face_ids)
    np.testing.assert_array_equal(whole.scores, blocked.scores)
