"""Contrastive loss, the Siamese head and its loss against hand-written loops; edge cases."""

from __future__ import annotations

import math

import pytest
import torch

from faceidx.train.heads import SiameseHead
from faceidx.train.objective import make_loss
from faceidx.train.pair_losses import AllPairsMiner, ContrastiveLoss, Pairs, SiameseLoss
from faceidx.train.reducers import BalancedMeanReducer


def _batch(seed: int, n: int = 10, d: int = 6, ids: int = 3):
    g = torch.Generator().manual_seed(seed)
    return torch.randn(n, d, generator=g, dtype=torch.float64), torch.randint(0, ids, (n,), generator=g)


def _unit(x):
    return [[v / math.sqrt(sum(u * u for u in row)) for v in row] for row in x.tolist()]


def _naive_contrastive(x, labels, margin):
    f, lab = _unit(x), labels.tolist()
    losses = []
    for i in range(len(f)):
        for j in range(i + 1, len(f)):
            d = math.sqrt(sum((a - b) ** 2 for a, b in zip(f[i], f[j], strict=True)))
            losses.append(d * d if lab[i] == lab[j] else max(0.0, margin - d) ** 2)
    active = [v for v in losses if v > 0]
    return (sum(active) / len(active) if active else 0.0), len(active), len(losses)


def _naive_head(f_i, f_j, w, b, distance, eps=1e-6):
    total = b
    for a, c, wk in zip(f_i, f_j, w, strict=True):
        dk = abs(a - c) if distance == "abs" else (a - c) ** 2 / (abs(a) + abs(c) + eps)
        total += wk * dk
    return total


def _bce(logit, y):
    p = 1 / (1 + math.exp(-logit))
    return -(y * math.log(p) + (1 - y) * math.log(1 - p))


def test_all_pairs_miner_lists_every_pair_once():
    x, labels = _batch(0)
    pairs = AllPairsMiner()(x, labels)
    got = sorted(zip(pairs.a.tolist(), pairs.b.tolist(), strict=True))
    assert got == [(i, j) for i in range(10) for j in range(i + 1, 10)]
    assert pairs.same.tolist() == [bool(labels[i] == labels[j]) for i, j in got]


@pytest.mark.parametrize("seed", range(4))
@pytest.mark.parametrize("margin", [0.5, 1.0, 1.6])
def test_contrastive_matches_a_loop(seed, margin):
    x, labels = _batch(seed)
    out = ContrastiveLoss(margin)(x, labels)
    want, active, pairs = _naive_contrastive(x, labels, margin)
    assert out.loss.item() == pytest.approx(want, rel=1e-9)
    assert (out.active, out.candidates) == (active, pairs)


def test_contrastive_edge_cases():
    loss = ContrastiveLoss(1.0)
    # one identity only: genuine pairs, pulled together
    x, _ = _batch(1, n=4)
    out = loss(x, torch.zeros(4, dtype=torch.long))
    assert out.candidates == 6 and out.active == 6 and out.loss.item() > 0
    # impostors already beyond the margin and no genuine pair: an exact 0 that backpropagates
    e = torch.eye(3, dtype=torch.float64, requires_grad=True)  # pairwise distance sqrt(2) > 1.0
    out = loss(e, torch.arange(3))
    assert out.loss.item() == 0.0 and out.active == 0
    out.loss.backward()
    assert torch.equal(e.grad, torch.zeros_like(e))
    # an impostor pair at distance 0: finite loss and gradient (no sqrt at 0)
    z = torch.tensor([[1.0, 0.0], [1.0, 0.0]], requires_grad=True)
    out = loss(z, torch.tensor([0, 1]))
    out.loss.backward()
    assert out.loss.item() == pytest.approx(1.0, abs=1e-5) and torch.isfinite(z.grad).all()
    # one embedding: no pair at all
    assert float(loss(torch.ones(1, 4), torch.zeros(1, dtype=torch.long)).loss) == 0.0
    # non-finite input: NaN, never a silent 0
    bad = torch.ones(4, 3)
    bad[2, 1] = float("inf")
    assert math.isnan(float(loss(bad, torch.tensor([0, 0, 1, 1])).loss))
    with pytest.raises(ValueError, match="margin"):
        ContrastiveLoss(2.5)


