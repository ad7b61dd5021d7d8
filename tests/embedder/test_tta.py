"""Test-time augmentation: the views (identity, mirror, dlib-style jitter) and the average."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from faceidx.embedder.encode import Encoder
from faceidx.embedder.tta import copies_of, jitter_params, tta_views
from tests.embedder.standin import TinyFaceModel


def chips(n=3, seed=0):
    """Smooth random chips (blurred noise), so small warps change pixels only a little."""
    rng = np.random.default_rng(seed)
    x = rng.random((n, 3, 15, 15)).astype(np.float32)
    big = torch.nn.functional.interpolate(torch.from_numpy(x), size=(150, 150), mode="bilinear")
    return (big * 255).permute(0, 2, 3, 1).numpy().astype(np.uint8)


def test_views_and_determinism():
    x = torch.from_numpy(chips()).permute(0, 3, 1, 2).float()
    v = tta_views(x, "jitter", 6)
    assert v.shape == (6, 3, 3, 150, 150)
    assert torch.equal(v[0], x) and torch.equal(v[1], x.flip(3))
    assert torch.equal(v, tta_views(x, "jitter", 6))                  # fixed draws
    p = jitter_params(6)
    assert p.shape == (4, 5) and (p[:, 0] >= 1).all() and (p[:, 0] <= 1 / 0.97 + 1e-9).all()
    assert (np.abs(p[:, 1:3]) <= 0.02).all() and (np.abs(np.degrees(p[:, 3])) <= 3).all()
    centre = slice(40, 110)
    def dist(a, b):
        return float((a - b)[..., centre, centre].abs().mean() / b.abs().mean())

    for k in range(2, 6):   # a jitter is a small warp of the chip (or of its mirror if drawn)
        ref, other = (x, x.flip(3)) if p[k - 2, 4] == 0 else (x.flip(3), x)
        assert 0 < dist(v[k], ref) < 0.5 * dist(v[k], other)
    assert tta_views(x, "none").shape == (1, 3, 3, 150, 150)
    assert copies_of("flip") == 2
    with pytest.raises(ValueError, match="tta"):
        copies_of("rotate")


def test_encoder_averages_normalised_views():
    c = chips(4, seed=1)
    model = TinyFaceModel()
    got = Encoder(model, "cpu", "jitter", jitters=5)(c)
    x = torch.from_numpy(c).permute(0, 3, 1, 2).float()
    with torch.no_grad():
        per_view = [torch.nn.functional.normalize(model(v), dim=1) for v in tta_views(x, "jitter", 5)]
    want = torch.nn.functional.normalize(sum(per_view), dim=1).numpy()
    np.testing.assert_allclose(got, want, atol=1e-5)
    np.testing.assert_allclose(np.linalg.norm(got, axis=1), 1, atol=1e-5)
