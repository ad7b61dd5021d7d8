"""Calibration: open-set numbers vs naive computation, bad holdouts, the tail model, the file."""

from __future__ import annotations

import math

import numpy as np
import pytest

from faceidx.errors import DataError
from faceidx.io import EmbeddingBatch
from faceidx.query.calibfile import (
    CalibrationMismatchError,
    check_growth,
    load_calibration,
    save_calibration,
)
from faceidx.query.calibrate import (
    CalibrationError,
    CalibrationOptions,
    calibrate,
    enrolled_identities,
    verification_scores,
)
from faceidx.query.tail import ImpostorTail, fit_impostor_tail, growth_table

OPTS = CalibrationOptions(target_far=1e-3, target_fpir=2e-2)


def batch(x, labels, sources=None):
    return EmbeddingBatch(path=None, row_offset=0, embeddings=x,
                          identities=np.asarray(labels, dtype=object),
                          sources=None if sources is None else np.asarray(sources, dtype=object))


@pytest.fixture(scope="module")
def calibrated(small_index, reader):
    x, labels, g, src = (small_index[k] for k in ("x", "labels", "gallery", "sources"))
    return calibrate(reader, batch(x[~g], labels[~g], src[~g]), OPTS)


def test_verification_scores_naive():
    x = np.eye(4, dtype=np.float32)[[0, 0, 1, 2]]
    x[1] = [0.6, 0.8, 0, 0]
    g, i, possible = verification_scores(x, np.array(["a", "a", "b", "c"]), 10, 10)
    np.testing.assert_allclose(g, [0.6])
    assert possible == 5 and sorted(np.round(i, 3)) == [0, 0, 0, 0, 0.8]


def test_openset_numbers_match_naive(calibrated, small_index):
    cal, raw = calibrated
    x, labels, g = small_index["x"], small_index["labels"], small_index["gallery"]
    gx, gl = x[g], labels[g]
    enrolled = set(gl)
    names = sorted(enrolled)
    per_id = np.stack([(x[~g] @ gx[gl == n].T).max(axis=1) for n in names], axis=1)
    hl = labels[~g]
    mated = np.array([n in enrolled for n in hl])
    col = {n: j for j, n in enumerate(names)}
    mate = np.array([per_id[i, col[n]] if m else -np.inf for i, (n, m) in enumerate(zip(hl, mated, strict=True))])
    other = per_id.copy()
    for i, n in enumerate(hl):
        if n in col:
            other[i, col[n]] = -np.inf
    top_other = other.max(axis=1)
    rank1 = mate > top_other
    o = cal["openset"]
    assert o["gallery_identities"] == 200 and o["mated_searches"] == mated.sum()
    assert o["nonmated_searches"] == len(hl)          # strangers + mated with mate removed
    np.testing.assert_allclose(np.sort(raw["nonmated_top"]), np.sort(top_other), atol=1e-5)
    t = o["threshold"]
    assert o["fpir"] == pytest.approx(np.mean(top_other >= t)) and o["fpir"] <= OPTS.target_fpir
    assert np.mean(top_other >= np.nextafter(t, -1) - 1e-4) > OPTS.target_fpir * 0.5
    assert o["tpir"] == pytest.approx(np.mean(rank1[mated] & (mate[mated] >= t)))
    assert o["rank1"] == pytest.approx(np.mean(rank1[mated]))
    assert cal["threshold"]["value"] == t
    assert o["fpir_at_verification_threshold"] > o["fpir"]   # a 1:1 threshold is too low


def test_verification_block(calibrated):
    v = calibrated[0]["verification"]
    assert v["impostor_pairs"] >= 10_000 and v["far"] <= 1e-3
    assert 0 < v["eer"] < 0.5 and v["kfold"]["folds"] == 10
    assert 0.5 < v["kfold"]["accuracy"] <= 1


def test_gallery_entries_are_not_mated_probes(small_index, reader):
    x, labels, g, src = (small_index[k] for k in ("x", "labels", "gallery", "sources"))
    cal, _ = calibrate(reader, batch(x, labels, src), OPTS)    # holdout includes the gallery
    assert cal["openset"]["mated_searches"] == (np.isin(labels, labels[g]) & ~g).sum()
    assert any("gallery entries themselves" in w for w in cal["warnings"])


def test_bad_holdouts(small_index, reader):
    x, labels = small_index["x"], small_index["labels"]
    with pytest.raises(CalibrationError, match="1 identity"):
        calibrate(reader, batch(x[:4], labels[:4]), OPTS)
    g, src = small_index["gallery"], small_index["sources"]
    with pytest.raises(CalibrationError, match="gallery entry"):     # only gallery images
        calibrate(reader, batch(x[g], labels[g], src[g]), OPTS)
    few = np.isin(labels, np.unique(labels)[190:210])
    with pytest.raises(CalibrationError, match="non-mated searches cannot estimate"):
        calibrate(reader, batch(x[few], labels[few]), CalibrationOptions(target_far=0.01, target_fpir=1e-3))
    with pytest.raises(ValueError):
        calibrate(reader, batch(x, labels), CalibrationOptions(target_fpir=0))


