"""Model cards: validation with errors naming the file, and loading by card (no network run)."""

from __future__ import annotations

import json

import pytest

from faceidx.embedder.modelcard import CARD_NAME, card_path, parse_card, read_card
from faceidx.errors import DataError

GOOD = {"name": "arcface-r50", "version": "1", "format": "onnx", "file": "model.onnx",
        "embedding_dim": 512, "input_size": 112, "template": "arcface-112",
        "channel_order": "BGR", "mean": 127.5, "std": [128, 128, 128]}


def write(tmp_path, **changes):
    card = {**GOOD, **changes}
    card = {k: v for k, v in card.items() if v is not None}
    path = tmp_path / CARD_NAME
    path.write_text(json.dumps(card))
    return path


def test_good_card_reads_and_round_trips(tmp_path):
    card = read_card(write(tmp_path))
    assert card.identity == ("arcface-r50", "1", 512)
    assert card.mean == (127.5,) * 3 and card.std == (128.0,) * 3
    assert card.weights == tmp_path / "model.onnx" and card.channel_order == "BGR"
    again = parse_card(card.to_json(), tmp_path / CARD_NAME)
    assert again == card


def test_old_model_dir_config_is_a_faceidx_card(tmp_path):
    path = tmp_path / CARD_NAME
    path.write_text(json.dumps({"name": "t", "version": "v", "architecture": "small-cnn",
                                "embedding_dim": 64, "input_size": 150, "base": "scratch"}))
    card = read_card(path)
    assert (card.format, card.template, card.input_size, card.architecture) == \
        ("faceidx", "dlib-150", 150, "small-cnn")
    assert card.weights.name == "model.safetensors"


@pytest.mark.parametrize("changes, message", [
    ({"name": None}, "lacks 'name'"),
    ({"embedding_dim": None}, "lacks 'embedding_dim'"),
    ({"embedding_dim": 0}, "embedding_dim must be a positive integer"),
    ({"embedding_dim": True}, "embedding_dim must be a positive integer"),
    ({"input_size": 150}, "input_size 150 does not fit template 'arcface-112'"),
    ({"template": "mtcnn-96"}, "unknown alignment template 'mtcnn-96'"),
    ({"format": "tflite"}, "unknown model format 'tflite'"),
    ({"channel_order": "GRB"}, "channel_order must be"),
    ({"mean": [1, 2]}, "mean must be a number or a list of 3"),
    ({"std": [1, 0, 1]}, "std must be positive"),
    ({"file": "../elsewhere.onnx"}, "file must be a path inside the model folder"),
    ({"format": "faceidx"}, "lacks 'architecture'"),
])
def test_bad_cards_name_the_file(tmp_path, changes, message):
    path = write(tmp_path, **changes)
    with pytest.raises(DataError, match=message) as err:
        read_card(path)
    assert err.value.path == str(path)


def test_unreadable_cards(tmp_path):
    with pytest.raises(DataError, match="not a model directory"):
        read_card(tmp_path / CARD_NAME)
    (tmp_path / CARD_NAME).write_text("[1, 2]")
    with pytest.raises(DataError, match="not a JSON object"):
        read_card(tmp_path / CARD_NAME)
    (tmp_path / "x.json").write_text("{oops")
    with pytest.raises(DataError, match="x.json: malformed"):
        read_card(tmp_path / "x.json")


def test_card_path_rules(tmp_path):
    assert card_path(tmp_path) == tmp_path / CARD_NAME
    model = tmp_path / "net.onnx"
    model.write_bytes(b"x")
    assert card_path(model) is None
    (tmp_path / "net.onnx.json").write_text("{}")
    assert card_path(model) == tmp_path / "net.onnx.json"
    assert card_path(tmp_path / "c.json") == tmp_path / "c.json"


def test_registry_refuses_a_model_file_without_card_and_a_missing_file(tmp_path):
    from faceidx.embedder.registry import load_model

    (tmp_path / "net.onnx").write_bytes(b"not onnx")
    with pytest.raises(DataError, match="net.onnx: a model file needs its card beside it"):
        load_model(tmp_path / "net.onnx")
    (tmp_path / "net.onnx.json").write_text(json.dumps({**GOOD, "file": "net.onnx"}))
    with pytest.raises(DataError, match="net.onnx: cannot load ONNX model"):
        load_model(tmp_path / "net.onnx")
    write(tmp_path, file="absent.onnx")
    with pytest.raises(DataError, match="absent.onnx: model file not found"):
        load_model(tmp_path)
