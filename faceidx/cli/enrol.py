"""`faceidx enrol`: photos -> named faces -> an index, in one step (created when absent)."""

from __future__ import annotations

from pathlib import Path

import click

from faceidx.cli.options import device_option, echo_json, json_option, settings, warn
from faceidx.errors import DataError

PEOPLE_SHOWN = 8


@click.command()
@click.argument("index_dir", type=click.Path(file_okay=False, path_type=Path))
@click.argument("sources", nargs=-1, required=True, type=click.Path(exists=True, path_type=Path))
@click.option("--name", default=None,
              help="Every photo given is this person (overrides folder and file names).")
@click.option("--allow-unlabelled", is_flag=True,
              help="Enrol photos that give no name too (a query can find them, never name them).")
@click.option("--face", "choose", type=click.Choice(["largest", "central"]), default=None,
              help="Group photos: enrol this face of each. Without it, a photo with several "
                   "faces is refused.")
@click.option("--model", default=None,
              help="Face model of a new index (default dlib-resnet-v1); an existing index "
                   "uses its own.")
@click.option("--detector", type=click.Choice(["hog", "none"]), default=None,
              help="hog (default): find and align faces; none: the photos are aligned crops. "
                   "An existing index uses its own.")
@device_option
@click.option("--workers", default=None, type=click.IntRange(min=0),
              help="Processes detecting faces (default: CPU cores, at most 8).")
@json_option
def enrol(index_dir: Path, sources: tuple[Path, ...], name: str | None, allow_unlabelled: bool,
          choose: str | None, model: str | None, detector: str | None, device: str,
          workers: int | None, as_json: bool) -> None:
    """Enrol the people in photos into INDEX_DIR, creating the index if it does not exist.

    Who is who: in a folder tree each folder is a person (known/Jane_Doe/1.jpg); other
    photos are named by their file, with a trailing number removed
    (known/Barack_Obama_0001.jpg -> Barack_Obama, the face_recognition convention); --name
    names every photo given. The names used are printed. Photos that give no name
    (IMG_1234.jpg, 0001.jpg) are refused unless --allow-unlabelled; photos with several
    faces are refused unless --face says which one to enrol.

    The embedded faces are kept in INDEX_DIR.enrolled/ (rerunning the same command resumes
    or does nothing); `faceidx erase` removes people from the index.

    \b
    Example:
      faceidx enrol people.index known/                    # known/Barack_Obama.jpg ...
      faceidx enrol people.index team/ --face largest      # team/Ann/*.jpg, team/Bo/*.jpg
      faceidx enrol people.index new.jpg other.jpg --name "Jane Doe"
      faceidx calibrate people.index --holdout strangers/  # then: faceidx query ...
    """
    import os

    from faceidx.embedder.enrolment import embed_for_enrolment, name_photos
    from faceidx.index.manifest import enrolled_folder

    naming = name_photos(sources, name)
    if not as_json:
        for line in naming.lines:
            click.echo(f"naming   {line}")
        click.echo(f"people   {_people(naming.people)}")
    if naming.unlabelled and not allow_unlabelled:
        nameless = naming.unlabelled
        raise DataError(
            f"{len(nameless)} photo(s) give no name (e.g. {Path(nameless[0]).name}): enrolled, "
            "their faces could be found but never named. Put each person's photos in a folder "
            "named after them, name the files after them (Jane_Doe_0001.jpg), give --name NAME, "
            "or pass --allow-unlabelled to enrol them nameless", nameless[0])
    index_model, index_detector = _index_settings(index_dir)
    if index_model is not None:
        _same("--model", model, index_model, index_dir)
        _same("--detector", detector, index_detector, index_dir)
    spec = index_model or model or "dlib-resnet-v1"
    detector = index_detector or detector or "hog"
    out = enrolled_folder(index_dir) / naming.key()
    res = embed_for_enrolment(
        naming.items, out, spec, detector=detector, choose=choose, device=device,
        workers=min(os.cpu_count() or 1, 8) if workers is None else workers,
        progress=settings().progress,
        labelling={"naming": "--name" if name is not None else "folders, then files"})
    if res.group_photos and choose is None:
        shown = ", ".join(f"{Path(p).name} ({n} faces)" for p, n in res.group_photos[:3])
        more = f" and {len(res.group_photos) - 3} more" if len(res.group_photos) > 3 else ""
        raise DataError(f"{len(res.group_photos)} group photo(s) not enrolled, nothing was added: "
                        f"{shown}{more}. Say which face is the person with --face largest or "
                        "--face central, crop the photo to the person, or leave it out",
                        res.group_photos[0][0])
    _warn_failures(out, naming)
    result = _add(index_dir, out, res.summary.rows_total, index_model is None, device)
    result.update(naming=naming.lines, people=naming.people, collection=str(out),
                  group_photos=[{"path": p, "faces": n} for p, n in res.group_photos],
                  embed=res.summary.to_json())
    if as_json:
        echo_json(result)
        return
    if res.group_photos:
        click.echo(f"groups   {len(res.group_photos)} group photo(s): the {choose} face of each")
    verb = "created" if result["created"] else "added to"
    click.echo(f"enrolled {result['added']} face(s) ({verb} {index_dir}: now {result['rows']} "
               f"faces of {result['identities']} people)"
               + ("; already enrolled, nothing to do" if result["already_added"] else ""))
    click.echo(f"kept     the embedded faces in {out} (a rerun resumes from them)")
    if (index_dir / "calibration.json").exists():
        click.echo(f"next     the gallery grew: rerun `faceidx calibrate {index_dir} --holdout ...` "
                   "before trusting `query --threshold auto`")
    else:
        click.echo(f"next     faceidx calibrate {index_dir} --holdout OTHER_PEOPLE/  "
                   f"(then: faceidx query {index_dir} photo.jpg)")


