"""Erasure leaves nothing: every file scanned after erasing from exact, IVF-PQ and merged indexes."""

from __future__ import annotations

import json
import shutil

import numpy as np
import pytest
from click.testing import CliRunner

from faceidx.cli.main import cli
from faceidx.index import BuildOptions, build_index, open_index
from faceidx.index.describe import describe_index
from faceidx.index.erase import LOG_NAME, selector_digest
from faceidx.index.erasure_scan import scan_for_traces
from faceidx.index.store import identity_names_of
from faceidx.index.writer import current_generation, open_writer
from faceidx.io import open_collection
from tests.index.helpers import write_collection


@pytest.fixture(scope="module")
def data(tmp_path_factory):
    root = tmp_path_factory.mktemp("erase")
    x, labels = write_collection(root / "c", n_ids=100, per_id=6)
    x2, labels2 = write_collection(root / "new", n_ids=40, per_id=6, seed=3)
    return root, x, labels, x2, labels2


def make_index(tmp, data, spec, add, merge):
    root = data[0]
    shutil.copytree(root / "c", tmp / "c")
    build_index(tmp / "c", tmp / "idx", BuildOptions(index_spec=spec, shard_rows=250,
                                                     tune_queries=80))
    with open_writer(tmp / "idx") as w:
        if add:
            w.add_collection(root / "new", shard_rows=150)
        if merge:
            w.merge()
    return tmp / "idx"


CASES = {"exact": ("Flat", False, False), "ivfpq-added": ("IVF16,PQ8x4fsr", True, False),
         "ivfpq-added-merged": ("IVF16,PQ8x4fsr", True, True),
         "ivfsq8-ondisk-merged": ("IVF16,SQ8", True, True)}


@pytest.mark.parametrize("case", list(CASES))
def test_erase_verify_finds_no_trace(tmp_path, data, case):
    spec, add, merge = CASES[case]
    _, x, labels, x2, labels2 = data
    idx = make_index(tmp_path, data, spec, add, merge)
    before = describe_index(idx)
    victim = str(labels[12])  # faces 12..17
    args = ["erase", str(idx), "--identity", victim, "--face-id", "40", "--collection",
            str(tmp_path / "c"), "--verify", "--json"]
    if add:
        args += ["--identity", str(labels2[0])]  # the added collection's first identity
    r = CliRunner().invoke(cli, args)
    assert r.exit_code == 0, r.output
    res = json.loads(r.stdout)
    erased = 7 + (6 if add else 0)
    assert res["erased_now"] == erased and res["verify"]["clean"], res["verify"]
    assert res["verify"]["files"] > 10 and res["collection_rows_removed"] == 7
    # what readers, info and the files say
    reader = open_index(idx)
    assert reader.ntotal == before["rows"] - erased == describe_index(idx)["rows"]
    assert describe_index(idx)["identities"] == before["identities"] - (2 if add else 1)
    gone = [*range(12, 18), 40]
    _, fids = reader.search(x[gone], k=10, nprobe=16, k_factor=8)
    assert not np.isin(fids, gone).any()
    ids, srcs = reader.lookup(np.array(gone + [41]))
    assert all(i is None for i in ids[:-1]) and ids[-1] == labels[41] and srcs[0] is None
    names = set()
    for s in reader.store.shards:
        names.update(identity_names_of(s.folder))
    assert victim not in names and str(labels[6]) in names  # face 40's person keeps 5 faces
    coll = open_collection(tmp_path / "c").read_all()
    assert len(coll.face_ids) == len(x) - 7 and victim not in set(coll.identities)
    # the log holds the selector hashed, never the name
    log_text = (idx / LOG_NAME).read_text()
    entry = json.loads(log_text.splitlines()[-1])
    assert victim not in log_text and entry["faces"] == erased
    assert selector_digest(idx, victim) in entry["identities"]
    # searches and tuning after the erasure keep working
    with open_writer(idx) as w:
        w.tune(queries=50)


def test_unknown_selector_is_an_error_and_changes_nothing(tmp_path, data):
    idx = make_index(tmp_path, data, "Flat", False, False)
    gen = current_generation(idx)
    r = CliRunner().invoke(cli, ["erase", str(idx), "--identity", "Jane Doe"])
    assert r.exit_code == 1 and "'Jane Doe' is not in the index" in r.output
    r = CliRunner().invoke(cli, ["erase", str(idx), "--face-id", "999999"])
    assert r.exit_code == 1 and "face id 999999 is not in the index" in r.output
    r = CliRunner().invoke(cli, ["erase", str(idx), "--face-id", "3"])
    assert r.exit_code == 0
    r = CliRunner().invoke(cli, ["erase", str(idx), "--face-id", "3"])  # erased already
    assert r.exit_code == 1 and "erased already" in r.output
    assert current_generation(idx) == gen + 1


def test_scanner_finds_what_is_planted(tmp_path, data):
    _, x, labels, *_ = data
    unit = x[:3] / np.linalg.norm(x[:3], axis=1, keepdims=True)
    (tmp_path / "d").mkdir()
    (tmp_path / "d" / "a.bin").write_bytes(b"xyz" + unit[1].astype(np.float32).tobytes() + b"!")
    (tmp_path / "d" / "b.bin").write_bytes(b"\0" + unit[2].astype(np.float16).tobytes())
    (tmp_path / "d" / "c.json").write_text(json.dumps({"who": "Jane Doe", "other": "Jane Does"}))
    rep = scan_for_traces([tmp_path / "d"], unit, names=["Jane Doe"])
    found = {(t["file"].rsplit("/", 1)[-1], t["what"]): t["count"] for t in rep["traces"]}
    assert found == {("a.bin", "float32 vector"): 1, ("b.bin", "float16 vector"): 1,
                     ("c.json", "name or source"): 1}
    assert not rep["clean"]


def test_reader_opened_before_an_erasure_never_returns_the_face(tmp_path, data):
    _, x, labels, *_ = data
    idx = make_index(tmp_path, data, "IVF16,PQ8x4fsr", True, True)
    old = open_index(idx)
    with open_writer(idx) as w:
        w.erase(identities=[str(labels[0])])
    s, fids = old.search(x[:6], k=5, nprobe=16)
    assert not np.isin(fids, np.arange(6)).any()  # not even at score 0
    ids, _ = old.lookup(np.arange(8))
    assert all(i is None for i in ids[:6]) and ids[6] == labels[6]
