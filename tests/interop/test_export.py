"""export-model: the dlib port as ONNX and TorchScript gives the native vectors on real faces,
embeds, indexes and answers queries like the native model; cards that lie are refused."""

from __future__ import annotations

import json
import shutil

import numpy as np
import pytest
from click.testing import CliRunner

from faceidx.cli.main import cli
from faceidx.embedder.modelcard import CARD_NAME
from faceidx.errors import DataError

LFW = ["Aaron_Eckhart/Aaron_Eckhart_0001.jpg", "Ai_Sugiyama/Ai_Sugiyama_0001.jpg",
       "Bill_Gates/Bill_Gates_0001.jpg", "George_W_Bush/George_W_Bush_0001.jpg",
       "Hugo_Chavez/Hugo_Chavez_0001.jpg", "Ana_Guevara/Ana_Guevara_0001.jpg"]
MIN_COSINE = 0.99999


def run(*args):
    return CliRunner().invoke(cli, [str(a) for a in args])


@pytest.fixture(scope="module")
def exported(tmp_path_factory):
    out = tmp_path_factory.mktemp("export") / "dlib"
    r = run("export-model", "dlib-resnet-v1", "--out", out, "--json")
    assert r.exit_code == 0, r.output
    rows = [json.loads(line) for line in r.stdout.splitlines()]
    assert {row["format"] for row in rows} == {"onnx", "torchscript"}
    return out


@pytest.fixture(scope="module")
def lfw_chips(shared_data):
    from faceidx.embedder.align import face_chips
    from faceidx.embedder.decode import load_image

    chips = [face_chips(load_image(shared_data / "lfw-subset" / p))[0].chip for p in LFW]
    return np.stack(chips)


@pytest.mark.parametrize("fmt", ["onnx", "torchscript"])
def test_export_gives_native_vectors_on_real_faces(exported, lfw_chips, fmt):
    from faceidx.embedder.registry import load_model

    native = load_model("dlib-resnet-v1")
    model = load_model(exported / fmt)
    card = json.loads((exported / fmt / CARD_NAME).read_text())
    assert (model.name, model.version, model.dim, model.template) == \
        ("dlib-resnet-v1", "1", 128, "dlib-150")
    assert card["format"] == fmt and card["parity"]["min_cosine"] >= MIN_COSINE
    want = native.embed_chips(lfw_chips, batch_size=4)
    got = model.embed_chips(lfw_chips, batch_size=4)
    assert np.sum(want * got, axis=1).min() >= MIN_COSINE
    # different people stay different: the test is not passing on constant vectors
    assert (want @ want.T)[~np.eye(len(want), dtype=bool)].max() < 0.95
    raw = model.embed_chips(lfw_chips[:2], raw=True)
    np.testing.assert_allclose(raw, native.embed_chips(lfw_chips[:2], raw=True), atol=1e-4)


def test_onnx_export_embeds_indexes_and_answers_like_native(exported, shared_data, tmp_path):
    orl = tmp_path / "orl"
    for person in ("s1", "s2", "s3", "s4", "s5", "s6"):
        (orl / person).mkdir(parents=True)
        for i in (1, 2, 3):
            shutil.copy(shared_data / "orl" / person / f"{i}.pgm", orl / person)
    common = ["--detector", "none", "--workers", "0", "--device", "cpu", "-q"]
    assert run("embed", orl, "--out", tmp_path / "native", *common).exit_code == 0
    r = run("embed", orl, "--out", tmp_path / "onnx", "--model", exported / "onnx", *common)
    assert r.exit_code == 0, r.output
    from faceidx.io import open_collection

    a = open_collection(tmp_path / "native").read_all()
    b = open_collection(tmp_path / "onnx").read_all()
    assert list(a.sources) == list(b.sources) and a.embeddings.shape == (18, 128)
    assert np.sum(a.embeddings * b.embeddings, axis=1).min() >= MIN_COSINE

    r = run("build", tmp_path / "onnx", "--out", tmp_path / "index", "--tune-queries", "10", "-q")
    assert r.exit_code == 0, r.output
    probes = [orl / "s1" / "1.pgm", orl / "s4" / "2.pgm"]
    answers = {}
    for name, model in (("native", "dlib-resnet-v1"), ("onnx", exported / "onnx")):
        r = run("query", tmp_path / "index", *probes, "--model", model, "--detector", "none",
                "--threshold", "0.5", "--device", "cpu", "--json")
        assert r.exit_code == 0, r.output
        answers[name] = [json.loads(line) for line in r.stdout.splitlines()]
    for x, y in zip(answers["native"], answers["onnx"], strict=True):
        assert x["decision"] == y["decision"] == x["candidates"][0]["identity"]
        assert [c["identity"] for c in x["candidates"]] == [c["identity"] for c in y["candidates"]]
        assert abs(x["score"] - y["score"]) < 1e-5
    assert [a["decision"] for a in answers["onnx"]] == ["s1", "s4"]

    # a card of another model (same network, other name) is refused by the index
    other = tmp_path / "other"
    shutil.copytree(exported / "torchscript", other)
    card = json.loads((other / CARD_NAME).read_text())
    (other / CARD_NAME).write_text(json.dumps({**card, "name": "someone-else"}))
    r = run("query", tmp_path / "index", probes[0], "--model", other, "--detector", "none",
            "--threshold", "0.5", "--device", "cpu")
    assert r.exit_code == 1 and "probe model 'someone-else'" in r.output


