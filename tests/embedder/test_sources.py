"""SOURCE listing: identity tree, flat folder + regex, CSV/parquet manifests, order."""

from __future__ import annotations

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from faceidx.embedder.sources import SourceItem, list_source, read_manifest
from faceidx.errors import DataError


def _touch(root, *names):
    for name in names:
        p = root / name
        p.parent.mkdir(parents=True, exist_ok=True)
        p.write_bytes(b"x")


def test_identity_tree_is_sorted_and_skips_loose_and_hidden_files(tmp_path):
    _touch(tmp_path, "bob/2.jpg", "bob/10.jpg", "alice/a.pgm", "alice/deeper/b.pgm",
           "README", ".DS_Store", "bob/.hidden", ".cache/x.jpg")
    items = list_source(tmp_path)
    assert [(i.path[len(str(tmp_path)) + 1:], i.identity) for i in items] == [
        ("alice/a.pgm", "alice"), ("alice/deeper/b.pgm", "alice"),
        ("bob/10.jpg", "bob"), ("bob/2.jpg", "bob"),
    ]
    assert list_source(tmp_path) == items  # deterministic


def test_flat_folder_with_identity_regex(tmp_path):
    _touch(tmp_path, "subject02.happy", "subject01.glasses", "subject01.sad", "notes")
    items = list_source(tmp_path, r"subject(\d+)\.")
    assert [(i.path.rsplit("/", 1)[1], i.identity) for i in items] == [
        ("notes", None), ("subject01.glasses", "01"), ("subject01.sad", "01"),
        ("subject02.happy", "02"),
    ]
    no_group = list_source(tmp_path, r"subject\d+")
    assert no_group[1].identity == "subject01"
    with pytest.raises(ValueError, match="invalid identity regex"):
        list_source(tmp_path, "subject(")


def test_flat_folder_without_regex_has_no_identities(tmp_path):
    _touch(tmp_path, "b.jpg", "a.jpg")
    assert list_source(tmp_path) == [SourceItem(str(tmp_path / "a.jpg"), None),
                                     SourceItem(str(tmp_path / "b.jpg"), None)]


def test_real_sets(shared_data):
    orl = list_source(shared_data / "orl")
    assert len(orl) == 400 and len({i.identity for i in orl}) == 40
    yale = list_source(shared_data / "yale", r"subject(\d+)\.")
    assert len(yale) == 164 and {i.identity for i in yale} == {f"{k:02d}" for k in range(1, 16)}


def test_csv_manifest_paths_relative_to_the_manifest(tmp_path):
    (tmp_path / "m.csv").write_text("path,identity,other\nimgs/b.jpg,bob,1\n/abs/a.jpg,,2\n")
    assert read_manifest(tmp_path / "m.csv") == [
        SourceItem(str(tmp_path / "imgs/b.jpg"), "bob"), SourceItem("/abs/a.jpg", None)]
    assert [i.path for i in list_source(tmp_path / "m.csv")] == ["/abs/a.jpg", str(tmp_path / "imgs/b.jpg")]
    (tmp_path / "bad.csv").write_text("file,identity\nx.jpg,a\n")
    with pytest.raises(DataError, match="'path' column") as info:
        list_source(tmp_path / "bad.csv")
    assert "bad.csv" in str(info.value)


def test_parquet_manifest(tmp_path):
    pq.write_table(pa.table({"path": ["x/1.png", "x/2.png"], "identity": ["p", None]}),
                   tmp_path / "m.parquet")
    assert list_source(tmp_path / "m.parquet") == [
        SourceItem(str(tmp_path / "x/1.png"), "p"), SourceItem(str(tmp_path / "x/2.png"), None)]
    pq.write_table(pa.table({"path": ["y.png"]}), tmp_path / "noid.parquet")
    assert list_source(tmp_path / "noid.parquet")[0].identity is None
    (tmp_path / "junk.parquet").write_bytes(b"not parquet")
    with pytest.raises(DataError, match="cannot read parquet manifest"):
        list_source(tmp_path / "junk.parquet")


def test_missing_and_empty_sources(tmp_path):
    with pytest.raises(DataError, match="no such file"):
        list_source(tmp_path / "nope")
    (tmp_path / "empty").mkdir()
    with pytest.raises(DataError, match="no image files"):
        list_source(tmp_path / "empty")


def test_single_image_file(tmp_path):
    _touch(tmp_path, "one.jpg")
    assert list_source(tmp_path / "one.jpg") == [SourceItem(str(tmp_path / "one.jpg"), None)]
