"""calibration.json in an index directory: written by calibrate, read by query.

It records which index it calibrated (an id derived from the trained quantizer, the
first shard's checksums, the factory string and the model, so it survives `faceidx add`
but not a rebuild) and the gallery size N at calibration. Loading it for another index is
refused; loading it after the gallery grew gives a warning (see `check_growth`).
"""

from __future__ import annotations

import hashlib
import json
import logging
import math
import os
from pathlib import Path

from faceidx.errors import DataError
from faceidx.io.atomic import read_format_json, write_json_atomic

log = logging.getLogger(__name__)

CALIBRATION_NAME = "calibration.json"
FORMAT_NAME = "faceidx-calibration"
FORMAT_VERSION = 1


class CalibrationMismatchError(DataError):
    """A calibration file that belongs to another index (or is unusable)."""


def index_id(manifest: dict) -> str:
    """A stable id of an index: its trained quantizer, factory string, model and first
    shard's checksums (unchanged by `faceidx add`, changed by any rebuild of other data)."""
    if manifest.get("index_id"):
        return str(manifest["index_id"])
    meta = manifest.get("meta", {})
    shards = manifest.get("shards") or [{}]
    key = json.dumps({"trained": manifest.get("trained_sha256", ""),
                      "first_shard": shards[0].get("sha256", {}),
                      "factory": manifest.get("factory", ""),
                      "dim": manifest.get("dim"),
                      "model": meta.get("model"), "model_version": meta.get("model_version")},
                     sort_keys=True)
    return hashlib.sha256(key.encode()).hexdigest()[:16]


def gallery_size(manifest: dict) -> dict:
    """{"identities": N, "faces": rows} as the manifest states them now (erased faces out)."""
    return {"identities": int(manifest.get("num_identities", 0)),
            "faces": int(manifest.get("live_rows", manifest.get("rows", 0)))}


def save_calibration(index_dir: str | os.PathLike, calibration: dict) -> Path:
    """Write calibration.json atomically into `index_dir`; returns its path."""
    path = Path(index_dir) / CALIBRATION_NAME
    write_json_atomic(path, {"format": FORMAT_NAME, "format_version": FORMAT_VERSION,
                             **calibration})
    return path


def load_calibration(index_dir: str | os.PathLike, manifest: dict) -> dict:
    """Read calibration.json and check that it belongs to this index.

    Raises DataError when there is none, CalibrationMismatchError when it was made for
    another index or is malformed. Warns (logging) when the gallery has grown since.
    """
    path = Path(index_dir) / CALIBRATION_NAME
    if not path.exists():
        raise DataError("no calibration.json: run `faceidx calibrate` on this index first, "
                        "or give --threshold FLOAT", index_dir)
    obj = read_format_json(path, FORMAT_NAME, FORMAT_VERSION, error=CalibrationMismatchError)
    if not isinstance(obj.get("index"), dict):
        raise CalibrationMismatchError("index must be an object naming the index calibrated",
                                       path)
    want = index_id(manifest)
    got = obj.get("index", {}).get("id")
    if got != want:
        raise CalibrationMismatchError(
            f"calibration was made for another index (id {got}, this index is {want}); "
            "run `faceidx calibrate` on this index", path)
    validate_calibration(obj, path)
    return obj


def _number(obj, key: str, lo: float, hi: float, path, where: str, integer: bool = False,
            required: bool = True, open_low: bool = False):
    if not required and key not in obj:
        return None
    value = obj.get(key)
    ok = isinstance(value, int) if integer else isinstance(value, (int, float))
    if (not ok or isinstance(value, bool) or not math.isfinite(value) or not lo <= value <= hi
            or (open_low and value == lo)):
        raise CalibrationMismatchError(
            f"{where}{key} is {value!r}: expected {'an integer' if integer else 'a number'} in "
            f"{'(' if open_low else '['}{lo:g}, {hi:g}]; run `faceidx calibrate` again", path)
    return value


def validate_calibration(obj: dict, path) -> None:
    """Types and ranges of every value query reads from calibration.json; a bad one is a
    CalibrationMismatchError naming the key (never a value used as it is)."""
    big = float(2 ** 62)
    thr = obj.get("threshold")
    if not isinstance(thr, dict):
        raise CalibrationMismatchError("threshold is missing", path)
    _number(thr, "value", -1.0, 1.0, path, "threshold.")
    _number(thr, "target_fpir", 0.0, 1.0, path, "threshold.", open_low=True)
    _number(thr, "gallery_identities", 0, big, path, "threshold.", integer=True)
    _number(thr, "quality_gate", 0.0, 1.0, path, "threshold.", required=False)
    index = obj.get("index", {})
    if not isinstance(index, dict):
        raise CalibrationMismatchError("index must be an object", path)
    _number(index, "identities", 0, big, path, "index.", integer=True, required=False)
    ver = obj.get("verification")
    if ver is not None:
        if not isinstance(ver, dict):
            raise CalibrationMismatchError("verification must be an object", path)
        _number(ver, "threshold", -1.0, 1.0, path, "verification.", required=False)
        _number(ver, "target_far", 0.0, 1.0, path, "verification.", required=False)
    oset = obj.get("openset", {})
    if not isinstance(oset, dict):
        raise CalibrationMismatchError("openset must be an object", path)
    _number(oset, "fpir", 0.0, 1.0, path, "openset.", required=False)
    ext = oset.get("extrapolation") or {}
    if not isinstance(ext, dict):
        raise CalibrationMismatchError("openset.extrapolation must be an object", path)
    tail = ext.get("tail")
    if tail is not None:
        from faceidx.query.tail import ImpostorTail

        where = "openset.extrapolation.tail."
        if not isinstance(tail, dict) or set(tail) - set(ImpostorTail.__dataclass_fields__):
            raise CalibrationMismatchError(f"{where[:-1]} has unknown fields", path)
        _number(tail, "n_identities", 1, big, path, where, integer=True)
        _number(tail, "searches", 0, big, path, where, integer=True)
        _number(tail, "exceedances", 0, big, path, where, integer=True)
        _number(tail, "u", -1.0, 1.0, path, where)
        _number(tail, "rate_u", 0.0, big, path, where)
        _number(tail, "sigma", 0.0, big, path, where, open_low=True)


def check_growth(calibration: dict, manifest: dict) -> str | None:
    """A warning text when the gallery has more identities than at calibration, else None."""
    then = calibration.get("index", {}).get("identities", 0)
    now = gallery_size(manifest)["identities"]
    if now <= then:
        return None
    msg = (f"the gallery has grown from {then} to {now} identities since calibration: "
           f"the threshold was set for {then} and now accepts more strangers; "
           "re-run `faceidx calibrate`")
    ext = calibration.get("openset", {}).get("extrapolation")
    if ext and ext.get("tail"):
        from faceidx.query.tail import ImpostorTail

        tail = ImpostorTail(**ext["tail"])
        thr = calibration["threshold"]["value"]
        msg += f" (modelled FPIR now {tail.fpir(thr, now):.2%})"
    return msg
