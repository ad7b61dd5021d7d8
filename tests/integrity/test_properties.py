"""Property tests: whatever a manifest, calibration or collection file is edited to, its
reader either accepts a valid value or raises the library's error naming the file; never
another exception, never a value used as it is."""

from __future__ import annotations

import json
import os
import shutil

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from faceidx.errors import DataError
from faceidx.index import BuildOptions, build_index, open_index
from faceidx.io import open_collection
from faceidx.query.calibfile import CALIBRATION_NAME, FORMAT_NAME, index_id, load_calibration
from tests.index.helpers import write_collection

JSON = st.recursive(st.none() | st.booleans() | st.integers(-2**70, 2**70)
                    | st.floats(allow_nan=True) | st.text(max_size=12),
                    lambda inner: st.lists(inner, max_size=3)
                    | st.dictionaries(st.text(max_size=6), inner, max_size=3), max_leaves=6)
SETTINGS = settings(max_examples=int(os.environ.get("FACEIDX_PROPERTY_EXAMPLES", "60")), deadline=None,
                    suppress_health_check=[HealthCheck.function_scoped_fixture])


@pytest.fixture(scope="module")
def built(tmp_path_factory):
    root = tmp_path_factory.mktemp("prop")
    write_collection(root / "c", n_ids=20, per_id=4, shard_rows=30)
    build_index(root / "c", root / "idx", BuildOptions(index_spec="Flat", shard_rows=40,
                                                       tune_queries=20))
    return root


def paths(obj, prefix=()):
    """Every (path of keys/indexes) inside a JSON object."""
    yield prefix
    if isinstance(obj, dict):
        for k, v in obj.items():
            yield from paths(v, prefix + (k,))
    elif isinstance(obj, list):
        for i, v in enumerate(obj):
            yield from paths(v, prefix + (i,))


def replaced(obj, path, value):
    obj = json.loads(json.dumps(obj))
    if not path:
        return value
    target = obj
    for key in path[:-1]:
        target = target[key]
    target[path[-1]] = value
    return obj


def edits(original: dict):
    all_paths = list(paths(original))
    return st.tuples(st.sampled_from(all_paths), JSON)


def check_edit(tmp_path, src, name, original, edit, read):
    work = tmp_path / "w"
    if work.exists():
        shutil.rmtree(work)
    shutil.copytree(src, work)
    path, value = edit
    try:
        text = json.dumps(replaced(original, path, value))
    except (ValueError, OverflowError):
        return
    (work / name).write_text(text)
    try:
        read(work)
    except DataError as err:
        assert str(work) in str(err) and "\n" not in str(err)


def test_manifest_edits(tmp_path, built):
    original = json.loads((built / "idx" / "manifest.json").read_text())

    @SETTINGS
    @given(edits(original))
    def run(edit):
        def read(work):
            r = open_index(work)
            if r.ntotal:
                r.search(np.ones((1, r.dim), np.float32), k=2)
        check_edit(tmp_path, built / "idx", "manifest.json", original, edit, read)

    run()


def test_calibration_edits(tmp_path, built):
    manifest = open_index(built / "idx").manifest
    original = {"format": FORMAT_NAME, "format_version": 1,
                "index": {"id": index_id(manifest), "identities": 20},
                "threshold": {"value": 0.6, "target_fpir": 0.01, "gallery_identities": 20},
                "verification": {"threshold": 0.7, "target_far": 0.001},
                "openset": {"extrapolation": {"tail": {
                    "n_identities": 20, "searches": 100, "u": 0.4, "rate_u": 0.5,
                    "sigma": 0.05, "exceedances": 30}}}}

    @SETTINGS
    @given(edits(original))
    def run(edit):
        def read(work):
            from faceidx.gallery.threshold import resolve_threshold

            cal = load_calibration(work, manifest)
            thr = cal["threshold"]["value"]
            assert isinstance(thr, (int, float)) and not isinstance(thr, bool)
            assert -1 <= thr <= 1
            resolve_threshold(work, manifest, None, cal)
        check_edit(tmp_path, built / "idx", CALIBRATION_NAME, original, edit, read)

    run()


def test_collection_manifest_edits(tmp_path, built):
    original = json.loads((built / "c" / "collection.json").read_text())

    @SETTINGS
    @given(edits(original))
    def run(edit):
        def read(work):
            coll = open_collection(work)
            for b in coll.iter_batches(16):
                assert len(b.face_ids) == len(b.embeddings)
        check_edit(tmp_path, built / "c", "collection.json", original, edit, read)

    run()


def test_parquet_byte_flips(tmp_path, built):
    data = (built / "c" / "part-00000.parquet").read_bytes()

    @SETTINGS
    @given(st.integers(0, len(data) - 1), st.integers(1, 255))
    def run(at, xor):
        work = tmp_path / "pq"
        if work.exists():
            shutil.rmtree(work)
        shutil.copytree(built / "c", work)
        flipped = bytearray(data)
        flipped[at] ^= xor
        (work / "part-00000.parquet").write_bytes(bytes(flipped))
        try:  # as build and add read it: checksums first, then every page
            coll = open_collection(work)
            coll.verify()
            got = coll.read_all()
        except DataError as err:
            assert "part-00000.parquet" in str(err) or "collection.json" in str(err)
            return
        # nothing of the file changed that the reader uses
        want = open_collection(built / "c").read_all()
        np.testing.assert_array_equal(got.embeddings, want.embeddings)

    run()
