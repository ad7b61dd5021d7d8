"""The face-selection policy (largest, central, all) and the MTCNN detector on real faces."""

from __future__ import annotations

import numpy as np
import pytest

from faceidx.embedder.faces import POLICIES, box_area, select_faces

HW = (300, 400)
# a big face in the top-left corner, a small one dead centre, a mid-sized one right of centre
BOXES = [(0, 0, 119, 119), (185, 135, 214, 164), (230, 100, 309, 179)]
SCORES = [0.5, 1.5, 1.0]


def test_policies():
    assert POLICIES == ("largest", "central", "all")
    assert select_faces(BOXES, SCORES, HW, "all") == [0, 2, 1]           # largest first
    assert select_faces(BOXES, SCORES, HW, "largest") == [0]
    # central: the small face dead centre; without it the mid-sized one near the centre
    # beats the big face in the corner
    assert select_faces(BOXES, SCORES, HW, "central") == [1]
    assert select_faces([BOXES[0], BOXES[2]], [SCORES[0], SCORES[2]], HW, "central") == [1]
    # the size bonus: a big face a little off centre beats a tiny one at the centre
    assert select_faces([(190, 140, 209, 159), (150, 60, 289, 199)], [1, 1], HW, "central") == [1]
    assert select_faces([], [], HW, "largest") == []


def test_ties_and_errors():
    same = [(0, 0, 9, 9), (20, 20, 29, 29)]
    assert select_faces(same, [0.1, 0.9], HW, "largest") == [1]          # ties: higher score
    assert box_area((5, 5, 4, 9)) == 0 and box_area((0, 0, 9, 9)) == 100
    with pytest.raises(ValueError, match="policy"):
        select_faces(BOXES, SCORES, HW, "smallest")
    with pytest.raises(ValueError, match="scores"):
        select_faces(BOXES, SCORES[:2], HW, "all")


@pytest.fixture(scope="module")
def mtcnn():
    pytest.importorskip("dlib")
    from faceidx.embedder.mtcnn import Mtcnn, mtcnn_weights_dir

    if not (mtcnn_weights_dir() / "pnet.pt").exists():
        pytest.skip("facenet-pytorch (MTCNN weights) is not installed")
    return Mtcnn(device="cpu")


def test_mtcnn_landmarks_agree_with_dlib(mtcnn, shared_data):
    """On LFW photos MTCNN's eyes lie within a few pixels of dlib's eye-corner midpoints."""
    from faceidx.embedder.align import Aligner
    from faceidx.embedder.decode import load_image

    names = ["Aaron_Eckhart/Aaron_Eckhart_0001.jpg", "Bill_Gates/Bill_Gates_0001.jpg",
             "Hugo_Chavez/Hugo_Chavez_0001.jpg", "Ana_Guevara/Ana_Guevara_0001.jpg"]
    images = [load_image(shared_data / "lfw-subset" / n) for n in names]
    found = mtcnn.detect(images)                       # one batched call
    hog = Aligner("hog")
    for image, faces in zip(images, found, strict=True):
        assert len(faces.boxes) >= 1 and faces.scores[0] > 0.9
        (chip,) = hog(image)
        # dlib's 5 points: right eye corners 0-1, left eye corners 2-3, nose 4 (image left = 2-3)
        eyes_dlib = sorted([chip.landmarks[0:2].mean(0), chip.landmarks[2:4].mean(0)], key=lambda p: p[0])
        j = int(np.argmin([np.abs(b - np.array(chip.box)).sum() for b in faces.boxes]))
        eyes_mtcnn = faces.points[j][:2]
        assert np.abs(np.stack(eyes_dlib) - eyes_mtcnn).max() < 6.0


def test_mtcnn_fallback_finds_what_hog_misses(mtcnn, shared_data):
    """A face rotated 50 degrees: HOG (even upsampled) finds nothing, hog+mtcnn does."""
    from PIL import Image

    from faceidx.embedder.align import Aligner

    base = Image.open(shared_data / "lfw-subset/Aaron_Eckhart/Aaron_Eckhart_0001.jpg").convert("RGB")
    image = np.asarray(base.rotate(50, resample=Image.BILINEAR, fillcolor=(128, 128, 128)))
    assert Aligner("hog")(image) == []
    (chip,) = Aligner("hog+mtcnn")(image)
    assert chip.detector == "mtcnn" and chip.chip.shape == (150, 150, 3)
    assert chip.faces_in_image >= 1


@pytest.mark.gpu
def test_mtcnn_on_cuda_matches_cpu(mtcnn, shared_data):
    import torch

    if not torch.cuda.is_available():
        pytest.skip("no CUDA GPU")
    from faceidx.embedder.decode import load_image
    from faceidx.embedder.mtcnn import Mtcnn

    images = [load_image(shared_data / "lfw-subset/Bill_Gates/Bill_Gates_0001.jpg")] * 3
    cpu, gpu = mtcnn.detect(images), Mtcnn(device="cuda").detect(images)
    for a, b in zip(cpu, gpu, strict=True):
        assert len(a.boxes) == len(b.boxes)
        np.testing.assert_allclose(a.boxes, b.boxes, atol=1.0)
        np.testing.assert_allclose(a.points, b.points, atol=1.0)
