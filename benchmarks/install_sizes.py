"""Disk taken by faceidx's core install and by each extra, measured in an installed venv.

    python benchmarks/install_sizes.py            # in the venv of `make install`

For the core and each extra of setup.cfg, the requirement closure (every distribution it
pulls in, markers evaluated for this interpreter) is resolved from the installed
distributions' metadata, and the bytes of their installed files (RECORD) are summed.
An extra's figure counts only what it adds on top of the core (shared dependencies once).
Prints one JSON line per install. Distributions missing from the venv are listed.
"""

from __future__ import annotations

import configparser
import json
import re
from importlib import metadata
from pathlib import Path

from packaging.requirements import Requirement

ROOT = Path(__file__).resolve().parents[1]


def dist_bytes(dist: metadata.Distribution) -> int:
    total = 0
    for f in dist.files or ():
        p = Path(dist.locate_file(f))
        if p.is_file():
            total += p.stat().st_size
    return total


def canonical(name: str) -> str:
    return re.sub(r"[-_.]+", "-", name).lower()


def closure(reqs: list[str], missing: set[str]) -> set[str]:
    """Names of every installed distribution `reqs` pull in (with their own extras)."""
    seen: set[str] = set()
    todo = [(Requirement(r), "") for r in reqs]
    while todo:
        req, extra = todo.pop()
        if req.marker is not None and not req.marker.evaluate({"extra": extra}):
            continue
        name = canonical(req.name)
        try:
            dist = metadata.distribution(req.name)
        except metadata.PackageNotFoundError:
            missing.add(name)
            continue
        key = (name, tuple(sorted(req.extras)))
        if key in seen:
            continue
        seen.add(key)
        for sub in dist.requires or ():
            r = Requirement(sub)
            if r.marker is None or r.marker.evaluate({"extra": ""}):
                todo.append((r, ""))
            else:
                for e in req.extras:
                    if r.marker.evaluate({"extra": e}):
                        todo.append((r, e))
    return {name for name, _ in seen}


def main() -> None:
    cfg = configparser.ConfigParser()
    cfg.read(ROOT / "setup.cfg")
    lines = lambda text: [ln.strip() for ln in text.splitlines()  # noqa: E731
                          if ln.strip() and not ln.strip().startswith("#")]
    core_reqs = lines(cfg["options"]["install_requires"])
    missing: set[str] = set()
    core = closure(core_reqs, missing)
    sizes = {n: dist_bytes(metadata.distribution(n)) for n in core}
    print(json.dumps({"install": "core", "distributions": len(core),
                      "mib": round(sum(sizes.values()) / 2**20, 1),
                      "largest": sorted(sizes, key=sizes.get, reverse=True)[:5]}))
    for extra, text in cfg["options.extras_require"].items():
        miss: set[str] = set()
        names = closure(lines(text), miss) - core
        sz = {n: dist_bytes(metadata.distribution(n)) for n in names}
        print(json.dumps({"install": f"faceidx[{extra}]", "adds_distributions": len(names),
                          "adds_mib": round(sum(sz.values()) / 2**20, 1),
                          "largest": {n: round(sz[n] / 2**20, 1)
                                      for n in sorted(sz, key=sz.get, reverse=True)[:4]},
                          "not_installed_here": sorted(miss)}))


if __name__ == "__main__":
    main()
