"""score="template": listed people re-scored against their normalised mean face, checked
against a naive loop, in identify, calibrate, the gallery and the CLI."""

from __future__ import annotations

import shutil

import numpy as np
import pytest
from click.testing import CliRunner

from faceidx.cli.main import cli
from faceidx.gallery import open_gallery
from faceidx.gallery.templates import templates_for
from faceidx.io import EmbeddingBatch
from faceidx.query import metrics as M
from faceidx.query.calibfile import CalibrationMismatchError, save_calibration
from faceidx.query.calibrate import CalibrationOptions, calibrate
from faceidx.query.identify import identify

OPTS = CalibrationOptions(target_far=1e-3, target_fpir=2e-2, score="template")


def naive_template(x, labels, g, name):
    t = x[g][labels[g] == name].astype(np.float64).sum(axis=0)
    return t / np.linalg.norm(t)


def unit(x):
    return (x / np.linalg.norm(x, axis=1, keepdims=True)).astype(np.float32)


def test_identify_template_matches_naive_loop(small_index, reader):
    x, labels, g = small_index["x"], small_index["labels"], small_index["gallery"]
    q = unit(x[~g][:40])
    best = identify(reader, q, k=5)
    tmpl = identify(reader, q, k=5, score="template", templates_of=templates_for(reader))
    changed = 0
    for b, t, row in zip(best, tmpl, q, strict=True):
        listed = [c.identity for c in b.candidates]
        want = sorted(((float(row @ naive_template(x, labels, g, n)), n) for n in listed),
                      key=lambda s: -s[0])
        assert [c.identity for c in t.candidates] == [n for _, n in want]
        np.testing.assert_allclose([c.score for c in t.candidates], [s for s, _ in want], atol=1e-5)
        changed += [c.identity for c in t.candidates] != listed
    assert changed > 0   # the template re-orders some lists (two faces per person here)


def test_template_needs_templates(reader):
    with pytest.raises(ValueError, match="templates_of"):
        identify(reader, np.ones((1, 32), np.float32), score="template")
    with pytest.raises(ValueError, match="score must be"):
        identify(reader, np.ones((1, 32), np.float32), score="mean")


def test_calibrate_on_template_scores_matches_naive(small_index, reader):
    x, labels, g, src = (small_index[k] for k in ("x", "labels", "gallery", "sources"))
    hold = EmbeddingBatch(path=None, row_offset=0, embeddings=x[~g],
                          identities=np.asarray(labels[~g], object), sources=np.asarray(src[~g], object))
    cal, raw = calibrate(reader, hold, OPTS, templates_of=templates_for(reader))
    assert cal["threshold"]["score"] == "template"
    q = unit(x[~g])
    best = identify(reader, q, k=20)      # the listed people: the best-face search's
    tops = []
    for row, res, name in zip(q, best, labels[~g], strict=True):
        others = [c.identity for c in res.candidates if c.identity != name]
        tops.append(max(float(row @ naive_template(x, labels, g, n)) for n in others))
    np.testing.assert_allclose(np.sort(raw["nonmated_top"]), np.sort(tops), atol=1e-5)
    assert cal["threshold"]["value"] == pytest.approx(M.threshold_at_fpir(np.array(tops), 2e-2), abs=1e-5)


@pytest.fixture(scope="module")
def template_index(small_index, reader, tmp_path_factory):
    d = tmp_path_factory.mktemp("template") / "index"
    shutil.copytree(small_index["index"], d)
    x, labels, g, src = (small_index[k] for k in ("x", "labels", "gallery", "sources"))
    hold = EmbeddingBatch(path=None, row_offset=0, embeddings=x[~g],
                          identities=np.asarray(labels[~g], object), sources=np.asarray(src[~g], object))
    cal, _ = calibrate(reader, hold, OPTS, templates_of=templates_for(reader))
    save_calibration(d, cal)
    return d


def test_gallery_refuses_auto_threshold_of_other_score(template_index, small_index):
    x, g = small_index["x"], small_index["gallery"]
    gal = open_gallery(template_index, score="template")
    res = gal.identify(x[~g][:3], k=3)
    assert res[0].threshold == pytest.approx(gal.threshold_for(None).value)
    assert gal.threshold_for(None).fpir is not None
    best = open_gallery(template_index)            # score="best", threshold "auto"
    with pytest.raises(CalibrationMismatchError, match="--score template"):
        best.identify(x[~g][:1])
    assert best.threshold_for(0.5).fpir is None     # a number still works; no FPIR claimed


def test_cli_calibrate_and_query_template(template_index, small_index, tmp_path):
    d = tmp_path / "index"
    shutil.copytree(template_index, d)
    (d / "calibration.json").unlink()
    r = CliRunner().invoke(cli, ["calibrate", str(d), "--holdout", str(small_index["holdout"]),
                                 "--target-fpir", "0.02", "--score", "template"])
    assert r.exit_code == 0, r.output
    assert "template scores" in r.output
    probes = small_index["holdout"]
    r = CliRunner().invoke(cli, ["query", str(d), str(probes), "--score", "template", "--json"])
    assert r.exit_code == 0, r.output
    r = CliRunner().invoke(cli, ["query", str(d), str(probes)])
    assert r.exit_code != 0 and "--score template" in r.output


def test_template_counts_delta_faces(small_index, reader):
    from faceidx.gallery.layered import Delta, LayeredIndex

    x, labels, g = small_index["x"], small_index["labels"], small_index["gallery"]
    name = labels[g][0]
    extra = unit(x[~g][labels[~g] == name][:1])
    view = LayeredIndex(reader, Delta.empty(32).add(extra, [name], ["new.jpg"], [10**9]))
    t = templates_for(view)([name])[name]
    want = unit(x[g][labels[g] == name]).astype(np.float64).sum(axis=0) + extra[0]
    np.testing.assert_allclose(t, want / np.linalg.norm(want), atol=1e-5)
