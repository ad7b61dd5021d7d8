"""The batch runner with a tiny stand-in model: rows, failures, TTA, workers, resume."""

from __future__ import annotations

import json
import shutil

import numpy as np
import pytest
import torch
from PIL import Image

from faceidx.embedder.align import face_chips, mirror
from faceidx.embedder.decode import load_image
from faceidx.embedder.encode import Encoder
from faceidx.embedder.jpeg_dlib import dlib_pixels
from faceidx.embedder.pipeline import embed_paths, embed_source, read_failures
from faceidx.embedder.sources import SourceItem, list_source
from faceidx.errors import DataError
from faceidx.io import open_collection
from tests.embedder.standin import TinyFaceModel

FACES = [
    "lfw-subset/Aaron_Eckhart/Aaron_Eckhart_0001.jpg",
    "lfw-subset/Ann_Veneman/Ann_Veneman_0001.jpg",
    "lfw-subset/Ann_Veneman/Ann_Veneman_0004.jpg",
    "lfw-subset/Abdullah_Gul/Abdullah_Gul_0001.jpg",
]


@pytest.fixture
def small_tree(tmp_path, shared_data):
    """4 real faces in 3 identity folders, plus 3 bad files in a 4th."""
    root = tmp_path / "src"
    for rel in FACES:
        dst = root / rel.split("/")[1] / rel.split("/")[2]
        dst.parent.mkdir(parents=True, exist_ok=True)
        shutil.copy(shared_data / rel, dst)
    bad = root / "Zz_Bad"
    bad.mkdir()
    (bad / "empty.jpg").write_bytes(b"")
    (bad / "notes").write_text("no pixels here")
    Image.new("RGB", (120, 120), (90, 90, 90)).save(bad / "blank.png")  # decodes, no face
    return root


class Failing(TinyFaceModel):
    """Raises on its `fail_at`-th forward call: a run killed part-way."""

    def __init__(self, fail_at: int):
        super().__init__()
        self.calls, self.fail_at = 0, fail_at

    def forward(self, x):
        self.calls += 1
        if self.calls == self.fail_at:
            raise KeyboardInterrupt("killed")
        return super().forward(x)


def _rows(out):
    batch = open_collection(out).read_all()
    return {s: (i, e) for s, i, e in zip(batch.sources, batch.identities, batch.embeddings,
                                         strict=True)}, batch


def test_rows_failures_and_extra_columns(small_tree, tmp_path):
    out = tmp_path / "emb"
    summary = embed_source(list_source(small_tree), out, TinyFaceModel(), device="cpu")
    assert (summary.images, summary.processed, summary.faces) == (7, 7, 4)
    assert summary.failures == {"empty": 1, "not_an_image": 1, "no_face": 1}
    rows, batch = _rows(out)
    assert sorted(i for i, _ in rows.values()) == ["Aaron_Eckhart", "Abdullah_Gul", "Ann_Veneman",
                                                   "Ann_Veneman"]
    assert np.allclose(np.linalg.norm(batch.embeddings, axis=1), 1, atol=1e-5)
    assert batch.extra["det_score"].dtype == np.float32 and (batch.extra["det_score"] > 0).all()
    boxes = np.stack(batch.extra["box"])
    assert boxes.shape == (4, 4) and (boxes[:, 2] > boxes[:, 0]).all()
    failures = read_failures(out / "failures.jsonl")
    assert {(f["path"].rsplit("/", 1)[1], f["reason"]) for f in failures} == {
        ("empty.jpg", "empty"), ("notes", "not_an_image"), ("blank.png", "no_face")}
    assert json.loads((out / "embed.json").read_text())["detector"] == "hog"


def test_rows_equal_the_model_on_reference_chips(small_tree, tmp_path):
    out = tmp_path / "emb"
    embed_source(list_source(small_tree), out, TinyFaceModel(), device="cpu", batch_size=3)
    rows, _ = _rows(out)
    model = TinyFaceModel()
    for source, (_, emb) in rows.items():
        path = small_tree / source                                   # stored relative to the root
        chip = face_chips(dlib_pixels(path, load_image(path)))[0].chip   # JPEGs as dlib decodes them
        with torch.no_grad():
            want = model(torch.from_numpy(chip).permute(2, 0, 1)[None].float()).numpy()[0]
        np.testing.assert_allclose(emb, want, atol=1e-5)


def test_flip_tta_averages_chip_and_mirror(shared_data):
    chip = face_chips(load_image(shared_data / FACES[0]))[0].chip
    model = TinyFaceModel()
    plain = Encoder(model, "cpu", "none")(np.stack([chip, mirror(chip)]))
    flipped = Encoder(model, "cpu", "flip")(chip[None])[0]
    want = plain[0] + plain[1]
    np.testing.assert_allclose(flipped, want / np.linalg.norm(want), atol=1e-6)
    assert not np.allclose(plain[0], plain[1], atol=1e-3)  # the mirror really differs


def test_workers_give_the_same_rows_in_the_same_order(small_tree, tmp_path):
    items = list_source(small_tree)
    embed_source(items, tmp_path / "w0", TinyFaceModel(), device="cpu", workers=0)
    embed_source(items, tmp_path / "w2", TinyFaceModel(), device="cpu", workers=2)
    a, b = open_collection(tmp_path / "w0").read_all(), open_collection(tmp_path / "w2").read_all()
    assert list(a.sources) == list(b.sources)
    np.testing.assert_array_equal(a.embeddings, b.embeddings)


