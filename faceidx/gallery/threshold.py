"""Thresholds of a gallery: the 1:N decision threshold ("auto" reads calibration.json),
the calibrated FPIR at a threshold for the gallery's size now, and the 1:1 threshold.

    thr = resolve_threshold("faces.index", reader.manifest, "auto")
    thr.value, thr.origin, thr.fpir        # 0.93, 'calibration.json (FPIR 0.01 at N=200)', 0.01
"""

from __future__ import annotations

import logging
import os
from dataclasses import dataclass, field

from faceidx.errors import DataError

log = logging.getLogger(__name__)

AUTO = "auto"


@dataclass(frozen=True)
class Threshold:
    """A decision threshold with where it came from and what it means for this gallery.

    fpir: the calibrated false positive identification rate at `value` for the gallery's
    identities now (from the fitted impostor tail, or the measured rate at the calibrated
    threshold); None when there is no calibration to say it.
    """

    value: float
    origin: str
    fpir: float | None = None
    warnings: tuple[str, ...] = field(default=())
    quality_gate: float = 0.0   # probes with a quality below it answer low_quality (auto only)


def parse_threshold(value: str | float | None) -> float | None:
    """'auto' or None -> None (read calibration.json); a float in [-1, 1] otherwise.

    Raises ValueError naming the value when it is neither.
    """
    if value is None or (isinstance(value, str) and value.strip().lower() == AUTO):
        return None
    try:
        t = float(value)
    except (TypeError, ValueError) as err:
        raise ValueError(f"{value!r} is neither 'auto' nor a number") from err
    if not -1.0 <= t <= 1.0:
        raise ValueError(f"{t} is outside the cosine score range [-1, 1]")
    return t


def load_calibration_or_none(index_dir: str | os.PathLike, manifest: dict) -> dict | None:
    """calibration.json checked for this index, or None when there is none."""
    from faceidx.query.calibfile import CALIBRATION_NAME, load_calibration

    if not os.path.exists(os.path.join(index_dir, CALIBRATION_NAME)):
        return None
    return load_calibration(index_dir, manifest)


def calibrated_score(calibration: dict | None) -> str:
    """The score ("best" or "template") a calibration was made on; "best" before it said."""
    return str(((calibration or {}).get("threshold") or {}).get("score", "best"))


def fpir_at(calibration: dict | None, threshold: float, identities: int,
            score: str = "best") -> float | None:
    """Calibrated FPIR at `threshold` for a gallery of `identities` people, or None (also
    when the calibration was made on another score)."""
    if not calibration or calibrated_score(calibration) != score:
        return None
    oset = calibration.get("openset", {})
    ext = oset.get("extrapolation") or {}
    if ext.get("tail"):
        from faceidx.query.tail import ImpostorTail

        return float(ImpostorTail(**ext["tail"]).fpir(threshold, max(identities, 1)))
    cal_thr = calibration.get("threshold", {})
    if threshold == cal_thr.get("value") and identities == cal_thr.get("gallery_identities"):
        return oset.get("fpir")
    return None


def resolve_threshold(index_dir: str | os.PathLike, manifest: dict, threshold: str | float | None,
                      calibration: dict | None = None, score: str = "best") -> Threshold:
    """The threshold to decide with: a number as given, or "auto" from calibration.json.

    "auto" without calibration.json raises DataError saying to calibrate; a calibration of
    another index raises CalibrationMismatchError; a gallery grown since calibration adds a
    warning (logged and returned).
    """
    from faceidx.query.calibfile import check_growth, gallery_size, load_calibration

    t = parse_threshold(threshold)
    identities = gallery_size(manifest)["identities"]
    if calibration is None:
        calibration = load_calibration_or_none(index_dir, manifest)
    if t is not None:
        return Threshold(t, "--threshold", fpir_at(calibration, t, identities, score))
    if calibration is None:
        calibration = load_calibration(index_dir, manifest)  # raises: says to calibrate
    if calibrated_score(calibration) != score:
        from faceidx.query.calibfile import CalibrationMismatchError

        raise CalibrationMismatchError(
            f"calibration.json was made on {calibrated_score(calibration)!r} scores but this "
            f"query decides on {score!r} scores: run `faceidx calibrate --score {score}`, "
            f"or query with --score {calibrated_score(calibration)}", index_dir)
    warnings = []
    warning = check_growth(calibration, manifest)
    if warning:
        log.info("%s", warning)   # returned too: the caller shows it once
        warnings.append(warning)
    c = calibration["threshold"]
    value = float(c["value"])
    return Threshold(value, f"calibration.json (FPIR {c['target_fpir']:g} at N={c['gallery_identities']})",
                     fpir_at(calibration, value, identities, score), tuple(warnings),
                     float(c.get("quality_gate") or 0.0))


def verification_threshold(calibration: dict | None, index_dir=None) -> tuple[float, float]:
    """(1:1 threshold, its target FAR) from calibration.json; DataError when uncalibrated."""
    v = (calibration or {}).get("verification") or {}
    if not isinstance(v.get("threshold"), (int, float)):
        raise DataError("no calibrated 1:1 threshold: run `faceidx calibrate` on this index, "
                        "or give a threshold", index_dir)
    return float(v["threshold"]), float(v.get("target_far", float("nan")))
