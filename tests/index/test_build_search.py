"""Build + search against naive exact search; add without retraining; merge equivalence."""

from __future__ import annotations

import numpy as np
import pytest

from faceidx.errors import DataError, ModelMismatchError
from faceidx.index import BuildOptions, add_collection, build_index, open_index
from faceidx.index.merge import merge_index
from faceidx.io.atomic import sha256_file
from tests.index.helpers import exact_topk, write_collection

IVF = "IVF32,PQ8x4fsr"


def opts(**kw):
    base = dict(index_spec=IVF, shard_rows=1000, tune_queries=200)
    base.update(kw)
    return BuildOptions(**base)


@pytest.fixture(scope="module")
def built(tmp_path_factory):
    root = tmp_path_factory.mktemp("built")
    x, labels = write_collection(root / "c")
    build_index(root / "c", root / "idx", opts())
    return root, x, labels


def test_flat_search_equals_naive_exact(tmp_path):
    x, _ = write_collection(tmp_path / "c", n_ids=50, per_id=6)
    m = build_index(tmp_path / "c", tmp_path / "idx", opts(index_spec="auto", shard_rows=128))
    assert m.factory == "Flat" and len(m.shards) == 3
    reader = open_index(tmp_path / "idx")
    q = x[::7] + 0.01
    scores, fids = reader.search(q, k=5)
    ref_s, ref_rows = exact_topk(x, q, 5)
    np.testing.assert_array_equal(fids, ref_rows)  # face ids are rows here (writer numbers 0..)
    np.testing.assert_allclose(scores, ref_s, atol=1e-5)
    assert (np.diff(scores, axis=1) <= 1e-7).all()


def test_sharded_ivf_search_agrees_with_exact(built):
    root, x, labels = built
    reader = open_index(root / "idx")
    assert len(reader.parts) == 3 and reader.ntotal == len(x)
    q = x[::11]
    ref_s, ref_rows = exact_topk(x, q, 10)
    # all lists probed, generous re-rank: the exact top-10 comes back
    scores, fids = reader.search(q, k=10, nprobe=32, k_factor=20)
    assert np.mean(fids == ref_rows) > 0.99
    np.testing.assert_allclose(scores, reader.exact_scores(q, fids), atol=1e-6)
    # the tuned defaults reach the target rank-1 identity agreement (queries excluded)
    m = reader.manifest
    assert m["tuning"]["agreement"] >= 0.995 and m["search"]["nprobe"] <= 32


def test_lookup_and_exact_scores(built):
    root, x, labels = built
    reader = open_index(root / "idx")
    ids, srcs = reader.lookup(np.array([0, 5, 2399, 99999]))
    assert list(ids[:3]) == list(labels[[0, 5, 2399]]) and ids[3] is None
    assert srcs[1] == "img0-5.jpg" and srcs[3] is None
    s = reader.exact_scores(x[:2], np.array([[0, 1, -1], [1, 0, 5]]))
    unit = x / np.linalg.norm(x, axis=1, keepdims=True)
    assert s[0, 0] == pytest.approx(1.0, abs=1e-5)
    assert s[1, 2] == pytest.approx(float(unit[1] @ unit[5]), abs=1e-5)
    assert np.isnan(s[0, 2])
    assert reader.num_identities == 300 and reader.meta.model == "m"


