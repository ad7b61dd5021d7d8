"""The probe quality gate end to end: calibrate fits it from a holdout's quality column,
query/gallery answer low_quality below it, a gate of 0 and collections without the column
change nothing."""

from __future__ import annotations

import json
import shutil

import numpy as np
import pyarrow as pa
import pytest
from click.testing import CliRunner

from faceidx.cli.main import cli
from faceidx.gallery import open_gallery
from faceidx.io import CollectionWriter, EmbeddingBatch
from faceidx.query.calibfile import load_calibration, save_calibration
from faceidx.query.calibrate import CalibrationOptions, calibrate
from faceidx.query.identify import LOW_QUALITY
from faceidx.query.quality_gate import gate_results
from tests.query.conftest import META

OPTS = CalibrationOptions(target_far=1e-3, target_fpir=2e-2)
QUALITY = (pa.field("quality", pa.float32()),)


def planted(small_index, n_bad=40, seed=3):
    """The holdout, plus `n_bad` low-quality strangers that look like enrolled people
    (a gallery face + a little noise): they raise the ungated threshold."""
    x, labels, g, src = (small_index[k] for k in ("x", "labels", "gallery", "sources"))
    rng = np.random.default_rng(seed)
    base = x[g][rng.choice(int(g.sum()), n_bad, replace=False)]
    bad = base + rng.normal(0, 0.02, base.shape).astype(np.float32)
    bad /= np.linalg.norm(bad, axis=1, keepdims=True)
    hx = np.concatenate([x[~g], bad]).astype(np.float32)
    hl = np.concatenate([labels[~g], [f"stranger_{i}" for i in range(n_bad)]]).astype(object)
    hs = np.concatenate([src[~g], [f"bad/{i}.jpg" for i in range(n_bad)]]).astype(object)
    q = np.concatenate([rng.uniform(0.5, 1.0, (~g).sum()), np.full(n_bad, 0.1)]).astype(np.float32)
    return hx, hl, hs, q


def test_calibrate_fits_gate_from_planted_low_quality(small_index, reader):
    hx, hl, hs, q = planted(small_index)
    hold = EmbeddingBatch(path=None, row_offset=0, embeddings=hx, identities=hl, sources=hs,
                          extra={"quality": q})
    cal, _ = calibrate(reader, hold, OPTS)
    gate = cal["quality"]["gate"]
    assert 0.1 < gate["gate"] <= 0.6   # the lowest candidate above the planted 0.1s
    assert gate["threshold"] < cal["quality"]["no_gate"]["threshold"]
    assert gate["tpir"] > cal["quality"]["no_gate"]["tpir"]
    assert cal["threshold"]["quality_gate"] == gate["gate"]
    assert cal["threshold"]["value"] == gate["threshold"]
    low = cal["quality"]["buckets"][0]
    assert low["quality"] == [0.0, 0.25] and low["nonmated"] >= 40 and low["fpir"] > 0.5
    plain, _ = calibrate(reader, EmbeddingBatch(path=None, row_offset=0, embeddings=hx,
                                                identities=hl, sources=hs), OPTS)
    assert "quality" not in plain and "quality_gate" not in plain["threshold"]


@pytest.fixture(scope="module")
def gated_index(small_index, reader, tmp_path_factory):
    d = tmp_path_factory.mktemp("gate") / "index"
    shutil.copytree(small_index["index"], d)
    hx, hl, hs, q = planted(small_index)
    with CollectionWriter(d.parent / "holdout", META, extra_fields=QUALITY) as w:
        w.write(hx, identities=list(hl), sources=list(hs), extra={"quality": q})
    return d


def test_gallery_low_quality_below_gate_and_gate_zero_changes_nothing(gated_index, small_index, reader):
    x, g = small_index["x"], small_index["gallery"]
    hx, hl, hs, q = planted(small_index)
    cal, _ = calibrate(reader, EmbeddingBatch(path=None, row_offset=0, embeddings=hx,
                                              identities=hl, sources=hs, extra={"quality": q}), OPTS)
    save_calibration(gated_index, cal)
    gal = open_gallery(gated_index)
    probes = x[g][:4]                                  # gallery faces: answered with a name
    res = gal.identify(probes, k=3, quality=[0.05, 0.9, np.nan, 0.05])
    assert [r.status for r in res] == [LOW_QUALITY, "known", "known", LOW_QUALITY]
    assert res[0].decision is None and res[0].to_json()["decision"] is None
    assert res[0].to_json()["quality"] == 0.05 and "quality" not in res[2].to_json()
    assert [r.decision for r in gal.identify(probes, k=3)] == [r.decision for r in
                                                               gal.identify(probes, k=3, quality=[0.9] * 4)]
    # a gate of 0 changes nothing, whatever the quality
    plain = gal.identify(probes, k=3)
    zero = gal.identify(probes, k=3)
    gate_results(zero, [0.0, 0.01, 0.02, 0.03], 0.0)
    assert [(r.status, r.decision) for r in zero] == [(r.status, r.decision) for r in plain]


def test_cli_calibrate_reports_buckets_and_query_gates(gated_index, small_index, tmp_path):
    d = tmp_path / "index"
    shutil.copytree(gated_index, d)
    (d / "calibration.json").unlink(missing_ok=True)
    r = CliRunner().invoke(cli, ["calibrate", str(d), "--holdout", str(gated_index.parent / "holdout"),
                                 "--target-fpir", "0.02"])
    assert r.exit_code == 0, r.output
    assert "quality gate" in r.output and "quality 0.00-0.25" in r.output
    gate = load_calibration(d, json.loads((d / "manifest.json").read_text()))["threshold"]["quality_gate"]
    assert gate > 0.1
    x, labels, g = small_index["x"], small_index["labels"], small_index["gallery"]
    with CollectionWriter(tmp_path / "probes", META, extra_fields=QUALITY) as w:
        w.write(x[g][:2], identities=list(labels[g][:2]), sources=["a.jpg", "b.jpg"],
                extra={"quality": np.array([0.05, 0.95], np.float32)})
    r = CliRunner().invoke(cli, ["query", str(d), str(tmp_path / "probes"), "--json"])
    assert r.exit_code == 0, r.output
    rows = [json.loads(line) for line in r.output.splitlines() if line.startswith("{\"probe")]
    assert [row["status"] for row in rows] == [LOW_QUALITY, "known"]
    r = CliRunner().invoke(cli, ["query", str(d), str(tmp_path / "probes")])
    assert r.exit_code == 0 and "1 answered with a name, 0 unknown, 1 low_quality" in r.output, r.output
    # probes without the quality column (old collections) are not gated
    r = CliRunner().invoke(cli, ["query", str(d), str(small_index["holdout"]), "--json"])
    assert r.exit_code == 0
    rows = [json.loads(line) for line in r.output.splitlines() if line.startswith("{\"probe")]
    assert len(rows) == 1200 and all(row["status"] != LOW_QUALITY for row in rows)
