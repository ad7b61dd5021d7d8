"""`faceidx info`: describe a collection or an index directory."""

from __future__ import annotations

from pathlib import Path

import click

from faceidx.cli.options import echo_json, human_bytes, json_option, require_collection
from faceidx.io import open_collection

INDEX_MANIFEST = "manifest.json"


def describe_collection(path: Path, count_identities: bool = True) -> dict:
    """A JSON-able summary of the collection at `path`."""
    coll = open_collection(path)
    out = {
        "kind": "collection",
        "path": str(path),
        "rows": coll.num_rows,
        "dim": coll.dim,
        "model": coll.meta.model,
        "model_version": coll.meta.model_version,
        "dtype": coll.meta.dtype,
        "normalized": coll.meta.normalized,
        "shards": len(coll.shards),
        "bytes": coll.bytes,
        "has_manifest": coll.manifest is not None,
        "columns": coll.columns,
    }
    if count_identities:
        out["identities"] = coll.count_identities()
    return out


def calibration_state(index_dir: Path) -> dict:
    """calibrated (bool), threshold, target FPIR, N then and now, and a note when stale.

    A calibration.json that cannot be used (another index's, malformed) is reported, not
    raised: `info` describes what is there.
    """
    from faceidx.errors import DataError
    from faceidx.index.manifest import IndexManifest
    from faceidx.query.calibfile import (
        CALIBRATION_NAME,
        check_growth,
        gallery_size,
        load_calibration,
    )

    if not (index_dir / CALIBRATION_NAME).exists():
        return {"calibrated": False,
                "calibration": "none: run `faceidx calibrate` before `query --threshold auto`"}
    manifest = IndexManifest.load(index_dir).to_json()
    try:
        cal = load_calibration(index_dir, manifest)
    except DataError as err:
        return {"calibrated": False, "calibration": f"unusable: {err.reason}"}
    thr = cal["threshold"]
    then = cal.get("index", {}).get("identities", thr.get("gallery_identities"))
    now = gallery_size(manifest)["identities"]
    grown = check_growth(cal, manifest)
    return {"calibrated": True, "threshold": thr["value"], "target_fpir": thr.get("target_fpir"),
            "calibrated_identities": then, "grown_since_calibration": now > (then or 0),
            "calibration": grown or f"current: the gallery has the {now} identities it was "
                                    "calibrated at"}


@click.command()
@click.argument("path", type=click.Path(exists=True, path_type=Path))
@click.option("--verify", is_flag=True, help="Also check every shard's SHA-256 checksum.")
@json_option
def info(path: Path, verify: bool, as_json: bool) -> None:
    """Describe a collection (rows, identities, D, model, shards, bytes) or an index.

    \b
    Example:
      faceidx info faces/
      faceidx info faces/ --json
    """
    if path.is_dir() and (path / INDEX_MANIFEST).exists():
        from faceidx.index.describe import describe_index

        summary = describe_index(path)
        summary.update(calibration_state(path))
    else:
        require_collection(path, "info")
        summary = describe_collection(path)
        if verify:
            open_collection(path).verify()
            summary["verified"] = True
    if as_json:
        echo_json(summary)
        return
    width = max(14, *(len(k) for k in summary))
    for key, value in summary.items():
        if key == "bytes":
            value = f"{value} ({human_bytes(value)})"
        elif isinstance(value, (list, dict)):
            value = ", ".join(map(str, value)) if isinstance(value, list) else value
        click.echo(f"{key:>{width}}: {value}")
