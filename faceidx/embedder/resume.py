"""What a previous embed run left in its output folder, and whether a rerun may continue it.

    old = old_settings(out)                       # embed.json, or None
    check_settings(out, old, settings, {"identity_regex"})
    done, partial, labels = done_sources(out)     # rows per stored source, last one, identities
    check_labels(out, items, labels, stored)      # no image silently keeps a stale identity
    failed = failed_sources(out / FAILURES_NAME)

A rerun resumes only when nothing that shaped the vectors or the labels changed; otherwise
the DataError says what differs and how to start over (faceidx/embedder/pipeline.py's
plan_embed is the one caller).
"""

from __future__ import annotations

import collections
import json
import os
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from faceidx.embedder.sources import SourceItem
from faceidx.errors import DataError
from faceidx.io import open_collection

FAILURES_NAME = "failures.jsonl"
SETTINGS_NAME = "embed.json"


def read_failures(path: str | os.PathLike) -> list[dict]:
    """The rows of a failures.jsonl (lines cut short by a kill are ignored)."""
    path = Path(path)
    if not path.exists():
        return []
    rows = []
    with open(path, encoding="utf-8") as fh:
        for line in fh:
            try:
                row = json.loads(line)
            except json.JSONDecodeError:
                continue
            if isinstance(row, dict) and "path" in row:
                rows.append(row)
    return rows


def failed_sources(path: Path) -> set[str]:
    return {row["path"] for row in read_failures(path)}


def done_sources(out: Path) -> tuple[dict[str, int], str | None, dict[str, str | None]]:
    """Rows per source in the finished shards, the source of the last row, and the
    identity each source was written with."""
    collection = open_collection(out, allow_incomplete=True)
    counts: dict[str, int] = collections.Counter()
    labels: dict[str, str | None] = {}
    last, last_fid = None, -1
    for batch in collection.iter_batches(columns=["face_id", "identity", "source"], validate=False):
        counts.update(batch.sources.tolist())
        labels.update(zip(batch.sources.tolist(), batch.identities.tolist(), strict=True))
        if len(batch):
            i = int(np.argmax(batch.face_ids))
            if batch.face_ids[i] > last_fid:
                last, last_fid = batch.sources[i], int(batch.face_ids[i])
    return dict(counts), last, labels


def _start_over(out: Path) -> str:
    return (f"a rerun only adds the images not embedded yet. To embed again with the new "
            f"options, use another --out, or delete the old output first (rm -r {out})")


def old_settings(out: Path) -> dict | None:
    """The previous run's embed.json, or None when there was none."""
    path = out / SETTINGS_NAME
    if not path.exists():
        return None
    try:
        old = json.loads(path.read_text())
    except (OSError, ValueError) as err:
        raise DataError(f"cannot read the previous run's settings: {err}", path) from err
    if not isinstance(old, dict):
        raise DataError("the previous run's settings are not a JSON object", path)
    return old


def check_settings(out: Path, old: dict | None, settings: dict, labelling: set) -> None:
    if old is None:
        return
    path = out / SETTINGS_NAME
    # labelling keys missing from an older embed.json were not recorded: not a difference
    changed = {k: (old.get(k), v) for k, v in settings.items()
               if old.get(k) != v and not (k in labelling and k not in old) and k != "sources"}
    if changed:
        diff = ", ".join(f"{k} {a!r} -> {b!r}" for k, (a, b) in changed.items())
        raise DataError(f"this collection was embedded with other settings ({diff}); "
                        + _start_over(out), path)


def check_labels(out: Path, items: Sequence[SourceItem], labels: dict[str, str | None],
                  stored: dict[str, str]) -> None:
    """Refuse a rerun that would keep faces under identities the new listing changes."""
    if not labels:
        return
    changed = [(it.path, labels[stored[it.path]], it.identity) for it in items
               if stored[it.path] in labels and labels[stored[it.path]] != it.identity]
    if changed:
        shown = "; ".join(f"{Path(p).name}: {a!r} -> {b!r}" for p, a, b in changed[:3])
        more = f" and {len(changed) - 3} more" if len(changed) > 3 else ""
        raise DataError(f"{len(changed)} image(s) already embedded here would get another "
                        f"identity now ({shown}{more}); their stored labels would stay stale: "
                        + _start_over(out), out)