@pytest.mark.parametrize("distance", ["abs", "chi2"])
def test_head_matches_a_loop_and_is_symmetric(distance):
    g = torch.Generator().manual_seed(3)
    head = SiameseHead(5, distance).double()
    with torch.no_grad():
        head.weight.copy_(torch.randn(5, generator=g, dtype=torch.float64))
        head.bias.fill_(0.3)
    a = torch.randn(7, 5, generator=g, dtype=torch.float64)
    b = torch.randn(7, 5, generator=g, dtype=torch.float64)
    a[0, :2] = 0.0
    b[0, :2] = 0.0  # chi2: 0/0 coordinates contribute 0, not NaN
    got = head(a, b)
    want = [_naive_head(a[i].tolist(), b[i].tolist(), head.weight.tolist(), 0.3, distance) for i in range(7)]
    assert got.tolist() == pytest.approx(want, rel=1e-9)
    assert torch.allclose(head(b, a), got)
    assert torch.all((head.score(a, b) > 0) & (head.score(a, b) < 1))
    with pytest.raises(ValueError, match="must both be"):
        head(a, b[:, :4])


def test_head_starts_with_separating_logits():
    """At its initial weights, identical vectors score high and random unit pairs low."""
    g = torch.Generator().manual_seed(0)
    for distance in ("abs", "chi2"):
        head = SiameseHead(128, distance)
        a = torch.nn.functional.normalize(torch.randn(200, 128, generator=g), dim=1)
        b = torch.nn.functional.normalize(torch.randn(200, 128, generator=g), dim=1)
        assert head(a, a).mean().item() == pytest.approx(2.0)
        assert -3.0 < head(a, b).mean().item() < -1.0


@pytest.mark.parametrize("distance", ["abs", "chi2"])
def test_siamese_loss_matches_a_loop(distance):
    x, labels = _batch(5)
    head = SiameseHead(6, distance).double()
    out = SiameseLoss(head)(x, labels)
    f, lab = _unit(x), labels.tolist()
    w, b = head.weight.tolist(), head.bias.item()
    gen, imp, wrong = [], [], 0
    for i in range(10):
        for j in range(i + 1, 10):
            logit = _naive_head(f[i], f[j], w, b, distance)
            same = lab[i] == lab[j]
            (gen if same else imp).append(_bce(logit, float(same)))
            wrong += (logit > 0) != same
    want = (sum(gen) / len(gen) + sum(imp) / len(imp)) / 2
    assert out.loss.item() == pytest.approx(want, rel=1e-9)
    assert (out.active, out.candidates) == (wrong, 45)
    out.loss.backward()
    assert head.weight.grad is not None and torch.isfinite(head.weight.grad).all()


def test_siamese_loss_edge_cases():
    head = SiameseHead(4)
    loss = SiameseLoss(head)
    x = torch.randn(3, 4, generator=torch.Generator().manual_seed(0))
    # only genuine pairs: their mean alone (no impostor half to average with)
    out = loss(x, torch.zeros(3, dtype=torch.long))
    f = torch.nn.functional.normalize(x, dim=1)
    logits = head(f[[0, 0, 1]], f[[1, 2, 2]])
    want = torch.nn.functional.binary_cross_entropy_with_logits(logits, torch.ones(3))
    assert out.loss.item() == pytest.approx(want.item(), rel=1e-6)
    bad = x.clone()
    bad[0, 0] = float("nan")
    assert math.isnan(float(loss(bad, torch.tensor([0, 1, 1])).loss))
    empty = BalancedMeanReducer()(torch.zeros(0, requires_grad=True), torch.zeros(0, dtype=torch.bool), 0)
    assert empty.loss.item() == 0.0 and empty.candidates == 0
    with pytest.raises(ValueError, match="one length"):
        BalancedMeanReducer()(torch.zeros(3), torch.zeros(2, dtype=torch.bool), 0)


def test_make_loss_composes_the_parts():
    assert make_loss("triplet", 8).margin == 0.2
    assert make_loss("contrastive", 8).margin == 1.0
    siamese = make_loss("siamese", 8, siamese_distance="chi2")
    assert siamese.head.distance == "chi2" and len(list(siamese.parameters())) == 2
    with pytest.raises(ValueError, match="unknown loss"):
        make_loss("arcface", 8)
    assert len(Pairs(torch.zeros(2), torch.zeros(2), torch.zeros(2, dtype=torch.bool))) == 2
