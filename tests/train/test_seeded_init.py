"""Scratch networks are seeded by the caller's seed through a generator, not torch's global seed."""

from __future__ import annotations

import torch

from faceidx.train.nets import initial_net


def test_same_seed_same_weights_whatever_the_global_seed():
    torch.manual_seed(123)
    a, _ = initial_net("scratch", 16, "small-cnn", seed=7)
    torch.manual_seed(999)
    b, _ = initial_net("scratch", 16, "small-cnn", seed=7)
    c, _ = initial_net("scratch", 16, "small-cnn", seed=8)
    for (name, va), vb in zip(a.state_dict().items(), b.state_dict().values(), strict=True):
        assert torch.equal(va, vb), name
    assert not torch.equal(a.head.weight, c.head.weight)


def test_global_rng_is_not_reseeded():
    """Whatever `seed` is, the global stream after the call is the same: it was never reseeded."""
    torch.manual_seed(5)
    initial_net("scratch", 16, "small-cnn", seed=0)
    after_seed0 = torch.rand(3)
    torch.manual_seed(5)
    initial_net("scratch", 16, "small-cnn", seed=1)
    assert torch.equal(torch.rand(3), after_seed0)