def test_add_without_retraining(tmp_path, built):
    root, x, _ = built
    import shutil

    idx = tmp_path / "idx"
    shutil.copytree(root / "idx", idx)
    trained = sha256_file(idx / "trained.index")
    old_shard = sha256_file(idx / "shard-00000" / "index.faiss")
    x2, labels2 = write_collection(tmp_path / "new", n_ids=40, per_id=5, seed=7)
    m = add_collection(idx, tmp_path / "new", BuildOptions(shard_rows=1000))
    assert sha256_file(idx / "trained.index") == trained
    assert sha256_file(idx / "shard-00000" / "index.faiss") == old_shard
    assert len(m.shards) == 4 and m.rows == len(x) + len(x2)
    # the new collection numbered its faces 0..199 too: renumbered, no collision
    assert m.shards[-1].renumbered_from == len(x) and m.next_face_id == len(x) + len(x2)
    reader = open_index(idx)
    scores, fids = reader.search(x2[:20], k=1, nprobe=32)
    assert (fids[:, 0] >= len(x)).all()
    ids, _ = reader.lookup(fids[:, 0])
    assert list(ids) == list(labels2[:20])
    assert reader.num_identities == 340


def test_add_refuses_another_model(tmp_path, built):
    root, _, _ = built
    write_collection(tmp_path / "other", n_ids=5, per_id=2, model="other-model")
    with pytest.raises(ModelMismatchError, match="other"):
        add_collection(root / "idx", tmp_path / "other")
    write_collection(tmp_path / "d8", n_ids=5, per_id=2, dim=8)
    with pytest.raises(ModelMismatchError, match="dimension"):
        add_collection(root / "idx", tmp_path / "d8")


@pytest.mark.parametrize("spec", [IVF, "IVF32,PQ8np"])
def test_merged_index_gives_the_same_results_as_shards(tmp_path, spec):
    x, _ = write_collection(tmp_path / "c", n_ids=300, per_id=8)
    build_index(tmp_path / "c", tmp_path / "idx", opts(index_spec=spec))
    q = x[::13]
    before = open_index(tmp_path / "idx").search(q, k=5, nprobe=8, k_factor=4)
    info = merge_index(tmp_path / "idx")
    assert info["ondisk"] == ("fs" not in spec)
    reader = open_index(tmp_path / "idx")
    assert len(reader.parts) == 1
    after = reader.search(q, k=5, nprobe=8, k_factor=4)
    np.testing.assert_array_equal(before[1], after[1])
    np.testing.assert_allclose(before[0], after[0], atol=1e-6)
    # a shard added after the merge is searched beside the merged index
    write_collection(tmp_path / "new", n_ids=10, per_id=3, seed=3)
    add_collection(tmp_path / "idx", tmp_path / "new")
    assert len(open_index(tmp_path / "idx").parts) == 2


def test_too_few_vectors_fall_back_and_say_so(tmp_path):
    write_collection(tmp_path / "c", n_ids=20, per_id=5)
    m = build_index(tmp_path / "c", tmp_path / "idx", opts(index_spec="IVF1024,PQ8x4fsr"))
    assert m.factory == "Flat" and "Flat" in m.params["fallback"]
    write_collection(tmp_path / "c2", n_ids=250, per_id=8)
    m2 = build_index(tmp_path / "c2", tmp_path / "idx2", opts(index_spec="IVF1024,PQ8x4fsr"))
    assert m2.factory == "IVF64,PQ8x4fsr" and "IVF64" in m2.params["fallback"]


def test_centering_keeps_exact_cosine_scores(tmp_path):
    x, _ = write_collection(tmp_path / "c", n_ids=300, per_id=8)
    build_index(tmp_path / "c", tmp_path / "idx", opts(center=True))
    reader = open_index(tmp_path / "idx")
    assert reader.mean is not None
    scores, fids = reader.search(x[:10], k=3, nprobe=32, k_factor=10)
    ref_s, ref_rows = exact_topk(x, x[:10], 3)
    np.testing.assert_allclose(scores, ref_s, atol=1e-5)


def test_damaged_index_file_is_named(tmp_path, built):
    import shutil

    root, _, _ = built
    idx = tmp_path / "idx"
    shutil.copytree(root / "idx", idx)
    f = idx / "shard-00001" / "index.faiss"
    f.write_bytes(f.read_bytes()[:300])
    with pytest.raises(DataError, match="shard-00001/index.faiss"):
        open_index(idx)
    (idx / "shard-00002" / "index.faiss").write_bytes(b"garbage")
    with pytest.raises(DataError, match="checksum|damaged"):
        open_index(idx, verify=True)


