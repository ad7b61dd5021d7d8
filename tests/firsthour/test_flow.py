"""The flow a new user follows, on real faces (LFW subset, HOG detection): photos in folders
and in a flat folder -> enrol -> calibrate on an image folder of other people -> query,
with a group photo and a stranger. Small temp folders of copied photos; shared/data is
only read."""

from __future__ import annotations

import json
import shutil

import pytest
from click.testing import CliRunner

from faceidx.cli.main import cli

pytestmark = pytest.mark.slow

TREE = ["Akhmed_Zakayev", "Allen_Iverson", "Ana_Palacio", "Brad_Garrett"]  # Brad: + a bystander
FLAT = ["Antonio_Palocci", "Asa_Hutchinson"]
STRANGER = "Elena_Bovina"
USED = set(TREE) | set(FLAT) | {STRANGER, "Ben_Curtis", "Bijan_Darvish"}


def run(*args):
    return CliRunner().invoke(cli, [str(a) for a in args])


def photo(lfw, person, n=1):
    return lfw / person / f"{person}_{n:04d}.jpg"


def group_photo(lfw, path):
    """Ben Curtis beside Bijan Darvish (his face 0.8x as wide): two faces of comparable size."""
    from PIL import Image

    a = Image.open(photo(lfw, "Ben_Curtis", 2)).convert("RGB")
    b = Image.open(photo(lfw, "Bijan_Darvish", 2)).convert("RGB").resize((200, 200))
    canvas = Image.new("RGB", (450, 250), (128, 128, 128))
    canvas.paste(a, (0, 0))
    canvas.paste(b, (250, 25))
    canvas.save(path, quality=95)
    return path


@pytest.fixture(scope="module")
def photos(shared_data, tmp_path_factory):
    lfw = shared_data / "lfw-subset"
    d = tmp_path_factory.mktemp("firsthour")
    for p in TREE:
        (d / "known" / p).mkdir(parents=True)
        shutil.copy(photo(lfw, p), d / "known" / p)
    (d / "flat").mkdir()
    for p in FLAT:
        shutil.copy(photo(lfw, p), d / "flat")          # flat/Antonio_Palocci_0001.jpg
    group_photo(lfw, d / "group.jpg")
    # holdout: two photos each of people never enrolled (1:1 pairs need two), and other
    # photos of two enrolled people
    strangers = [p.name for p in sorted(lfw.iterdir())[5::20]
                 if p.name not in USED and photo(lfw, p.name, 2).exists()][:20]
    for p in strangers:
        (d / "holdout" / p).mkdir(parents=True)
        shutil.copy(photo(lfw, p), d / "holdout" / p)
        shutil.copy(photo(lfw, p, 2), d / "holdout" / p)
    for p in ("Ana_Palacio", "Antonio_Palocci"):
        (d / "holdout" / p).mkdir(parents=True)
        shutil.copy(photo(lfw, p, 3), d / "holdout" / p)
    # probes: an unseen photo of an enrolled person, a stranger, and the group photo (loose)
    for p, n in (("Akhmed_Zakayev", 2), (STRANGER, 1)):
        (d / "probes" / p).mkdir(parents=True)
        shutil.copy(photo(lfw, p, n), d / "probes" / p)
    shutil.copy(d / "group.jpg", d / "probes" / "group.jpg")
    return d


def test_first_hour(photos):
    d, idx = photos, photos / "people.index"

    # 1. enrol folders (folder = person) and a flat folder (file = person) in one step
    r = run("enrol", idx, d / "known", d / "flat", "--workers", "0")
    assert r.exit_code == 0, r.output
    assert "4 named by folder name (4 people)" in r.output
    assert "2 named by file name (2 people)" in r.output and "Antonio_Palocci (1)" in r.output
    assert "created" in r.output and "6 people" in r.output
    info = json.loads(run("info", idx, "--json").output)
    assert info["identities"] == 6 and info["rows"] == 6 and info["calibrated"] is False

    # 2. a group photo is refused until told which face; a nameless photo is refused
    r = run("enrol", idx, d / "group.jpg", "--name", "Ben_Curtis", "--workers", "0")
    assert r.exit_code == 1 and "group photo" in r.output and "--face largest" in r.output
    assert json.loads(run("info", idx, "--json").output)["rows"] == 6   # nothing added
    r = run("enrol", idx, d / "group.jpg", "--name", "Ben_Curtis", "--face", "largest",
            "--workers", "0")
    assert r.exit_code == 0, r.output
    nameless = d / "IMG_0042.jpg"
    shutil.copy(d / "probes" / STRANGER / f"{STRANGER}_0001.jpg", nameless)
    r = run("enrol", idx, nameless, "--workers", "0")
    assert r.exit_code == 1 and "give no name" in r.output and "--allow-unlabelled" in r.output
    assert json.loads(run("info", idx, "--json").output)["identities"] == 7

    # 3. calibrate on an image folder of other people (+ other photos of two enrolled)
    r = run("calibrate", idx, "--holdout", d / "holdout", "--target-fpir", "0.1",
            "--target-far", "0.01")
    assert r.exit_code == 0, r.output
    people = len(list((d / "holdout").iterdir()))
    assert f"named by folder name ({people} people)" in r.output and people >= 20
    cal = json.loads((idx / "calibration.json").read_text())
    assert cal["openset"]["mated_searches"] == 2 and cal["openset"]["gallery_identities"] == 7
    info = json.loads(run("info", idx, "--json").output)
    assert info["calibrated"] is True and info["threshold"] == cal["threshold"]["value"]

    # 4. query: the enrolled person by name, the stranger unknown, each face of the group
    r = run("query", idx, d / "probes", "-k", "3", "--faces", "all", "--json")
    assert r.exit_code == 0, r.output
    answers = [json.loads(ln) for ln in r.stdout.splitlines()]
    by_probe = {}
    for a in answers:
        by_probe.setdefault(a["probe"].rsplit("/", 1)[-1], []).append(a)
    assert [a["decision"] for a in by_probe["Akhmed_Zakayev_0002.jpg"]] == ["Akhmed_Zakayev"]
    assert [a["decision"] for a in by_probe[f"{STRANGER}_0001.jpg"]] == ["unknown"]
    group = by_probe["group.jpg"]
    assert len(group) == 2 and all(len(a["box"]) == 4 for a in group)
    decisions = {a["decision"] for a in group}
    assert "Ben_Curtis" in decisions and decisions <= {"Ben_Curtis", "unknown"}
    assert "mixes 1 loose image(s) with 2 identity folder(s)" in r.output  # truth explained
