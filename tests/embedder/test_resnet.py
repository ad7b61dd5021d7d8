"""The dlib ResNet module (padded add, shapes, norms), weight loading and the model registry."""

from __future__ import annotations

import json
import subprocess
import sys

import numpy as np
import pytest
import torch

from faceidx.embedder.registry import (
    ARCHITECTURES,
    CONFIG_NAME,
    WEIGHTS_NAME,
    FaceModel,
    load_model,
    register,
)
from faceidx.embedder.resnet import DlibResNet, dlib_layer_plan, load_dat_weights, padded_add
from faceidx.errors import DataError


def naive_padded_add(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """dlib's cpu add(): loop over the larger shape, out-of-range entries count as 0."""
    shape = tuple(max(x, y) for x, y in zip(a.shape, b.shape, strict=True))
    out = np.zeros(shape, np.float32)
    for idx in np.ndindex(*shape):
        va = a[idx] if all(i < s for i, s in zip(idx, a.shape, strict=True)) else 0.0
        vb = b[idx] if all(i < s for i, s in zip(idx, b.shape, strict=True)) else 0.0
        out[idx] = va + vb
    return out


@pytest.mark.parametrize("sa, sb", [
    ((2, 3, 4, 4), (2, 3, 4, 4)),   # same shape
    ((2, 6, 4, 4), (2, 3, 4, 4)),   # channels padded (32 -> 64 style)
    ((2, 6, 3, 3), (2, 3, 4, 4)),   # 3x3 branch + 4x4 shortcut: output 6x4x4
    ((1, 8, 1, 1), (1, 4, 2, 2)),   # 1x1 + 2x2
    ((1, 2, 2, 5), (1, 3, 4, 1)),   # mixed: every dim from either side
])
def test_padded_add_matches_naive(sa, sb):
    rng = np.random.default_rng(0)
    a = rng.normal(size=sa).astype(np.float32)
    b = rng.normal(size=sb).astype(np.float32)
    got = padded_add(torch.from_numpy(a), torch.from_numpy(b)).numpy()
    np.testing.assert_array_equal(got, naive_padded_add(a, b))
    np.testing.assert_array_equal(padded_add(torch.from_numpy(b), torch.from_numpy(a)).numpy(), got)


@pytest.fixture(scope="module")
def random_net() -> DlibResNet:
    torch.manual_seed(0)
    return DlibResNet(128).eval()


def test_shapes_through_the_network(random_net):
    x = torch.rand(2, 3, 150, 150) * 255
    with torch.no_grad():
        assert random_net.stem(x).shape == (2, 32, 35, 35)
        feats = random_net.features(x)
        assert feats.shape == (2, 256, 2, 2)
        torch.testing.assert_close(random_net.fc(feats.mean(dim=(2, 3))), random_net(x))


def test_layer_counts(random_net):
    convs = [m for m in random_net.modules() if isinstance(m, torch.nn.Conv2d)]
    assert len(convs) == 29 and all(c.bias is not None for c in convs)
    assert random_net.fc.bias is None
    plan = [kind for kind, _, _ in dlib_layer_plan(random_net)]
    assert plan.count("affine") == 29 and plan.count("add_prev") == 14
    n = sum(p.numel() for p in random_net.parameters())
    assert n == 5_614_592
    assert "mean" not in random_net.state_dict()  # only weights in a state dict


def test_face_model_output_is_normalised(random_net):
    model = FaceModel(random_net, "x", "1", 128)
    chips = np.random.default_rng(0).integers(0, 256, (3, 150, 150, 3), dtype=np.uint8)
    x = torch.from_numpy(chips).permute(0, 3, 1, 2).float()
    with torch.no_grad():
        y, raw = model(x), model.raw(x)
    torch.testing.assert_close(y.norm(dim=1), torch.ones(3))
    torch.testing.assert_close(y, raw / raw.norm(dim=1, keepdim=True))
    e = model.embed_chips(chips, batch_size=2)
    assert e.dtype == np.float32 and e.shape == (3, 128)
    np.testing.assert_allclose(np.linalg.norm(e, axis=1), 1, atol=1e-6)
    np.testing.assert_allclose(e, y.numpy(), atol=1e-5)


def test_pretrained_weights_load_and_mismatch():
    from faceidx.embedder.dlib_dat import parse_dat
    from faceidx.embedder.weights import dlib_resnet_path

    dat = parse_dat(dlib_resnet_path())
    net = load_dat_weights(DlibResNet(128), dat)
    torch.testing.assert_close(net.fc.weight, torch.from_numpy(dat.layers[-1].arrays["weight"].T))
    with pytest.raises(DataError, match="dlib_face_recognition_resnet_model_v1.dat"):
        load_dat_weights(DlibResNet(64), dat)  # fc shape differs
    dat.layers[4].attrs["stride_y"] = 2
    with pytest.raises(DataError, match="layer 4.*stride"):
        load_dat_weights(DlibResNet(128), dat)
    dat.layers.pop()
    with pytest.raises(DataError, match="107 layers"):
        load_dat_weights(DlibResNet(128), dat)


def test_load_model_registered_name():
    model = load_model("dlib-resnet-v1", device="cpu")
    assert (model.name, model.version, model.dim) == ("dlib-resnet-v1", "1", 128)
    assert not model.training and model.device.type == "cpu"
    from faceidx.embedder.weights import dlib_resnet_path

    by_path = load_model(dlib_resnet_path())
    assert by_path.name == "dlib-resnet-file:dlib_face_recognition_resnet_model_v1"
    assert len(by_path.version) == 12 and by_path.dim == 128
    torch.testing.assert_close(by_path.net.fc.weight, model.net.fc.weight)


def test_load_model_unknown_spec(tmp_path):
    with pytest.raises(DataError, match="nope-v9: unknown model"):
        load_model("nope-v9")
    with pytest.raises(DataError, match="missing.dat: model file not found"):
        load_model(tmp_path / "missing.dat")
    damaged = tmp_path / "damaged.dat"
    damaged.write_bytes(b"\x01\x01\x01\x0dloss_metric_2\x03")
    with pytest.raises(DataError, match="damaged.dat: not a valid dlib model file"):
        load_model(damaged)
    with pytest.raises(ValueError, match="unknown device"):
        load_model("dlib-resnet-v1", device="tpu")


def _write_model_dir(path, arch="dlib-resnet", dim=16, net=None, **overrides):
    from safetensors.torch import save_file

    path.mkdir(parents=True, exist_ok=True)
    net = net if net is not None else ARCHITECTURES[arch](dim)
    save_file({k: v.contiguous() for k, v in net.state_dict().items()}, str(path / WEIGHTS_NAME))
    config = {"name": "trained-x", "version": "abc123", "architecture": arch,
              "embedding_dim": dim, "input_size": 150, "base": "dlib-resnet-v1", **overrides}
    (path / CONFIG_NAME).write_text(json.dumps(config))
    return net


def test_model_dir_round_trip(tmp_path):
    torch.manual_seed(1)
    net = _write_model_dir(tmp_path / "m", dim=16).eval()
    model = load_model(tmp_path / "m")
    assert (model.name, model.version, model.dim) == ("trained-x", "abc123", 16)
    x = torch.rand(2, 3, 150, 150) * 255
    with torch.no_grad():
        torch.testing.assert_close(model.raw(x), net(x))


def test_model_dir_errors_name_the_dir(tmp_path):
    d = tmp_path / "bad"
    d.mkdir()
    with pytest.raises(DataError, match="bad: not a model directory"):
        load_model(d)
    (d / CONFIG_NAME).write_text("{not json")
    with pytest.raises(DataError, match="faceidx-model.json: malformed"):
        load_model(d)
    _write_model_dir(tmp_path / "arch", architecture="no-such-arch")
    with pytest.raises(DataError, match="arch: unknown architecture 'no-such-arch'"):
        load_model(tmp_path / "arch")
    # weights of a 16-D net declared as 32-D: the state dict does not fit
    _write_model_dir(tmp_path / "dim", dim=16)
    cfg = json.loads((tmp_path / "dim" / CONFIG_NAME).read_text())
    (tmp_path / "dim" / CONFIG_NAME).write_text(json.dumps({**cfg, "embedding_dim": 32}))
    with pytest.raises(DataError, match="dim: weights do not fit architecture 'dlib-resnet'"):
        load_model(tmp_path / "dim")
    _write_model_dir(tmp_path / "damaged", dim=8)
    (tmp_path / "damaged" / WEIGHTS_NAME).write_bytes(b"\x00" * 10)
    with pytest.raises(DataError, match="model.safetensors: cannot read model weights"):
        load_model(tmp_path / "damaged")
    (tmp_path / "damaged" / WEIGHTS_NAME).unlink()
    with pytest.raises(DataError, match="damaged: model weights model.safetensors missing"):
        load_model(tmp_path / "damaged")


def test_register_architecture():
    def build(dim):
        return torch.nn.Sequential(torch.nn.Flatten(), torch.nn.LazyLinear(dim))

    register("test-arch-xyz", build)
    try:
        assert ARCHITECTURES["test-arch-xyz"] is build
        with pytest.raises(ValueError, match="already registered"):
            register("test-arch-xyz", build)
    finally:
        del ARCHITECTURES["test-arch-xyz"]


def test_import_is_light():
    code = ("import sys, faceidx.embedder, faceidx.embedder.dlib_dat; "
            "print('torch' in sys.modules, 'dlib' in sys.modules)")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.split() == ["False", "False"]


def test_padded_add_keeps_channels_last():
    a = torch.rand(2, 8, 3, 3).contiguous(memory_format=torch.channels_last)
    b = torch.rand(2, 4, 4, 4).contiguous(memory_format=torch.channels_last)
    out = padded_add(a, b)
    assert out.shape == (2, 8, 4, 4) and out.is_contiguous(memory_format=torch.channels_last)
    np.testing.assert_array_equal(out.numpy(), naive_padded_add(a.numpy(), b.numpy()))


def test_inference_copy_matches_and_follows_weight_changes(random_net):
    fused = random_net.inference_copy()
    assert not any(isinstance(m, type(random_net.aff)) for m in fused.modules())
    x = torch.rand(2, 3, 150, 150) * 255
    with torch.no_grad():
        torch.testing.assert_close(fused(x), random_net(x), rtol=1e-4, atol=1e-5)
    net = DlibResNet(16).eval()
    model = FaceModel(net, "x", "1", 16)
    with torch.inference_mode():
        before = model.raw(x)
        assert model.runner() is not net and model.runner() is model.runner()
    assert "_fast" not in "".join(model.state_dict())  # the copy is not part of the state
    with torch.no_grad():
        net.fc.weight.mul_(2)  # an in-place update, as an optimizer step does
    with torch.inference_mode():
        torch.testing.assert_close(model.raw(x), 2 * before, rtol=1e-4, atol=1e-5)
    with torch.enable_grad():
        assert model.runner() is net  # gradients on: the trainable module runs
    net.train()
    with torch.inference_mode():
        assert model.runner() is net


def test_device_resolution_and_threads():
    from faceidx.embedder.device import (
        DeviceUnavailableError,
        configure_cpu_threads,
        cpu_threads_for,
        resolve_device,
    )

    assert resolve_device("cpu").type == "cpu"
    assert resolve_device("auto").type == ("cuda" if torch.cuda.is_available() else "cpu")
    if not torch.cuda.is_available():
        with pytest.raises(DeviceUnavailableError, match="no CUDA GPU"):
            resolve_device("cuda")
    assert [cpu_threads_for(2, r) for r in (0, 1, 2, 5)] == [2, 1, 1, 1]
    assert cpu_threads_for(16, 4) == 12
    before = torch.get_num_threads()
    try:
        assert configure_cpu_threads(1) == 1 and torch.get_num_threads() == 1
    finally:
        torch.set_num_threads(before)