def test_search_in_blocks_bounds_memory(built, monkeypatch):
    """Many queries x deep candidate lists are re-ranked block by block, same results."""
    from faceidx.index import search as search_mod

    root, x, _ = built
    reader = open_index(root / "idx")
    q = x[:300]
    whole = reader.search(q, k=7, nprobe=8, k_factor=4)
    monkeypatch.setattr(search_mod, "RERANK_BUDGET", 7 * 4 * 16 * 4 * 13)  # 13 queries a block
    blocked = reader.search(q, k=7, nprobe=8, k_factor=4)
    np.testing.assert_array_equal(whole[1], blocked[1])
    np.testing.assert_array_equal(whole[0], blocked[0])


def test_float16_vectors_halve_the_disk_and_keep_the_answers(tmp_path, built):
    root, x, labels = built
    m = build_index(root / "c", tmp_path / "f16", opts(vectors="float16"))
    assert m.params["vector_dtype"] == "float16"
    f16, f32 = open_index(tmp_path / "f16"), open_index(root / "idx")
    shard = f16.store.shards[0]
    assert shard.vectors.dtype == np.float16
    assert (tmp_path / "f16" / m.shards[0].dir / "vectors.npy").stat().st_size < \
        0.51 * (root / "idx" / m.shards[0].dir / "vectors.npy").stat().st_size
    lo, block = next(shard.vector_blocks(100))
    assert lo == 0 and block.dtype == np.float32
    np.testing.assert_allclose(block, f32.store.shards[0].vectors[:100], atol=1e-3)
    q = x[::11]
    s16, r16 = f16.search(q, k=5, nprobe=32, k_factor=20)
    s32, r32 = f32.search(q, k=5, nprobe=32, k_factor=20)
    assert np.mean(r16[:, 0] == r32[:, 0]) >= 0.99
    assert np.abs(s16[:, 0] - s32[:, 0]).max() < 2e-3  # float16 rounding of the stored side
    from faceidx.index.describe import describe_index
    from faceidx.index.writer import open_writer

    assert describe_index(tmp_path / "f16")["vector_dtype"] == "float16"
    with open_writer(tmp_path / "f16") as w:  # enrolment writes float16 too
        fids = w.add_arrays(x[:3] * -1, ["new", "new", "new"])
        w.erase(face_ids=fids[:1])
    again = open_index(tmp_path / "f16")
    assert again.store.shards[-1].vectors.dtype == np.float16
    assert again.lookup(fids)[0].tolist() == [None, "new", "new"]


def test_a_resumed_build_keeps_its_vector_dtype(tmp_path, built):
    root, _, _ = built
    build_index(root / "c", tmp_path / "i", opts(vectors="float16"))
    from faceidx.index.manifest import IndexManifest

    m = IndexManifest.load(tmp_path / "i")
    m.complete = False
    m.save(tmp_path / "i")
    with pytest.raises(DataError, match="another collection or index spec"):
        build_index(root / "c", tmp_path / "i", opts())


def test_a_trained_index_keeps_its_list_count_whatever_the_sample_cap(tmp_path, built, monkeypatch):
    """A sample cap lowers the lists of an index trained here (too few points per
    centroid), never those of one trained elsewhere: it needs no sample here."""
    import faceidx.index.build as build_mod

    root, _, _ = built
    monkeypatch.setattr(build_mod, "DEFAULT_MAX_TRAIN", 300)  # 300 // 30 = 10 lists trainable
    assert build_index(root / "c", tmp_path / "here", opts()).params["nlist"] < 32
    m = build_index(root / "c", tmp_path / "there", opts(trained=root / "idx" / "trained.index"))
    assert m.factory == IVF and m.params["nlist"] == 32
