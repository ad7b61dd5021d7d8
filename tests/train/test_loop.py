"""The training loop on real faces (ORL), checkpoints, resume, NaN stop, export."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from faceidx.errors import DataError, ModelMismatchError, TrainingError
from faceidx.train.data import split_identities
from faceidx.train.loop import TrainConfig, train, training_paths
from faceidx.train.nets import initial_net
from faceidx.train.validate import embed_chips, make_validator

MARGIN = 0.2


def _split(orl_chips):
    held = split_identities(orl_chips.labels, 0.25, seed=0)
    return orl_chips.subset(~held), orl_chips.subset(held)


def _mean_triplet_loss(net, chips) -> float:
    """Mean of max(0, d_ap - d_an + margin) over EVERY valid triplet of `chips` (no mining)."""
    net.eval()
    e = torch.from_numpy(embed_chips(net, chips)).double()
    d = torch.cdist(e, e) ** 2
    lab = np.array(chips.labels)
    total, count = 0.0, 0
    for a in range(len(lab)):
        pos = np.flatnonzero((lab == lab[a]) & (np.arange(len(lab)) != a))
        neg = np.flatnonzero(lab != lab[a])
        loss = torch.relu(d[a, pos][:, None] - d[a, neg][None, :] + MARGIN)
        total += float(loss.sum())
        count += loss.numel()
    return total / count


def _config(**kw) -> TrainConfig:
    base = dict(architecture="small-cnn", embedding_dim=64, margin=MARGIN, mining="batch-all",
                p=8, k=4, epochs=6, lr=1e-3, seed=0)
    base.update(kw)
    return TrainConfig(**base)


def test_orl_from_scratch_lowers_loss_and_beats_untrained(orl_chips, tmp_path):
    train_set, val_set = _split(orl_chips)
    validate = make_validator(val_set, seed=0)
    net, _ = initial_net("scratch", 64, "small-cnn", seed=0)
    loss_before = _mean_triplet_loss(net, train_set)
    result = train(net, train_set, tmp_path / "m", _config(), validate=validate)
    loss_after = _mean_triplet_loss(net, train_set)
    h = result.history
    assert [x["epoch"] for x in h] == list(range(7))
    assert loss_after < 0.7 * loss_before, (loss_before, loss_after)
    # about 900 held-out pairs: a standard error near 0.014, so 0.05 is a real gain
    assert h[-1]["val_accuracy"] > h[0]["val_accuracy"] + 0.05, [x["val_accuracy"] for x in h]
    assert h[-1]["active_fraction"] < h[1]["active_fraction"]
    # the model directory is what the registry loads, and gives the trained net's vectors
    from faceidx.embedder.registry import load_model

    model = load_model(tmp_path / "m")
    assert model.dim == 64 and model.name == "trained-small-cnn"
    np.testing.assert_allclose(model.embed_chips(val_set.take(range(5))), embed_chips(net, val_set)[:5],
                               atol=1e-5)
    assert result.curves.exists() and result.curves.read_bytes()[:4] == b"\x89PNG"
    assert json.loads(training_paths(tmp_path / "m")["history"].read_text()) == h


@pytest.fixture
def one_thread():
    """CPU kernels reduce in thread-dependent order; one thread makes runs bit-reproducible."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


def test_resume_continues_to_the_same_weights(orl_chips, tmp_path, one_thread):
    train_set, _ = _split(orl_chips)
    cfg = _config(epochs=2, batches_per_epoch=3)
    net_a, _ = initial_net("scratch", 64, "small-cnn", seed=0)
    train(net_a, train_set, tmp_path / "a", cfg)
    net_b, _ = initial_net("scratch", 64, "small-cnn", seed=0)
    train(net_b, train_set, tmp_path / "b", _config(epochs=1, batches_per_epoch=3))
    with pytest.raises(DataError, match="pass --resume"):
        train(initial_net("scratch", 64, "small-cnn")[0], train_set, tmp_path / "b", cfg)
    saved = torch.load(training_paths(tmp_path / "b")["checkpoint"], weights_only=True)["model"]
    net_c, _ = initial_net("scratch", 64, "small-cnn", seed=5)  # other init: resume must overwrite
    result = train(net_c, train_set, tmp_path / "b", cfg, resume=True)
    assert [x["epoch"] for x in result.history] == [1, 2]
    uninterrupted = json.loads(training_paths(tmp_path / "a")["history"].read_text())
    assert [h["loss"] for h in result.history] == [h["loss"] for h in uninterrupted]
    for (k, va), vc in zip(net_a.state_dict().items(), net_c.state_dict().values(), strict=True):
        assert torch.equal(va, vc), k
    moved = max(float((saved[k] - v).abs().max()) for k, v in net_c.state_dict().items()
                if v.is_floating_point())
    assert moved > 2e-2


def test_resume_with_another_architecture_is_refused(orl_chips, tmp_path):
    train_set, _ = _split(orl_chips)
    train(initial_net("scratch", 64, "small-cnn")[0], train_set, tmp_path / "m",
          _config(epochs=1, batches_per_epoch=1))
    ckpt = training_paths(tmp_path / "m")["checkpoint"]
    with pytest.raises(ModelMismatchError, match="small-cnn with 64-D.*asks for small-cnn with 32-D"):
        train(initial_net("scratch", 32, "small-cnn")[0], train_set, tmp_path / "m",
              _config(embedding_dim=32, epochs=2), resume=True)
    with pytest.raises(ModelMismatchError, match=str(ckpt)):
        train(initial_net("scratch", 128, "dlib-resnet")[0], train_set, tmp_path / "m",
              _config(architecture="dlib-resnet", embedding_dim=128, epochs=2), resume=True)


def test_nan_loss_stops_naming_the_step_and_keeps_last_good_epoch(orl_chips, tmp_path):
    train_set, _ = _split(orl_chips)
    net, _ = initial_net("scratch", 64, "small-cnn")
    calls = {"n": 0}

    def poison(module, inputs, output):
        calls["n"] += 1
        return output * float("nan") if calls["n"] > 5 else output

    net.register_forward_hook(poison)
    with pytest.raises(TrainingError, match=r"loss became nan at epoch 2 step 3; the last good checkpoint .* \(epoch 1\) is kept"):
        train(net, train_set, tmp_path / "m", _config(epochs=3, batches_per_epoch=3))
    state = torch.load(training_paths(tmp_path / "m")["checkpoint"], weights_only=True)
    assert state["epoch"] == 1
    assert all(torch.isfinite(v).all() for v in state["model"].values() if v.is_floating_point())
    assert json.loads((tmp_path / "m" / "faceidx-model.json").read_text())["training"]["epochs"] == 1


def test_batch_larger_than_data_is_a_data_error(orl_chips, tmp_path):
    train_set, _ = _split(orl_chips)
    with pytest.raises(DataError, match="P x K = 40 x 4 needs 40 identities"):
        train(initial_net("scratch", 64, "small-cnn")[0], train_set, tmp_path / "m",
              _config(p=40), data_path="orl")


def test_new_head_when_embedding_dim_differs():
    net, arch = initial_net("dlib-resnet-v1", 64)
    from faceidx.embedder.registry import load_model

    base = load_model("dlib-resnet-v1").net
    assert arch == "dlib-resnet" and net.fc.out_features == 64
    torch.testing.assert_close(net.conv.weight, base.conv.weight)
