"""ann-benchmarks HDF5 and big-ann .fbin: round trips, exact ground truth, malformed files,
and `faceidx build` straight from such a file."""

from __future__ import annotations

import json

import h5py
import numpy as np
import pytest
from click.testing import CliRunner

from faceidx.cli.main import cli
from faceidx.errors import DataError
from faceidx.io import CollectionMeta, CollectionWriter, open_collection
from faceidx.io.exchange import export_collection, import_vectors
from faceidx.io.fbin import Fbin, read_ibin, write_fbin
from faceidx.io.groundtruth import exact_knn
from faceidx.io.hdf5 import open_hdf5
from tests.conftest import make_clusters

META = CollectionMeta(model="m", dim=24, model_version="7")


@pytest.fixture(scope="module")
def coll(tmp_path_factory):
    x, labels = make_clusters(60, 5, 24, seed=3)
    path = tmp_path_factory.mktemp("x") / "coll"
    with CollectionWriter(path, META, shard_rows=128, buffer_rows=64) as w:
        ids = labels.astype(object)
        ids[::7] = None  # unlabelled faces survive the trip
        w.write(x, identities=ids, sources=[f"img/{i}.jpg" for i in range(len(x))],
                face_ids=np.arange(len(x)) * 3 + 11)
    return path


def read(path):
    b = open_collection(path).read_all()
    order = np.argsort(b.face_ids)
    return b.face_ids[order], b.identities[order], b.sources[order], b.embeddings[order]


@pytest.mark.parametrize("target", ["set.hdf5", "bigann"])
def test_round_trip_and_exact_truth(coll, tmp_path, target):
    s = export_collection(coll, tmp_path / target, test_size=25, k=10, batch_rows=50)
    assert (s.train, s.test, s.k, s.metric) == (275, 25, 10, "angular")
    back = tmp_path / "back"
    import_vectors(tmp_path / target, back, split="all", batch_rows=64)
    a, b = read(coll), read(back)
    for x, y in zip(a[:3], b[:3], strict=True):
        assert list(x) == list(y)
    np.testing.assert_array_equal(a[3], b[3])
    assert open_collection(back).meta == open_collection(coll).meta

    # ground truth = brute force over the train rows (naive reference, argsort)
    if target.endswith("hdf5"):
        with open_hdf5(tmp_path / target) as ann:
            train = np.concatenate([v for _, v in ann.iter_vectors("train", 1000)])
            test = np.concatenate([v for _, v in ann.iter_vectors("test", 1000)])
            ids, dist = ann.truth()
            assert ann.dim == 24 and ann.metric == "angular" and ann.k == 10
    else:
        train, test = Fbin(tmp_path / target / "base.fbin").read(), \
            Fbin(tmp_path / target / "query.fbin").read()
        ids, dist = read_ibin(tmp_path / target / "groundtruth.ibin")
    d = 1 - test @ train.T
    want = np.argsort(d, axis=1, kind="stable")[:, :10]
    np.testing.assert_array_equal(ids, want)
    np.testing.assert_allclose(dist, np.take_along_axis(d, want, 1), atol=1e-5)


def test_exact_knn_euclidean_blocks_match_one_pass():
    rng = np.random.default_rng(0)
    base, q = rng.normal(size=(500, 8)), rng.normal(size=(20, 8))
    ids, dist = exact_knn(q, (base[i:i + 37] for i in range(0, 500, 37)), 5, "euclidean")
    d = np.linalg.norm(q[:, None] - base[None], axis=2)
    np.testing.assert_array_equal(ids, np.argsort(d, axis=1)[:, :5])
    np.testing.assert_allclose(dist, np.sort(d, axis=1)[:, :5], rtol=1e-4)
    short, _ = exact_knn(q, [base[:3]], 5, "euclidean")
    assert (short[:, 3:] == -1).all()


def test_foreign_hdf5_is_imported_normalised_with_row_ids(tmp_path):
    path = tmp_path / "glove-like.hdf5"
    rng = np.random.default_rng(1)
    with h5py.File(path, "w") as f:
        f.create_dataset("train", data=rng.normal(size=(40, 6)).astype(np.float32) * 3)
        f.create_dataset("test", data=rng.normal(size=(4, 6)).astype(np.float32))
        f.attrs["distance"] = "angular"
        f.attrs["dimension"] = 6
    import_vectors(path, tmp_path / "c", split="all")
    c = open_collection(tmp_path / "c")
    b = c.read_all()
    assert c.meta.model == "unknown" and c.meta.normalized
    assert list(b.face_ids) == list(range(44)) and set(b.identities) == {None}
    np.testing.assert_allclose(np.linalg.norm(b.embeddings, axis=1), 1, rtol=1e-5)


