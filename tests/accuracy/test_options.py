"""Score normalisation, several-photo rules, quality and the quality gate vs naive loops."""

from __future__ import annotations

import numpy as np
import pytest

from faceidx.query.aggregate import identity_scores
from faceidx.query.quality_gate import fit_gate, rates_by_bucket
from faceidx.query.scorenorm import Cohort, as_norm
from tests.conftest import make_clusters


@pytest.fixture(scope="module")
def faces():
    x, labels = make_clusters(30, 4, 16, seed=3, noise=0.6)
    return x.astype(np.float32), np.asarray(labels, dtype=str)


def test_cohort_stats_and_as_norm_naive(faces):
    x, _ = faces
    cohort = Cohort(x[40:], top_k=7)
    mu, sd = cohort.stats(x[:5], block=2)
    for i in range(5):
        top = np.sort(x[40:] @ x[i])[-7:]
        assert mu[i] == pytest.approx(top.mean(), abs=1e-6)
        assert sd[i] == pytest.approx(top.std(), abs=1e-6)
    mu_self, _ = Cohort(x[:20], top_k=3).stats(x[:20], exclude_self=True)
    assert mu_self[0] == pytest.approx(np.sort(x[1:20] @ x[0])[-3:].mean(), abs=1e-6)
    z = as_norm(0.8, 0.5, 0.1, 0.3, 0.2)
    assert z == pytest.approx(0.5 * (3.0 + 2.5))
    with pytest.raises(ValueError, match="top_k"):
        Cohort(x[:5], top_k=9)


def test_identity_rules_naive(faces):
    x, labels = faces
    gal, probes = np.arange(0, 120, 2), np.arange(1, 120, 2)
    names, best = identity_scores(x[probes], x[gal], labels[gal], "best")
    s = x[probes] @ x[gal].T
    for j, n in enumerate(names):
        cols = labels[gal] == n
        np.testing.assert_allclose(best[:, j], s[:, cols].max(axis=1), atol=1e-6)
        _, mt = identity_scores(x[probes], x[gal], labels[gal], "mean_top", top=2)
        np.testing.assert_allclose(mt[:, j], np.sort(s[:, cols], axis=1)[:, -2:].mean(axis=1), atol=1e-6)
        t = x[gal][cols].sum(axis=0)
        _, tm = identity_scores(x[probes], x[gal], labels[gal], "template")
        np.testing.assert_allclose(tm[:, j], x[probes] @ (t / np.linalg.norm(t)), atol=1e-5)
    _, knn = identity_scores(x[probes], x[gal], labels[gal], "knn", k=3)
    for i in range(len(probes)):
        near = labels[gal][np.argsort(-s[i])[:3]]
        votes = {n: int((near == n).sum()) for n in names}
        top_votes = max(votes.values())
        for j, n in enumerate(names):
            want = best[i, j] if votes[n] == top_votes else best[i, j] - 1
            assert knn[i, j] == pytest.approx(want, abs=1e-6)
    with pytest.raises(ValueError, match="rule"):
        identity_scores(x[:2], x[2:4], labels[2:4], "vote")


def test_gate_trades_refusals_for_hits():
    """Low-quality probes cause the high stranger scores: a gate must win TPIR back."""
    rng = np.random.default_rng(0)
    n = 4000
    qn = rng.random(n)
    top = np.where(qn < 0.2, rng.normal(0.9, 0.05, n), rng.normal(0.5, 0.05, n))
    qm = rng.random(n)
    score = rng.normal(0.8, 0.05, n)
    rank = np.ones(n, int)
    g = fit_gate(top, qn, rank, score, qm, 0.01)
    assert g["no_gate"]["gate"] == 0 and g["no_gate"]["tpir"] < 0.2
    assert 0.15 <= g["gate"] <= 0.3 and g["tpir"] > 0.7 and g["fpir"] <= 0.01
    assert g["tpir"] == pytest.approx(np.mean((qm >= g["gate"]) & (score >= g["threshold"])))
    # quality unrelated to errors: no gate
    g2 = fit_gate(rng.normal(0.5, 0.05, n), qn, rank, score, qm, 0.01)
    assert g2["gate"] == 0
    buckets = rates_by_bucket(qn, top, qm, rank, score, 0.7)
    assert buckets[0]["fpir"] > 0.5 and buckets[-1]["fpir"] < 0.01
    assert sum(b["nonmated"] for b in buckets) == n


def test_face_quality_features(shared_data):
    from PIL import Image

    from faceidx.embedder.align import Aligner
    from faceidx.embedder.decode import load_image
    from faceidx.embedder.quality import face_quality, sharpness

    image = load_image(shared_data / "lfw-subset/Aaron_Eckhart/Aaron_Eckhart_0001.jpg")
    aligner = Aligner("hog")
    (chip,) = aligner(image)
    good = face_quality(chip, image.shape[:2])
    blurred = np.asarray(Image.fromarray(image).resize((62, 62)).resize((250, 250)))
    (bchip,) = aligner(blurred)
    bad = face_quality(bchip, blurred.shape[:2])
    assert sharpness(bchip.chip) < sharpness(chip.chip) / 3
    assert bad.sharpness < good.sharpness and bad.score < good.score
    small = np.full((1000, 1000, 3), 128, np.uint8)
    small[375:625, 375:625] = image
    (schip,) = aligner(small)
    assert face_quality(schip, small.shape[:2]).share < good.share
    assert 0 < good.score <= 1 and good.pose > 0.7
