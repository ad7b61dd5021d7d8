"""faceidx's whole image pipeline against dlib's own, on real photos (issue: chips
identical to dlib's): the same photo must give the same face vector."""

from __future__ import annotations

import numpy as np
import pytest

# a dozen LFW-subset photos spread over the alphabet, incl. the three that differed most
# before JPEGs were decoded like dlib (Harald_Ringstorff, Gerhard_Schroeder, Eddie_Compass)
PHOTOS = ["AJ_Cook/AJ_Cook_0001.jpg", "Amelia_Vega/Amelia_Vega_0002.jpg",
          "Arnold_Schwarzenegger/Arnold_Schwarzenegger_0007.jpg", "Bob_Crippen/Bob_Crippen_0001.jpg",
          "Celine_Dion/Celine_Dion_0007.jpg", "Colin_Powell/Colin_Powell_0107.jpg",
          "David_Rivkin_Jr/David_Rivkin_Jr_0001.jpg", "Eddie_Compass/Eddie_Compass_0001.jpg",
          "Francisco_Flores/Francisco_Flores_0004.jpg", "George_W_Bush/George_W_Bush_0193.jpg",
          "Gerhard_Schroeder/Gerhard_Schroeder_0097.jpg",
          "Harald_Ringstorff/Harald_Ringstorff_0001.jpg"]
MIN_COSINE = 0.9999


@pytest.fixture(scope="module")
def photos(shared_data):
    paths = [shared_data / "lfw-subset" / p for p in PHOTOS]
    paths = [p for p in paths if p.exists()]
    if len(paths) < 10:
        pytest.skip(f"only {len(paths)} of the parity photos under {shared_data}")
    return paths


def dlib_reference(paths) -> np.ndarray:
    """dlib's own pipeline: its JPEG loader, HOG (upsample 1), 5 landmarks, its ResNet."""
    dlib = pytest.importorskip("dlib")
    from faceidx.embedder.weights import dlib_landmarks_path, dlib_resnet_path

    detector = dlib.get_frontal_face_detector()
    landmarks = dlib.shape_predictor(str(dlib_landmarks_path()))
    net = dlib.face_recognition_model_v1(str(dlib_resnet_path()))
    out = []
    for p in paths:
        img = dlib.load_rgb_image(str(p))
        box = max(detector(img, 1), key=lambda r: r.area())
        out.append(np.array(net.compute_face_descriptor(img, landmarks(img, box))))
    ref = np.stack(out)
    return ref / np.linalg.norm(ref, axis=1, keepdims=True)


def test_embeddings_equal_dlibs_own_pipeline(photos):
    from faceidx.embedder.pipeline import embed_paths

    ref = dlib_reference(photos)
    res = embed_paths(photos, device="cpu", batch_size=16)
    assert not res.failures and res.sources == [str(p) for p in photos]
    cos = np.sum(res.embeddings * ref, axis=1)
    print(f"\ncosine to dlib's pipeline: min {cos.min():.6f}, per photo {np.round(cos, 6).tolist()}")
    assert cos.min() >= MIN_COSINE


def test_pil_pixels_are_what_differed(photos):
    """The check has teeth: Pillow's JPEG decoding moves some vectors below the bar."""
    from faceidx.embedder.align import Aligner
    from faceidx.embedder.detect import detect_one
    from faceidx.embedder.registry import load_model
    from faceidx.embedder.sources import SourceItem

    ref = dlib_reference(photos)
    aligner, model = Aligner("hog"), load_model("dlib-resnet-v1", device="cpu")
    chips = [detect_one(SourceItem(str(p), None), aligner, decoder="pil").chips[0].chip for p in photos]
    cos = np.sum(model.embed_chips(np.stack(chips)) * ref, axis=1)
    assert cos.min() < MIN_COSINE
