"""Embedding: failed images can be retried, failure records hold no file content, and
decoding is bounded in memory from the header whatever the format."""

from __future__ import annotations

import json
import shutil

import numpy as np
import pytest
from click.testing import CliRunner

from faceidx.cli.main import cli
from faceidx.embedder import pipeline
from faceidx.embedder.decode import ImageError, decode_bytes, load_image
from faceidx.io import open_collection
from tests.embedder.standin import TinyFaceModel


@pytest.fixture
def tiny_model(monkeypatch):
    real = pipeline.open_model
    monkeypatch.setattr(pipeline, "open_model",
                        lambda spec, device="auto": TinyFaceModel() if spec == "tiny" else real(spec, device))


def embed(src, out, *extra):
    r = CliRunner().invoke(cli, ["embed", str(src), "--out", str(out), "--model", "tiny",
                                 "--workers", "0", "--device", "cpu", "--detector", "none",
                                 "--json", *extra])
    assert r.exit_code == 0, r.output
    return json.loads(r.stdout)


def test_retry_failed_embeds_an_image_that_was_truncated(tiny_model, tmp_path, shared_data):
    src = tmp_path / "photos"
    for person in ("s1", "s2"):
        (src / person).mkdir(parents=True)
        for i in (1, 2):
            shutil.copy(shared_data / "orl" / person / f"{i}.pgm", src / person / f"{i}.pgm")
    whole = (src / "s2" / "2.pgm").read_bytes()
    (src / "s2" / "2.pgm").write_bytes(whole[:len(whole) // 3])  # still being copied
    secret = src / "s2" / "notes.pgm"
    secret.write_text("root:x:0:0:root:/root:/bin/bash\n")  # not an image, named like one
    first = embed(src, tmp_path / "emb")
    assert first["faces"] == 3 and first["failures"] == {"truncated": 1, "not_an_image": 1}
    log = (tmp_path / "emb" / "failures.jsonl").read_text()
    assert "root:x" not in log and "/bin/bash" not in log  # no file content in the records
    (src / "s2" / "2.pgm").write_bytes(whole)  # the copy finished
    again = embed(src, tmp_path / "emb")
    assert again["faces"] == 0 and again["skipped"] == 5  # a plain rerun skips failures
    retried = embed(src, tmp_path / "emb", "--retry-failed")
    assert retried["faces"] == 1 and retried["failures"] == {"not_an_image": 1}
    batch = open_collection(tmp_path / "emb").read_all()
    assert len(batch.face_ids) == 4 and len(set(batch.sources)) == 4
    rows = [json.loads(x) for x in (tmp_path / "emb" / "failures.jsonl").read_text().splitlines()]
    assert [r["reason"] for r in rows] == ["not_an_image"]


def test_huge_png_is_refused_from_its_header(tmp_path):
    from PIL import Image

    Image.new("L", (7999, 7999)).save(tmp_path / "bomb.png")  # ~64 MP, a few hundred KB
    assert (tmp_path / "bomb.png").stat().st_size < 1_000_000
    with pytest.raises(ImageError) as err:
        load_image(tmp_path / "bomb.png")
    assert err.value.code == "too_large" and "MiB" in str(err.value)


def test_decode_budget_applies_to_every_format(tmp_path):
    from PIL import Image

    grey16 = Image.fromarray(np.full((300, 400), 40_000, np.uint16))
    grey16.save(tmp_path / "deep.png")
    rgb = load_image(tmp_path / "deep.png")
    assert rgb.shape == (300, 400, 3) and rgb.dtype == np.uint8 and rgb[0, 0, 0] == 155
    need = decode_bytes(400, 300, "I;16")
    with pytest.raises(ImageError, match="too_large"):
        load_image(tmp_path / "deep.png", max_bytes=need - 1)
    Image.new("RGB", (800, 800), (10, 20, 30)).save(tmp_path / "big.jpg")
    small = load_image(tmp_path / "big.jpg", max_bytes=decode_bytes(400, 400, "RGB"))
    assert small.shape[0] <= 400  # JPEG: reduced while decoding instead of refused
