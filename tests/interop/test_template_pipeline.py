"""A model whose card asks for the ArcFace 112x112 template gets five-point chips from the
embed pipeline, preprocessed as its card says (BGR, mean/std), run on onnxruntime."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch
from torch import nn

from faceidx.embedder.modelcard import CARD_NAME

LFW = ["Aaron_Eckhart/Aaron_Eckhart_0001.jpg", "Bill_Gates/Bill_Gates_0001.jpg",
       "Hugo_Chavez/Hugo_Chavez_0001.jpg"]


def tiny_net() -> nn.Module:
    torch.manual_seed(0)
    return nn.Sequential(nn.Conv2d(3, 8, 5, stride=4), nn.ReLU(), nn.Conv2d(8, 16, 3, stride=2),
                         nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(16, 32)).eval()


@pytest.fixture(scope="module")
def arcface_like(tmp_path_factory):
    """An ONNX model with a static 3x112x112 input and an ArcFace-style card."""
    d = tmp_path_factory.mktemp("arc")
    net = tiny_net()
    torch.onnx.export(net, (torch.zeros(1, 3, 112, 112),), str(d / "net.onnx"), dynamo=False,
                      input_names=["x"], output_names=["y"], dynamic_axes={"x": {0: "n"}})
    (d / CARD_NAME).write_text(json.dumps({
        "name": "tiny-arc", "version": "1", "format": "onnx", "file": "net.onnx",
        "embedding_dim": 32, "input_size": 112, "template": "arcface-112",
        "channel_order": "BGR", "mean": 127.5, "std": 128.0}))
    return d, net


def test_pipeline_cuts_template_chips_for_the_card(arcface_like, shared_data):
    pytest.importorskip("dlib")
    from faceidx.embedder.decode import load_image
    from faceidx.embedder.detect import detect_one, make_aligner
    from faceidx.embedder.jpeg_dlib import dlib_pixels
    from faceidx.embedder.landmarks import Landmarks68, five_from_68
    from faceidx.embedder.pipeline import embed_paths
    from faceidx.embedder.sources import SourceItem
    from faceidx.embedder.templates import TEMPLATES, five_point_chip

    folder, net = arcface_like
    paths = [shared_data / "lfw-subset" / p for p in LFW]
    res = embed_paths(paths, model=folder, detector="hog", device="cpu")
    assert res.embeddings.shape == (3, 32) and res.meta.model == "tiny-arc"

    # by hand: the detector's box -> 68 landmarks -> five points -> warp -> BGR, mean, std
    aligner, marks = make_aligner("hog"), Landmarks68()
    want = []
    for p in paths:
        pixels = dlib_pixels(str(p), load_image(p))  # the pipeline decodes JPEGs as dlib does
        box = detect_one(SourceItem(str(p), None), aligner).chips[0].box
        chip = five_point_chip(pixels, five_from_68(marks(pixels, box)), TEMPLATES["arcface-112"])
        x = torch.from_numpy(chip[..., ::-1].copy()).permute(2, 0, 1)[None].float()
        with torch.no_grad():
            want.append(torch.nn.functional.normalize(net((x - 127.5) / 128.0), dim=1)[0].numpy())
    np.testing.assert_allclose(res.embeddings, np.stack(want), atol=1e-5)


def test_detector_none_refuses_another_template(arcface_like, tmp_path):
    from faceidx.embedder.detect import make_aligner
    from faceidx.errors import DataError

    with pytest.raises(DataError, match="template is 'arcface-112'"):
        make_aligner("none", "arcface-112")