def _people(people: dict[str, int]) -> str:
    if not people:
        return "none named"
    names = sorted(people)
    shown = ", ".join(f"{n} ({people[n]})" for n in names[:PEOPLE_SHOWN])
    more = f", and {len(names) - PEOPLE_SHOWN} more" if len(names) > PEOPLE_SHOWN else ""
    return f"{len(names)}: {shown}{more}  (photos each)"


def _index_settings(index_dir: Path) -> tuple[str | None, str | None]:
    """(model spec, detector) of an existing index; (None, None) when there is none yet."""
    from types import SimpleNamespace

    from faceidx.gallery.probes import index_detector
    from faceidx.index.manifest import MANIFEST_NAME, IndexManifest

    if not (index_dir / MANIFEST_NAME).exists():
        if index_dir.exists() and any(index_dir.iterdir()):
            raise DataError("exists, is not empty and is not an index: give a new folder "
                            "(it is created) or an index made by `faceidx enrol` or `build`",
                            index_dir)
        return None, None
    m = IndexManifest.load(index_dir)
    # the one reader of "which detector built this index" reads a reader's manifest dict
    detector = index_detector(SimpleNamespace(manifest=m.to_json()))
    return m.meta.model, detector


def _same(option: str, given: str | None, used: str | None, index_dir: Path) -> None:
    if given is not None and used is not None and given != used:
        raise DataError(f"this index's faces were embedded with {option} {used}, not {given}: "
                        f"enrol with the index's own (leave {option} out), or enrol into a new "
                        "index", index_dir)


def _warn_failures(out: Path, naming) -> None:
    """Warn about photos without a usable face, and people left with no face at all."""
    from faceidx.embedder.pipeline import FAILURES_NAME, read_failures
    from faceidx.io import open_collection

    failed = {row["path"]: row.get("reason") for row in read_failures(out / FAILURES_NAME)}
    mine = {it.stored for it in naming.items}   # failures are kept under the stored name
    failed = {p: r for p, r in failed.items() if p in mine}
    if not failed:
        return
    shown = ", ".join(f"{Path(p).name} ({str(r).replace('_', ' ')})" for p, r in list(failed.items())[:3])
    warn(f"{len(failed)} photo(s) not enrolled: {shown}; see {out / FAILURES_NAME}")
    coll = open_collection(out)
    have = set()
    for batch in coll.iter_batches(columns=["identity"], validate=False):
        have.update(batch.identities.tolist())
    missing = sorted(set(naming.people) - have)
    if missing:
        warn(f"{len(missing)} person(s) have no usable photo and are not enrolled: "
             + ", ".join(missing[:PEOPLE_SHOWN]) + (" ..." if len(missing) > PEOPLE_SHOWN else ""))


def _add(index_dir: Path, collection: Path, rows: int, create: bool, device: str) -> dict:
    """Build INDEX_DIR from the collection, or add it; the index's counts afterwards."""
    from faceidx.index.build import BuildOptions, add_collection, build_index
    from faceidx.index.describe import describe_index

    if rows == 0:
        raise DataError("no face to enrol: no photo gave a usable face", collection)
    opts = BuildOptions(device=device, progress=settings().progress,
                        tune_queries=min(1000, max(rows, 1)))
    before = 0 if create else describe_index(index_dir)["rows"]
    if create:
        build_index(collection, index_dir, opts)
    else:
        add_collection(index_dir, collection, opts)
    info = describe_index(index_dir)
    added = info["rows"] - before
    return {"index": str(index_dir), "created": create, "added": added,
            "already_added": not create and added == 0, "rows": info["rows"],
            "identities": info["identities"]}