def test_strangers_only_holdout(small_index, reader, calibrated):
    """Nobody enrolled: threshold from the strangers' non-mated searches, TPIR not measured."""
    x, labels, g = small_index["x"], small_index["labels"], small_index["gallery"]
    enrolled = set(labels[g])
    strangers = np.array([n not in enrolled for n in labels])
    cal, raw = calibrate(reader, batch(x[strangers], labels[strangers]), OPTS)
    o = cal["openset"]
    gx, gl = x[g], labels[g]
    top = np.stack([(x[strangers] @ gx[gl == n].T).max(axis=1) for n in sorted(enrolled)],
                   axis=1).max(axis=1)
    assert o["mated_searches"] == 0 and o["nonmated_searches"] == strangers.sum()
    np.testing.assert_allclose(np.sort(raw["nonmated_top"]), np.sort(top), atol=1e-5)
    assert o["fpir"] == pytest.approx(np.mean(top >= o["threshold"]))
    assert o["fpir"] <= OPTS.target_fpir
    assert cal["threshold"]["value"] == o["threshold"]
    assert o["tpir"] is None and o["rank1"] is None
    assert o["not_measured"] == ["tpir", "fnir", "cmc"]
    assert any("not measured" in w and "other photos" in w for w in cal["warnings"])
    assert cal["verification"]["genuine_pairs"] > 0          # 1:1 from the strangers' own pairs
    # the same strangers give the same threshold inside a mixed holdout's non-mated set
    assert abs(o["threshold"] - calibrated[0]["openset"]["threshold"]) < 0.1


def test_strangers_only_cli_then_query_auto(small_index, tmp_path):
    """End to end: calibrate on strangers through the CLI, then query --threshold auto."""
    import json
    import shutil

    from click.testing import CliRunner

    from faceidx.cli.main import cli
    from tests.query.conftest import write_collection

    x, labels, g, src = (small_index[k] for k in ("x", "labels", "gallery", "sources"))
    strangers = ~np.isin(labels, labels[g])
    write_collection(tmp_path / "strangers", x[strangers], labels[strangers], src[strangers])
    shutil.copytree(small_index["index"], tmp_path / "index")
    run = CliRunner().invoke
    r = run(cli, ["calibrate", str(tmp_path / "index"), "--holdout", str(tmp_path / "strangers"),
                  "--target-fpir", "0.02", "--plots", str(tmp_path / "plots")])
    assert r.exit_code == 0, r.output
    assert "not measured" in r.output and "other photos" in r.output
    assert (tmp_path / "plots" / "openset.png").stat().st_size > 1000
    cal = json.loads((tmp_path / "index" / "calibration.json").read_text())
    assert cal["openset"]["tpir"] is None
    mated = ~g & ~strangers
    write_collection(tmp_path / "probes", x[mated], labels[mated], src[mated])
    r = run(cli, ["query", str(tmp_path / "index"), str(tmp_path / "probes"), "--json"])
    assert r.exit_code == 0, r.output
    answers = [json.loads(ln) for ln in r.stdout.splitlines()]
    assert len(answers) == mated.sum()
    assert all(a["threshold"] == cal["threshold"]["value"] for a in answers)
    assert any(a["decision"] == a["truth"] for a in answers)
    r = run(cli, ["query", str(tmp_path / "index"), str(tmp_path / "strangers"), "--json"])
    accepted = [json.loads(ln)["decision"] != "unknown" for ln in r.stdout.splitlines()]
    assert len(accepted) == strangers.sum()
    assert np.mean(accepted) == pytest.approx(cal["openset"]["fpir"])   # the calibrated FPIR