@pytest.mark.parametrize("make, message", [
    (lambda f: f.create_dataset("test", data=np.ones((2, 3), np.float32)), "no 'train' dataset"),
    (lambda f: f.create_dataset("train", data=np.ones(5, np.float32)), "must be 2-D floats"),
    (lambda f: f.create_dataset("train", data=np.ones((5, 3), np.int32)), "must be 2-D floats"),
    (lambda f: (f.create_dataset("train", data=np.ones((5, 3), np.float32)),
                f.attrs.__setitem__("dimension", 4)), "dimension=4 but the vectors have D=3"),
    (lambda f: (f.create_dataset("train", data=np.ones((5, 3), np.float32)),
                f.attrs.__setitem__("distance", "jaccard")), "distance 'jaccard' is not supported"),
    (lambda f: (f.create_dataset("train", data=np.ones((5, 3), np.float32)),
                f.create_dataset("test", data=np.ones((2, 4), np.float32))), "test vectors have D=4"),
    (lambda f: (f.create_dataset("train", data=np.ones((5, 3), np.float32)),
                f.create_dataset("test", data=np.ones((2, 3), np.float32)),
                f.create_dataset("neighbors", data=np.ones((3, 2), np.int32))),
     "one row per test vector"),
])
def test_malformed_hdf5_names_the_file(tmp_path, make, message):
    path = tmp_path / "bad.hdf5"
    with h5py.File(path, "w") as f:
        make(f)
    with pytest.raises(DataError, match=message) as err:
        import_vectors(path, tmp_path / "out")
    assert err.value.path == str(path)


def test_malformed_binaries(tmp_path):
    not_h5 = tmp_path / "x.h5"
    not_h5.write_bytes(b"plain text, not HDF5")
    with pytest.raises(DataError, match="x.h5: not a readable HDF5 file"):
        import_vectors(not_h5, tmp_path / "o1")
    good = tmp_path / "v.fbin"
    write_fbin(good, np.ones((4, 3), np.float32))
    cut = tmp_path / "cut.fbin"
    cut.write_bytes(good.read_bytes()[:-5])
    with pytest.raises(DataError, match="cut.fbin: size 51 bytes, but the header .* needs 56"):
        Fbin(cut)
    (tmp_path / "h.fbin").write_bytes(b"\x01\x00")
    with pytest.raises(DataError, match="no 8-byte header"):
        Fbin(tmp_path / "h.fbin")
    (tmp_path / "neg.fbin").write_bytes(np.asarray([-1, 3], "<i4").tobytes())
    with pytest.raises(DataError, match="n=-1"):
        Fbin(tmp_path / "neg.fbin")
    (tmp_path / "gt.ibin").write_bytes(np.asarray([2, 2, 0, 1, 1], "<i4").tobytes())
    with pytest.raises(DataError, match="gt.ibin: size 20 bytes fits neither"):
        read_ibin(tmp_path / "gt.ibin")
    with pytest.raises(DataError, match="u8bin.*not supported"):
        import_vectors(tmp_path / "x.u8bin", tmp_path / "o2")
    nan = tmp_path / "nan.fbin"
    write_fbin(nan, np.array([[1, 0, 0], [np.nan, 0, 0]], np.float32))
    with pytest.raises(DataError, match=r"nan.fbin \(row 1\): embedding holds NaN"):
        import_vectors(nan, tmp_path / "o3")


def test_cli_export_import_and_build_from_file(coll, tmp_path):
    run = CliRunner().invoke
    r = run(cli, ["export", str(coll), "--out", str(tmp_path / "s.h5"), "--test-size", "20",
                  "-k", "5", "--json"])
    assert r.exit_code == 0, r.output
    assert json.loads(r.stdout)["train"] == 280
    r = run(cli, ["export", str(coll), "--out", str(tmp_path / "t.h5"), "--test-size", "300"])
    assert r.exit_code == 1 and "test size 300 must be below" in r.output
    r = run(cli, ["import", str(tmp_path / "s.h5"), "--out", str(tmp_path / "c"), "--json"])
    assert r.exit_code == 0 and json.loads(r.stdout)["rows"] == 280
    for _ in range(2):  # the second run reuses the imported collection and resumes nothing
        r = run(cli, ["-q", "build", str(tmp_path / "s.h5"), "--out", str(tmp_path / "idx"),
                      "--tune-queries", "20", "--json"])
    assert "already holds a finished index" in r.output
    assert (tmp_path / "idx.collection" / "import.json").exists()
    from faceidx.index import open_index

    index = open_index(tmp_path / "idx")
    assert index.ntotal == 280 and index.meta.model == "m"
    with open_hdf5(tmp_path / "s.h5") as ann:
        test = next(ann.iter_vectors("test", 100))[1]
        truth, _ = ann.truth()
        train_ids = ann.column("train", "face_id", 0, 280)
    _, face_ids = index.search(test, k=1)
    assert np.mean(face_ids[:, 0] == train_ids[truth[:, 0]]) >= 0.95
