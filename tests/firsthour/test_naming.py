"""Who is who (issue 14 items 1-2): file-name naming, mixed folders, how truth was derived,
group photos versus bystanders. Pure listing: no model, no images decoded."""

from __future__ import annotations

import logging

import pytest

from faceidx.embedder.enrolment import is_group_photo, name_photos
from faceidx.embedder.sources import list_labelled, list_source, name_from_file

JPEG = b"\xff\xd8\xff\xe0" + b"\0" * 60


def _touch(root, *names, data=JPEG):
    for name in names:
        p = root / name
        p.parent.mkdir(parents=True, exist_ok=True)
        p.write_bytes(data)


@pytest.mark.parametrize("name, person", [
    ("known/Barack_Obama.jpg", "Barack_Obama"),
    ("known/Barack_Obama_0001.jpg", "Barack_Obama"),
    ("jane-doe-2.png", "jane-doe"),
    ("Ann Lee (3).jpeg", "Ann Lee"),
    ("subject01.glasses", "subject01"),      # Yale: the number is part of the name
    ("0007.jpg", None),                      # digits name nobody
    ("IMG_1234.JPG", None),                  # nor a camera's file name
    ("DSC01234.jpg", "DSC01234"),            # no separator: kept, and printed for the user
])
def test_name_from_file(name, person):
    assert name_from_file(name) == person


def test_flat_folder_named_by_files_only_when_asked(tmp_path):
    _touch(tmp_path, "Barack_Obama.jpg", "Joe_Biden_0001.jpg", "Joe_Biden_0002.jpg", "IMG_1.jpg")
    assert {i.identity for i in list_source(tmp_path)} == {None}       # embed / query default
    listing = list_labelled(tmp_path, naming="files")
    assert sorted(i.identity or "-" for i in listing.items) == [
        "-", "Barack_Obama", "Joe_Biden", "Joe_Biden"]
    assert listing.how == {"file name": 3, "none": 1} and listing.unlabelled == 1
    assert listing.explain().endswith("3 named by file name (2 people), 1 without identity")


def test_mixed_folder_lists_every_image_and_says_how(tmp_path, caplog):
    _touch(tmp_path, "ann/1.jpg", "ann/2.jpg", "bob/1.jpg", "loose_0001.jpg", "carl.jpg")
    _touch(tmp_path, "README", data=b"not an image")
    with caplog.at_level(logging.WARNING):
        listing = list_labelled(tmp_path)
    assert len(listing.items) == 5 and listing.mixed       # loose images searched too
    assert listing.how == {"folder name": 3, "none": 2}
    assert "mixes 2 loose image(s) with 2 identity folder(s)" in caplog.text
    assert "have no identity" in caplog.text
    named = list_labelled(tmp_path, naming="files")
    assert {i.identity for i in named.items} == {"ann", "bob", "loose", "carl"}
    assert named.explain().endswith("3 named by folder name (2 people), 2 named by file name "
                                    "(2 people)")


def test_name_photos_with_name_and_several_sources(tmp_path):
    _touch(tmp_path, "a/Ann_0001.jpg", "b/x/1.jpg", "solo.jpg")
    naming = name_photos([tmp_path / "a", tmp_path / "b", tmp_path / "solo.jpg"])
    assert naming.people == {"Ann": 1, "x": 1, "solo": 1} and not naming.unlabelled
    assert len(naming.lines) == 3
    renamed = name_photos([tmp_path / "a", tmp_path / "solo.jpg"], name="Jane Doe")
    assert renamed.people == {"Jane Doe": 2} and "named by --name" in renamed.lines[0]
    assert renamed.key() != name_photos([tmp_path / "a", tmp_path / "solo.jpg"]).key()
    assert renamed.key() == name_photos([tmp_path / "solo.jpg", tmp_path / "a"], "Jane Doe").key()


def test_group_photo_versus_bystanders():
    portrait = [(67, 80, 175, 187), (101, 153, 152, 205)]   # LFW Brad_Garrett_0001: area 0.23
    assert not is_group_photo(portrait)
    assert is_group_photo([(0, 0, 99, 99), (200, 0, 279, 79)])   # 0.64 of the largest's area
    assert not is_group_photo([(0, 0, 99, 99)])