def test_resume_after_a_kill_has_no_duplicate_and_no_missing_row(small_tree, tmp_path):
    items = list_source(small_tree)
    embed_source(items, tmp_path / "once", TinyFaceModel(), device="cpu", batch_size=1)
    out = tmp_path / "killed"
    with pytest.raises(KeyboardInterrupt):
        embed_source(items, out, Failing(fail_at=4), device="cpu", batch_size=1, shard_rows=2)
    assert open_collection(out, allow_incomplete=True).num_rows == 2  # one finished shard
    summary = embed_source(items, out, TinyFaceModel(), device="cpu", batch_size=1, shard_rows=2)
    assert summary.skipped >= 2
    want, _ = _rows(tmp_path / "once")
    got, batch = _rows(out)
    assert len(batch.sources) == len(set(batch.sources)) == 4
    assert got.keys() == want.keys()
    for s in want:
        np.testing.assert_allclose(got[s][1], want[s][1], atol=1e-6)
    assert len(read_failures(out / "failures.jsonl")) == 3  # failures not repeated either
    again = embed_source(items, out, TinyFaceModel(), device="cpu")
    assert (again.processed, again.skipped, again.rows_total) == (0, 7, 4)


def test_resume_completes_an_image_split_across_shards(tmp_path, shared_data):
    """Policy all: a 2-face image cut by a shard boundary gets only its missing face."""
    root = tmp_path / "pairs"
    root.mkdir()
    for k in range(3):
        a = Image.open(shared_data / FACES[k]).convert("RGB")
        b = Image.open(shared_data / FACES[k + 1]).convert("RGB").resize((180, 180))
        canvas = Image.new("RGB", (450, 250), (128, 128, 128))
        canvas.paste(a, (0, 0))
        canvas.paste(b, (260, 35))
        canvas.save(root / f"group{k}.png")
    items = list_source(root)
    out = tmp_path / "emb"
    with pytest.raises(KeyboardInterrupt):  # shard 0 = group0 (2 faces) + group1's first face
        embed_source(items, out, Failing(fail_at=3), device="cpu", batch_size=1, shard_rows=3,
                     policy="all")
    first = open_collection(out, allow_incomplete=True).read_all()
    assert list(first.sources) == ["group0.png", "group0.png", "group1.png"]  # relative to root
    embed_source(items, out, TinyFaceModel(), device="cpu", batch_size=1, shard_rows=3, policy="all")
    embed_source(items, tmp_path / "once", TinyFaceModel(), device="cpu", policy="all")
    final, once = open_collection(out).read_all(), open_collection(tmp_path / "once").read_all()
    got = sorted(zip(final.sources, map(tuple, final.extra["box"]), strict=True))
    want = sorted(zip(once.sources, map(tuple, once.extra["box"]), strict=True))
    assert got == want  # every face once: none missing, none written twice
    assert [s for s, _ in got].count("group1.png") == 2


def test_resume_refuses_other_settings(small_tree, tmp_path):
    items = list_source(small_tree)
    embed_source(items[:2], tmp_path / "emb", TinyFaceModel(), device="cpu")
    with pytest.raises(DataError, match="tta 'none' -> 'flip'") as info:
        embed_source(items, tmp_path / "emb", TinyFaceModel(), device="cpu", tta="flip")
    assert "embed.json" in str(info.value)


def test_embed_paths_in_memory(small_tree):
    paths = sorted(str(p) for p in small_tree.rglob("*") if p.is_file())
    result = embed_paths(paths, model=TinyFaceModel(), device="cpu", batch_size=2)
    assert result.embeddings.shape == (4, 16) and result.embeddings.dtype == np.float32
    assert len(result.sources) == 4 and result.boxes.shape == (4, 4) and result.scores.shape == (4,)
    assert sorted(r for _, r in result.failures) == ["empty", "no_face", "not_an_image"]
    assert result.meta.model == "tiny-standin" and result.meta.dim == 16


def test_detector_none_on_aligned_crops(shared_data, tmp_path):
    items = [SourceItem(str(shared_data / f"orl/s{k}/1.pgm"), f"s{k}") for k in (1, 2, 3)]
    summary = embed_source(items, tmp_path / "orl", TinyFaceModel(), device="cpu", detector="none")
    assert summary.faces == 3 and not summary.failures
    batch = open_collection(tmp_path / "orl").read_all()
    assert np.isnan(batch.extra["det_score"]).all()
    assert [tuple(b) for b in batch.extra["box"]] == [(0, 0, 91, 111)] * 3


def test_a_failure_line_cut_by_a_kill_is_redone(small_tree, tmp_path):
    items = list_source(small_tree)
    out = tmp_path / "emb"
    embed_source(items, out, TinyFaceModel(), device="cpu")
    path = out / "failures.jsonl"
    lines = path.read_text().splitlines()
    path.write_text("\n".join(lines[:-1]) + "\n" + lines[-1][:20])  # the last line cut mid-way
    again = embed_source(items, out, TinyFaceModel(), device="cpu")
    assert again.processed == 1 and sum(again.failures.values()) == 1
    assert len(read_failures(path)) == 3 and again.rows_total == 4
