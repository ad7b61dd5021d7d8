"""Inception-ResNet-v1: output shape and norm, a short ORL run that lowers the loss, export/load."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from faceidx.embedder.inception_resnet import InceptionResNetV1
from faceidx.train.data import to_input
from faceidx.train.loop import TrainConfig, train
from faceidx.train.losses import TripletMarginLoss
from faceidx.train.miners import make_miner
from faceidx.train.nets import initial_net


@pytest.fixture(scope="module")
def net():
    return initial_net("scratch", 128, "inception-resnet-v1", seed=0)[0]


def test_output_shape_and_unit_norm(net):
    net.eval()
    g = torch.Generator().manual_seed(0)
    with torch.no_grad():
        for size in (160, 150):  # 150x150 pipeline chips are resized to the 160x160 input
            y = net(torch.rand(2, 3, size, size, generator=g) * 255)
            assert y.shape == (2, 128)
            torch.testing.assert_close(y.norm(dim=1), torch.ones(2))
    assert not any("aux" in name for name, _ in net.named_modules())
    assert net.bottleneck.out_features == 128 and net.bottleneck.bias is None
    assert net.stem(torch.zeros(1, 3, 160, 160)).shape == (1, 256, 17, 17)
    with pytest.raises(ValueError, match="embedding_dim"):
        InceptionResNetV1(0)


def _loss_on(net, chips, labels) -> float:
    """The triplet loss (batch-all) of `chips`, batch-norm on batch statistics as in training."""
    loss = TripletMarginLoss(0.2, make_miner("batch-all", 0.2))
    net.train()
    with torch.no_grad():
        return float(loss(net(to_input(chips)), torch.as_tensor(labels)).loss)


def test_short_orl_run_lowers_the_loss(orl_chips, tmp_path):
    keep = np.isin(np.array(orl_chips.labels), ["s1", "s2", "s3", "s4"])
    rows = np.flatnonzero(keep)
    rows = np.concatenate([rows[np.array(orl_chips.labels)[rows] == s][:4] for s in ("s1", "s2", "s3", "s4")])
    mask = np.zeros(len(orl_chips), dtype=bool)
    mask[rows] = True
    small = orl_chips.subset(mask)  # 4 identities x 4 images: one P x K batch
    labels = np.repeat(np.arange(4), 4)
    chips = small.take(np.arange(16))
    net, arch = initial_net("scratch", 128, "inception-resnet-v1", seed=1)
    before = _loss_on(net, chips, labels)
    config = TrainConfig(architecture=arch, embedding_dim=128, mining="batch-all", p=4, k=4, epochs=1,
                         lr=1e-3, augment=False, batches_per_epoch=2, seed=0)
    result = train(net, small, tmp_path / "m", config)
    card = json.loads((tmp_path / "m" / "faceidx-model.json").read_text())
    assert card["architecture"] == "inception-resnet-v1" and card["embedding_dim"] == 128
    assert card["network_input_size"] == 160
    from faceidx.embedder.registry import load_model

    model = load_model(tmp_path / "m")  # what `faceidx embed --model` runs
    net.eval()
    with torch.no_grad():
        want = net(to_input(chips[:3])).numpy()
    np.testing.assert_allclose(model.embed_chips(chips[:3]), want, atol=1e-5)
    after = _loss_on(net, chips, labels)
    assert after < 0.8 * before, (before, after, result.history)
