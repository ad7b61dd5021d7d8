"""Data preparation for scripts/demo.sh: who is enrolled, who is held out, who is probed.

    python scripts/demo_data.py select LFW_DIR --out OUT    # OUT/select.csv + OUT/probes/<Name>/
    python scripts/demo_data.py split COLLECTION --out OUT  # OUT/gallery, OUT/holdout (+ OUT/probes.parquet)

select (real faces, identity-per-folder tree): of the people with >= 2 images, --enrolled
get their first image into the gallery and their next images (up to --per-person in all)
into the holdout as mated searches; --others more such people and --singletons people
with one image go to the holdout as strangers. Probes for the final query (never seen
by gallery or holdout) are the last image of a few enrolled people and a few unseen
singletons, linked under OUT/probes/<Name>/ so the query knows the truth.

split: turns an embedded collection into gallery and holdout collections with the same
rules, taking roles from OUT/roles.json (select) or, for synthetic collections, from the
identity order (first --enrolled people enrolled; some images kept as probes).
"""

from __future__ import annotations

import argparse
import csv
import json
import os
import sys
from pathlib import Path

import numpy as np

from faceidx.io import CollectionWriter, open_collection
from faceidx.query.pairs import tree_labels


def select(args) -> None:
    labels, paths = tree_labels(args.tree)
    people: dict[str, list[Path]] = {}
    for name, p in zip(labels, paths, strict=True):
        people.setdefault(name, []).append(p)
    rng = np.random.default_rng(args.seed)
    multi = sorted(n for n, v in people.items() if len(v) >= 2)
    single = sorted(n for n, v in people.items() if len(v) == 1)
    multi = list(rng.permutation(multi))
    single = list(rng.permutation(single))
    enrolled, others = multi[: args.enrolled], multi[args.enrolled: args.enrolled + args.others]
    strangers = single[: args.singletons]
    unseen = single[args.singletons: args.singletons + args.probes]
    roles, rows, probes = {}, [], []
    kept = 0
    for n in enrolled:
        imgs = people[n]
        keep_probe = kept < args.probes and len(imgs) >= 3
        kept += keep_probe
        use = imgs[: args.per_person]
        if keep_probe:
            probes.append((n, imgs[-1]))
            use = [im for im in use if im != imgs[-1]]
        roles[n] = "enrolled"
        rows += [(p, n) for p in use]
    for n in others:
        roles[n] = "stranger"
        rows += [(p, n) for p in people[n][: args.per_person]]
    for n in strangers:
        roles[n] = "stranger"
        rows.append((people[n][0], n))
    probes += [(n, people[n][0]) for n in unseen]
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    with open(out / "select.csv", "w", newline="") as fh:
        w = csv.writer(fh)
        w.writerow(["path", "identity"])
        w.writerows((str(Path(p).resolve()), n) for p, n in rows)
    for n, p in probes:
        d = out / "probes" / n
        d.mkdir(parents=True, exist_ok=True)
        os.symlink(Path(p).resolve(), d / Path(p).name)
    (out / "roles.json").write_text(json.dumps(roles))
    print(f"selected {len(rows)} images: {len(enrolled)} people to enrol, {len(others)} strangers "
          f"with several images, {len(strangers)} with one; {len(probes)} probe images kept aside "
          f"({sum(1 for n, _ in probes if roles.get(n) == 'enrolled')} of enrolled people, "
          f"{len(unseen)} of never-enrolled people)")


def split(args) -> None:
    coll = open_collection(args.collection)
    data = coll.read_all(columns=["identity", "source", "embedding"])
    labels = np.asarray(data.identities, dtype=object)
    sources = np.asarray(data.sources, dtype=object)
    out = Path(args.out)
    roles_file = out / "roles.json"
    probe = np.zeros(len(labels), bool)
    if roles_file.exists():
        roles = json.loads(roles_file.read_text())
    else:  # synthetic: identities in order; first --enrolled enrolled, some rows kept as probes
        names = list(dict.fromkeys(labels))
        roles = {n: ("enrolled" if i < args.enrolled else "stranger") for i, n in enumerate(names)}
        last_row = {n: i for i, n in enumerate(labels)}
        first_row = {}
        for i, n in enumerate(labels):
            first_row.setdefault(n, i)
        for n in names[: args.probes]:
            if last_row[n] != first_row[n]:
                probe[last_row[n]] = True           # an unseen photo of an enrolled person
        for n in names[-args.probes:]:
            probe[labels == n] = True               # never-enrolled people
    seen: dict[str, int] = {}
    gallery = np.zeros(len(labels), bool)
    order = np.argsort(sources.astype(str), kind="stable")
    for i in order:
        if probe[i]:
            continue
        n = labels[i]
        c = seen.get(n, 0)
        seen[n] = c + 1
        gallery[i] = roles.get(n) == "enrolled" and c == 0
    holdout = ~gallery & ~probe
    for name, mask in (("gallery", gallery), ("holdout", holdout), ("probes", probe)):
        if not mask.any():
            continue
        with CollectionWriter(out / name, coll.meta) as w:
            w.write(data.embeddings[mask], identities=labels[mask], sources=sources[mask])
    n_enrolled = sum(1 for r in roles.values() if r == "enrolled")
    print(f"gallery: {int(gallery.sum())} faces of {n_enrolled} enrolled people; holdout: "
          f"{int(holdout.sum())} faces ({int(np.isin(labels[holdout], [n for n, r in roles.items() if r == 'enrolled']).sum())} "
          f"of enrolled people, the rest of {len(set(labels[holdout]) - {n for n, r in roles.items() if r == 'enrolled'})} strangers)"
          + (f"; {int(probe.sum())} probe faces kept aside" if probe.any() else ""))


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = ap.add_subparsers(dest="cmd", required=True)
    s = sub.add_parser("select")
    s.add_argument("tree")
    s.add_argument("--out", required=True)
    s.add_argument("--enrolled", type=int, default=300)
    s.add_argument("--others", type=int, default=200)
    s.add_argument("--singletons", type=int, default=500)
    s.add_argument("--per-person", type=int, default=4)
    s.add_argument("--probes", type=int, default=6)
    s.add_argument("--seed", type=int, default=0)
    p = sub.add_parser("split")
    p.add_argument("collection")
    p.add_argument("--out", required=True)
    p.add_argument("--enrolled", type=int, default=1000)
    p.add_argument("--probes", type=int, default=5)
    args = ap.parse_args(argv)
    select(args) if args.cmd == "select" else split(args)
    return 0


if __name__ == "__main__":
    sys.exit(main())