def test_single_photo_strangers_calibrate_1_to_n_only(small_index, tmp_path):
    """One photo per holdout person (the usual public set of strangers): no 1:1 pairs, so
    verification is not measured (a warning says what would measure it), while the 1:N
    threshold comes from the non-mated searches as usual; plots and the report follow."""
    import json
    import shutil

    from click.testing import CliRunner

    from faceidx.cli.main import cli
    from tests.query.conftest import write_collection

    x, labels, g, src = (small_index[k] for k in ("x", "labels", "gallery", "sources"))
    strangers = np.flatnonzero(~np.isin(labels, labels[g]))
    _, first = np.unique(labels[strangers], return_index=True)
    one = strangers[first]                                        # one photo per stranger
    write_collection(tmp_path / "singles", x[one], labels[one], src[one])
    shutil.copytree(small_index["index"], tmp_path / "index")
    r = CliRunner().invoke(cli, ["calibrate", str(tmp_path / "index"), "--holdout",
                                 str(tmp_path / "singles"), "--target-fpir", "0.05",
                                 "--plots", str(tmp_path / "plots")])
    assert r.exit_code == 0, r.output
    assert "1:1 verification: not measured" in r.output and "second photo" in r.output
    cal = json.loads((tmp_path / "index" / "calibration.json").read_text())
    assert cal["verification"] is None and cal["openset"]["nonmated_searches"] == len(one)
    top = np.stack([(x[one] @ x[g][labels[g] == n].T).max(axis=1) for n in np.unique(labels[g])],
                   axis=1).max(axis=1)
    # naive float64 scores vs the index's float32 ones: one search may sit on the threshold
    naive = np.mean(top >= cal["threshold"]["value"])
    assert abs(cal["openset"]["fpir"] - naive) <= 1 / len(one) + 1e-9
    assert cal["openset"]["fpir"] <= 0.05
    assert sorted(p.name for p in (tmp_path / "plots").iterdir()) == ["openset.png", "scores.png"]


def test_few_pairs_warn_loudly(small_index, reader, caplog):
    x, labels = small_index["x"], small_index["labels"]
    some = np.isin(labels, np.unique(labels)[150:280])
    cal, _ = calibrate(reader, batch(x[some], labels[some]),
                       CalibrationOptions(target_far=1e-3, target_fpir=1e-2))
    assert any("non-mated searches back" in w for w in cal["warnings"])
    assert "ROUGH ESTIMATE" in caplog.text


def test_enrolled_identities(reader, small_index):
    assert enrolled_identities(reader) == set(small_index["labels"][small_index["gallery"]])


def test_tail_fit_recovers_exponential_and_extrapolates():
    rng = np.random.default_rng(0)
    n, searches = 2000, 3000
    # per-identity impostor scores ~ Gaussian; the top-50 of each search are what a list holds
    def lists(n_ids, m):
        u = rng.random((m, 50))
        # top-50 order statistics of n_ids iid N(0, .1): descending uniforms
        top = 1 - np.cumprod(u ** (1 / (n_ids - np.arange(50))), axis=1)
        from statistics import NormalDist
        inv = np.vectorize(NormalDist(0, 0.1).inv_cdf)
        return inv(1 - top)
    fit = fit_impostor_tail(list(lists(n, searches)), n)
    assert fit is not None and fit.rate_u == pytest.approx(0.5, abs=0.05)
    t = fit.threshold_for(0.01)
    big = lists(10 * n, searches)[:, 0]
    observed = np.mean(big >= t)
    modelled = fit.fpir(t, 10 * n)
    assert observed <= modelled <= 3 * observed    # conservative, not absurdly so
    rows = growth_table(fit, t, 0.01)
    assert [r["factor"] for r in rows] == [1, 10, 100]
    assert rows[0]["threshold_for_target"] < rows[1]["threshold_for_target"] < rows[2]["threshold_for_target"]
    assert rows[0]["fpir_at_threshold"] == pytest.approx(0.01)


def test_tail_model_algebra():
    tail = ImpostorTail(n_identities=100, searches=10, u=0.5, rate_u=0.5, sigma=0.05, exceedances=5)
    assert tail.expected_matches(0.5) == 0.5
    assert tail.fpir(0.55, 1000) == pytest.approx(1 - math.exp(-5 * math.exp(-1)))
    assert tail.fpir(tail.threshold_for(0.02, 5000), 5000) == pytest.approx(0.02)
    assert fit_impostor_tail([np.array([0.1])], 10) is None


def test_calibration_file(tmp_path, small_index, reader, calibrated):
    cal, _ = calibrated
    path = save_calibration(tmp_path, cal)
    assert load_calibration(tmp_path, reader.manifest)["threshold"] == cal["threshold"]
    other = dict(reader.manifest, trained_sha256="0" * 64)
    with pytest.raises(CalibrationMismatchError, match="another index"):
        load_calibration(tmp_path, other)
    assert check_growth(cal, reader.manifest) is None
    grown = dict(reader.manifest, num_identities=2000)
    msg = check_growth(cal, grown)
    assert "from 200 to 2000" in msg and "modelled FPIR" in msg
    path.write_text("{not json")
    with pytest.raises(CalibrationMismatchError):
        load_calibration(tmp_path, reader.manifest)
    with pytest.raises(DataError, match="no calibration.json"):
        load_calibration(tmp_path / "nowhere", reader.manifest)