@pytest.mark.parametrize("fmt", ["onnx", "torchscript"])
def test_cards_that_disagree_with_the_network(exported, tmp_path, fmt):
    from faceidx.embedder.registry import load_model

    def lying(**changes):
        d = tmp_path / f"{fmt}-{len(list(tmp_path.iterdir()))}"
        shutil.copytree(exported / fmt, d)
        card = json.loads((d / CARD_NAME).read_text())
        (d / CARD_NAME).write_text(json.dumps({**card, **changes}))
        return d

    with pytest.raises(DataError, match=r"model outputs shape \(1, 128\) but the card says "
                                        "embedding_dim 512") as err:
        load_model(lying(embedding_dim=512))
    assert err.value.path.endswith(f"model.{'onnx' if fmt == 'onnx' else 'pt'}")
    with pytest.raises(DataError, match="112"):
        load_model(lying(input_size=112, template="arcface-112"))


def test_train_init_takes_a_card_but_not_a_runtime(exported, tmp_path):
    from faceidx.train.nets import initial_net

    with pytest.raises(DataError, match="cannot be trained"):
        initial_net(str(exported / "onnx"), 128)
    native_dir = tmp_path / "m"
    native_dir.mkdir()
    (native_dir / "w.dat").symlink_to(__import__("faceidx.embedder.weights", fromlist=["x"])
                                      .dlib_resnet_path())
    (native_dir / CARD_NAME).write_text(json.dumps(
        {"name": "dlib-copy", "version": "1", "format": "dlib-dat", "file": "w.dat",
         "embedding_dim": 128}))
    net, arch = initial_net(str(native_dir), 128)
    assert arch == "dlib-resnet" and net.training


def test_export_refuses_an_export(exported, tmp_path):
    from faceidx.embedder.exporter import export_model

    with pytest.raises(DataError, match="already an exported onnx model"):
        export_model(exported / "onnx", tmp_path / "again")


def test_export_of_a_trained_model_dir(tmp_path):
    """A MODEL_DIR exports to TorchScript with its identity; an operator ONNX lacks
    (small-cnn's antialiased resize) is a DataError naming the model and the operator."""
    import torch

    from faceidx.embedder.exporter import check_chips, export_model
    from faceidx.embedder.registry import ARCHITECTURES, load_model
    from faceidx.train.export import export_model as write_model_dir

    torch.manual_seed(0)
    write_model_dir(tmp_path / "m", ARCHITECTURES["small-cnn"](32), "small-cnn", 32, "scratch")
    with pytest.raises(DataError, match=r"m: cannot export onnx: .*upsample.*written: torchscript"):
        export_model(tmp_path / "m", tmp_path / "x")
    assert not (tmp_path / "x" / "onnx").exists()
    native, scripted = load_model(tmp_path / "m"), load_model(tmp_path / "x" / "torchscript")
    assert (scripted.name, scripted.version, scripted.dim) == (native.name, native.version, 32)
    chips = check_chips(150, n=4, seed=5)
    assert np.sum(native.embed_chips(chips) * scripted.embed_chips(chips), 1).min() >= MIN_COSINE
