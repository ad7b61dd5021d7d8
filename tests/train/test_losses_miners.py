"""Loss, miners and reducer against brute-force loops on small batches."""

from __future__ import annotations

import itertools

import numpy as np
import pytest
import torch

from faceidx.train.losses import TripletMarginLoss, triplet_losses
from faceidx.train.miners import (
    BatchAllMiner,
    BatchHardMiner,
    SemiHardMiner,
    Triplets,
    make_miner,
)
from faceidx.train.reducers import MeanNonZeroReducer

MARGIN = 0.2


def _batch(seed: int, n: int = 12, d: int = 8, ids: int = 4):
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(n, d, generator=g, dtype=torch.float64)
    labels = torch.randint(0, ids, (n,), generator=g)
    return x, labels


def _sq(x: torch.Tensor) -> np.ndarray:
    x = torch.nn.functional.normalize(x, dim=1).numpy()
    n = len(x)
    return np.array([[float(((x[i] - x[j]) ** 2).sum()) for j in range(n)] for i in range(n)])


def _valid(labels):
    lab = labels.tolist()
    n = len(lab)
    for a, p, q in itertools.product(range(n), repeat=3):
        if a != p and lab[a] == lab[p] and lab[a] != lab[q]:
            yield a, p, q


def ref_batch_all(x, labels, margin):
    d = _sq(x)
    return {(a, p, q) for a, p, q in _valid(labels) if d[a, p] - d[a, q] + margin > 0}


def ref_batch_hard(x, labels):
    d, lab = _sq(x), labels.tolist()
    out = set()
    for a in range(len(lab)):
        pos = [j for j in range(len(lab)) if j != a and lab[j] == lab[a]]
        neg = [j for j in range(len(lab)) if lab[j] != lab[a]]
        if pos and neg:
            out.add((a, max(pos, key=lambda j: d[a, j]), min(neg, key=lambda j: d[a, j])))
    return out


def ref_semi_hard(x, labels, margin):
    d, lab = _sq(x), labels.tolist()
    out = set()
    for a in range(len(lab)):
        for p in range(len(lab)):
            if p == a or lab[p] != lab[a]:
                continue
            semi = [q for q in range(len(lab))
                    if lab[q] != lab[a] and d[a, p] < d[a, q] < d[a, p] + margin]
            if semi:
                out.add((a, p, min(semi, key=lambda q: d[a, q])))
    return out


def _set(t: Triplets):
    return set(zip(t.anchors.tolist(), t.positives.tolist(), t.negatives.tolist(), strict=True))


@pytest.mark.parametrize("seed", range(5))
def test_loss_matches_triple_loop(seed):
    x, labels = _batch(seed)
    trip = list(_valid(labels))
    t = Triplets(*(torch.tensor(c) for c in zip(*trip, strict=True)), candidates=len(trip))
    got = triplet_losses(x, t, MARGIN).numpy()
    xn = (x / x.norm(dim=1, keepdim=True)).numpy()
    want = [max(0.0, ((xn[a] - xn[p]) ** 2).sum() - ((xn[a] - xn[q]) ** 2).sum() + MARGIN)
            for a, p, q in trip]
    np.testing.assert_allclose(got, want, atol=1e-12)


@pytest.mark.parametrize("seed", range(5))
def test_miners_match_brute_force(seed):
    x, labels = _batch(seed)
    assert _set(BatchAllMiner(MARGIN)(x, labels)) == ref_batch_all(x, labels, MARGIN)
    assert _set(BatchHardMiner(MARGIN)(x, labels)) == ref_batch_hard(x, labels)
    assert _set(SemiHardMiner(MARGIN)(x, labels)) == ref_semi_hard(x, labels, MARGIN)


def test_batch_all_candidates_count_every_valid_triplet():
    x, labels = _batch(7)
    assert BatchAllMiner(MARGIN)(x, labels).candidates == len(list(_valid(labels)))


@pytest.mark.parametrize("miner", ["batch-all", "batch-hard", "semi-hard"])
def test_one_identity_gives_no_triplet(miner):
    x = torch.randn(6, 4, generator=torch.Generator().manual_seed(0))
    t = make_miner(miner, MARGIN)(x, torch.zeros(6, dtype=torch.long))
    assert len(t) == 0 and t.candidates == 0
    out = TripletMarginLoss(MARGIN, make_miner(miner, MARGIN))(x.requires_grad_(), torch.zeros(6, dtype=torch.long))
    assert out.loss.item() == 0.0 and out.active_fraction == 0.0
    out.loss.backward()  # still part of the graph


@pytest.mark.parametrize("miner", ["batch-all", "batch-hard", "semi-hard"])
def test_identity_with_one_image_is_never_an_anchor(miner):
    x, _ = _batch(3, n=7)
    labels = torch.tensor([0, 0, 0, 1, 1, 1, 2])  # identity 2 has one image
    t = make_miner(miner, 1.0)(x, labels)
    assert len(t) > 0
    assert 6 not in t.anchors.tolist() and 6 not in t.positives.tolist()


def test_all_easy_triplets_give_zero_loss_and_zero_active_fraction():
    # two tight, far-apart clusters: every negative is farther than every positive + margin
    x = torch.tensor([[1.0, 0.0], [0.999, 0.04], [-1.0, 0.0], [-0.999, 0.04]])
    labels = torch.tensor([0, 0, 1, 1])
    for miner in ("batch-all", "batch-hard", "semi-hard"):
        out = TripletMarginLoss(MARGIN, make_miner(miner, MARGIN))(x, labels)
        assert float(out.loss) == 0.0 and out.active == 0, miner
    bh = TripletMarginLoss(MARGIN, make_miner("batch-hard", MARGIN))(x, labels)
    assert bh.candidates == 4 and bh.active_fraction == 0.0


def test_reducer_means_over_non_zero_only():
    r = MeanNonZeroReducer()(torch.tensor([0.0, 0.3, 0.0, 0.1]), candidates=8)
    assert float(r.loss) == pytest.approx(0.2)
    assert r.active == 2 and r.active_fraction == pytest.approx(0.25)


def test_loss_gradient_flows_and_lowers_loss():
    x, labels = _batch(1, n=16)
    x = x.float().requires_grad_()
    loss = TripletMarginLoss(MARGIN, make_miner("batch-hard", MARGIN))
    first = loss(x, labels).loss
    first.backward()
    with torch.no_grad():
        x -= 0.5 * x.grad
    assert loss(x, labels).loss.item() < first.item()


def test_bad_shapes_and_names_are_rejected():
    with pytest.raises(ValueError, match="labels must be"):
        BatchAllMiner()(torch.zeros(4, 3), torch.zeros(5))
    with pytest.raises(ValueError, match="embeddings must be"):
        BatchAllMiner()(torch.zeros(4), torch.zeros(4))
    with pytest.raises(ValueError, match="unknown mining"):
        make_miner("hardest", 0.2)
    with pytest.raises(ValueError, match="margin"):
        TripletMarginLoss(margin=0.0)


def test_non_finite_embeddings_give_nan_loss_not_zero():
    x, labels = _batch(2)
    x[3, 0] = float("nan")
    assert torch.isnan(TripletMarginLoss(MARGIN)(x, labels).loss)
