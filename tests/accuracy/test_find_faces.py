"""Find every face, on real LFW photos HOG misses: the upsampled retry and the MTCNN
fallback, through embed_paths (what `faceidx embed` and `query` run)."""

from __future__ import annotations

import pytest

RETRY = "Alan_Greenspan/Alan_Greenspan_0001.jpg"       # HOG finds it at upsample 2 only
MTCNN = "Andy_Roddick/Andy_Roddick_0005.jpg"           # HOG misses it; MTCNN finds it
SAME_PERSON = ["Andy_Roddick/Andy_Roddick_0001.jpg", "Andy_Roddick/Andy_Roddick_0002.jpg"]
OTHER = "Alan_Greenspan/Alan_Greenspan_0002.jpg"


@pytest.fixture(scope="module")
def lfw(shared_data):
    root = shared_data / "lfw-subset"
    paths = [root / p for p in (RETRY, MTCNN, *SAME_PERSON, OTHER)]
    if not all(p.exists() for p in paths):
        pytest.skip("the LFW-subset photos of this test are missing")
    from faceidx.embedder.mtcnn import mtcnn_weights_dir

    if not (mtcnn_weights_dir() / "pnet.pt").exists():
        pytest.skip("facenet-pytorch (MTCNN weights) is not installed")
    return root


def test_retry_and_mtcnn_find_what_hog_misses(lfw):
    from faceidx.embedder.align import Aligner
    from faceidx.embedder.decode import load_image
    from faceidx.embedder.jpeg_dlib import dlib_pixels
    from faceidx.embedder.pipeline import embed_paths

    retry, mtcnn = lfw / RETRY, lfw / MTCNN
    image = dlib_pixels(retry, load_image(retry))
    assert Aligner("hog", retry_upsample=False)(image) == []            # upsample 1 misses it
    (chip,) = Aligner("hog")(image)
    assert chip.detector == "hog-up2"

    hog = embed_paths([retry, mtcnn], device="cpu", detector="hog")
    assert hog.sources == [str(retry)] and hog.failures == [(str(mtcnn), "no_face")]
    both = embed_paths([retry, mtcnn], device="cpu", detector="hog+mtcnn")
    assert both.sources == [str(retry), str(mtcnn)] and not both.failures
    assert abs(float(both.embeddings[0] @ hog.embeddings[0]) - 1) < 1e-6     # HOG's face kept
    # MTCNN's face is the right one: nearer Andy Roddick's other photos than anyone else's
    ref = embed_paths([lfw / p for p in (*SAME_PERSON, OTHER)], device="cpu")
    same, other = ref.embeddings[:2] @ both.embeddings[1], ref.embeddings[2] @ both.embeddings[1]
    assert same.min() > other and same.max() > 0.9
