"""Parity of the torch port with dlib's own pipeline on real faces (LFW and ORL).

dlib's reference: HOG detector (upsample 1) -> 5-point landmarks -> get_face_chip(size=150,
padding=0.25) -> face_recognition_model_v1.compute_face_descriptor(chip). The port runs on
the very same chips; the raw descriptors must agree to 1e-4 (max abs difference).
"""

from __future__ import annotations

import numpy as np
import pytest
import torch

PARITY_TOL = 1e-4
LFW = ["Aaron_Eckhart/Aaron_Eckhart_0001.jpg", "Ai_Sugiyama/Ai_Sugiyama_0001.jpg",
       "Ana_Guevara/Ana_Guevara_0001.jpg", "Bill_Gates/Bill_Gates_0001.jpg",
       "George_W_Bush/George_W_Bush_0001.jpg", "Hugo_Chavez/Hugo_Chavez_0001.jpg"]
ORL = ["s1/1.pgm", "s2/5.pgm", "s7/3.pgm", "s23/9.pgm"]


@pytest.fixture(scope="module")
def dlib_chips(shared_data):
    """[(name, chip uint8 150x150x3, dlib's raw descriptor float64 (128,))] via dlib only."""
    dlib = pytest.importorskip("dlib")
    from PIL import Image

    from faceidx.embedder.weights import dlib_landmarks_path, dlib_resnet_path

    detector = dlib.get_frontal_face_detector()
    landmarks = dlib.shape_predictor(str(dlib_landmarks_path()))
    reference = dlib.face_recognition_model_v1(str(dlib_resnet_path()))
    out = []
    paths = [shared_data / "lfw-subset" / p for p in LFW] + [shared_data / "orl" / p for p in ORL]
    for path in paths:
        if not path.exists():
            continue
        img = np.asarray(Image.open(path).convert("RGB"))
        faces = detector(img, 1)
        if not faces:
            continue
        box = max(faces, key=lambda r: r.area())
        chip = dlib.get_face_chip(img, landmarks(img, box), size=150, padding=0.25)
        out.append((path.name, chip, np.array(reference.compute_face_descriptor(chip))))
    if len(out) < 6:
        pytest.skip(f"only {len(out)} faces found in the sample of {shared_data}")
    return out


@pytest.fixture(scope="module")
def port():
    from faceidx.embedder.registry import load_model

    return load_model("dlib-resnet-v1", device="cpu")


def test_raw_descriptor_parity_with_dlib(dlib_chips, port):
    chips = np.stack([c for _, c, _ in dlib_chips])
    ref = np.stack([d for _, _, d in dlib_chips])
    raw = port.embed_chips(chips, batch_size=4, raw=True)
    diff = np.abs(raw.astype(np.float64) - ref)
    print(f"\nparity: {len(chips)} chips, max abs diff {diff.max():.3e}, "
          f"per chip {np.round(diff.max(axis=1), 9).tolist()}")
    assert raw.shape == (len(chips), 128)
    assert diff.max() <= PARITY_TOL
    # the descriptors are not trivially similar: different people stay apart
    assert np.linalg.norm(ref[0] - ref[1]) > 0.4


def test_normalised_output_keeps_dlib_geometry(dlib_chips, port):
    chips = np.stack([c for _, c, _ in dlib_chips])
    ref = np.stack([d for _, _, d in dlib_chips])
    emb = port.embed_chips(chips)
    np.testing.assert_allclose(np.linalg.norm(emb, axis=1), 1.0, atol=1e-6)
    ref_n = ref / np.linalg.norm(ref, axis=1, keepdims=True)
    np.testing.assert_allclose(emb @ emb.T, ref_n @ ref_n.T, atol=1e-5)


def test_batch_size_does_not_change_results(dlib_chips, port):
    chips = np.stack([c for _, c, _ in dlib_chips[:3]])
    one = port.embed_chips(chips, batch_size=1, raw=True)
    many = port.embed_chips(chips, batch_size=3, raw=True)
    np.testing.assert_allclose(one, many, atol=1e-5)


@pytest.mark.gpu
def test_cuda_parity_and_autocast_check(dlib_chips):
    if not torch.cuda.is_available():
        pytest.skip("no CUDA GPU")
    from faceidx.embedder.device import AUTOCAST_MIN_COSINE
    from faceidx.embedder.registry import load_model

    model = load_model("dlib-resnet-v1", device="cuda")
    chips = np.stack([c for _, c, _ in dlib_chips])
    ref = np.stack([d for _, _, d in dlib_chips])
    raw = model.embed_chips(chips, raw=True)
    assert np.abs(raw - ref).max() <= 1e-3  # cuDNN may pick other conv algorithms
    measured = model.enable_autocast(chips)
    print(f"\nautocast worst cosine vs fp32: {measured}, chosen {model.autocast_dtype}")
    assert measured, "the parity check ran no dtype on CUDA"
    if model.autocast_dtype is not None:
        emb = model.embed_chips(chips)
        ref_n = ref / np.linalg.norm(ref, axis=1, keepdims=True)
        assert float(np.min(np.sum(emb * ref_n, axis=1))) >= AUTOCAST_MIN_COSINE - 1e-5


def test_autocast_parity_check_runs_on_cpu(dlib_chips, port):
    """The parity function itself, with bf16 on the CPU; the CPU never picks autocast."""
    from faceidx.embedder.device import autocast_cosines, chips_to_tensor, choose_autocast

    x = chips_to_tensor(np.stack([c for _, c, _ in dlib_chips[:4]]), torch.device("cpu"))
    cos = autocast_cosines(port.raw, x, torch.bfloat16)
    assert cos.shape == (4,)
    assert 0.999 < float(cos.min()) and float(cos.max()) <= 1 + 1e-6
    assert choose_autocast(port.raw, x) == (None, {})
    assert port.enable_autocast(np.stack([c for _, c, _ in dlib_chips[:2]])) == {}
    assert port.autocast_dtype is None


def test_encoder_precision_auto_stays_fp32_on_the_cpu(dlib_chips, port):
    from faceidx.embedder.encode import Encoder

    chips = np.stack([c for _, c, _ in dlib_chips[:4]])
    enc = Encoder(port, "cpu", precision="auto")
    fp32 = Encoder(port, "cpu", precision="fp32")(chips)
    np.testing.assert_array_equal(enc(chips), fp32)
    assert port.autocast_dtype is None and enc.autocast_check == {}
    with pytest.raises(ValueError, match="unknown precision 'fp8'"):
        Encoder(port, "cpu", precision="fp8")


@pytest.mark.gpu
def test_encoder_precision_auto_on_cuda_checks_the_first_batch(dlib_chips):
    if not torch.cuda.is_available():
        pytest.skip("no CUDA GPU")
    from faceidx.embedder.device import AUTOCAST_MIN_COSINE
    from faceidx.embedder.encode import Encoder
    from faceidx.embedder.registry import load_model

    chips = np.stack([c for _, c, _ in dlib_chips])
    fp32 = Encoder(load_model("dlib-resnet-v1", device="cuda"), "cuda", precision="fp32")(chips)
    auto = Encoder(load_model("dlib-resnet-v1", device="cuda"), "cuda", precision="auto")
    got = auto(chips)
    assert auto.autocast_check, "the parity check did not run on the first batch"
    assert float(np.min(np.sum(got * fp32, axis=1))) >= AUTOCAST_MIN_COSINE - 1e-5
