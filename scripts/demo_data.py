"""Data preparation for scripts/demo.sh: who is enrolled, who is held out, who is probed.

    python scripts/demo_data.py select LFW_DIR --out OUT    # OUT/{gallery,holdout,probes}/<Name>/
    python scripts/demo_data.py split COLLECTION --out OUT  # synthetic: OUT/gallery, OUT/holdout

select (real faces, identity-per-folder tree): lays out photo folders the way a user
would have them, as symbolic links (nothing copied): of the people with >= 2 images,
--enrolled get their first image into OUT/gallery/<Name>/ (what `faceidx enrol` takes)
and their next images (up to --per-person in all) into OUT/holdout/<Name>/ as mated
searches; --others more such people and --singletons people with one image go to the
holdout as strangers (what `faceidx calibrate --holdout` takes). Probes for the final
query (never seen by gallery or holdout) are the last image of a few enrolled people and
a few unseen singletons, under OUT/probes/<Name>/ so the query knows the truth.

split (synthetic embeddings only, no photos): turns a collection into gallery and
holdout collections with the same rules, from the identity order (first --enrolled
people enrolled; some images kept as probes).
"""

from __future__ import annotations

import argparse
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
    gallery, holdout, probes = [], [], []
    kept = 0
    for n in enrolled:
        imgs = people[n]
        keep_probe = kept < args.probes and len(imgs) >= 3
        kept += keep_probe
        use = imgs[: args.per_person]
        if keep_probe:
            probes.append((n, imgs[-1]))
            use = [im for im in use if im != imgs[-1]]
        gallery.append((n, use[0]))
        holdout += [(n, p) for p in use[1:]]
    for n in others:
        holdout += [(n, p) for p in people[n][: args.per_person]]
    holdout += [(n, people[n][0]) for n in strangers]
    probes += [(n, people[n][0]) for n in unseen]
    out = Path(args.out)
    for folder, pairs in (("gallery", gallery), ("holdout", holdout), ("probes", probes)):
        for n, p in pairs:
            d = out / folder / n
            d.mkdir(parents=True, exist_ok=True)
            os.symlink(Path(p).resolve(), d / Path(p).name)
    mated = sum(1 for n, _ in holdout if n in set(enrolled))
    print(f"photos: gallery/ {len(gallery)} people to enrol (one photo each); holdout/ "
          f"{len(holdout)} photos ({mated} other photos of enrolled people, the rest of "
          f"{len(others) + len(strangers)} never-enrolled people); probes/ {len(probes)} photos "
          f"kept aside ({kept} of enrolled people, {len(unseen)} of never-enrolled people)")


def split(args) -> None:
    coll = open_collection(args.collection)
    data = coll.read_all(columns=["identity", "source", "embedding"])
    labels = np.asarray(data.identities, dtype=object)
    sources = np.asarray(data.sources, dtype=object)
    out = Path(args.out)
    probe = np.zeros(len(labels), bool)
    # identities in order: the first --enrolled are enrolled, some rows are kept as probes
    names = list(dict.fromkeys(labels))
    roles = {n: ("enrolled" if i < args.enrolled else "stranger") for i, n in enumerate(names)}
    last_row = {n: i for i, n in enumerate(labels)}
    first_row = {}
    for i, n in enumerate(labels):
        first_row.setdefault(n, i)
    for n in names[: args.probes]:
        if last_row[n] != first_row[n]:
            probe[last_row[n]] = True           # an unseen embedding of an enrolled person
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
