"""The cluster-aware P x K sampler: batches from the chosen clusters, refresh, seeding."""

from __future__ import annotations

from collections import Counter

import numpy as np
import pytest

from faceidx.train.sampler import PKSampler
from faceidx.train.sampler_cluster import ClusterPKSampler, spherical_kmeans

FAMILIES, PER_FAMILY, IMAGES = 4, 6, 5


def _labels() -> list[str]:
    """24 identities of 5 images each, in 4 families of 6 look-alikes (family = id // 6)."""
    return [f"id{i:02d}" for i in range(FAMILIES * PER_FAMILY) for _ in range(IMAGES)]


def _model(family_of: np.ndarray, seed: int, dim: int = 16):
    """A stand-in "model": rows -> embeddings where identities of one family lie close."""
    rng = np.random.default_rng(seed)
    fam = rng.normal(size=(FAMILIES, dim))
    ident = fam[family_of] + 0.25 * rng.normal(size=(len(family_of), dim))
    image = np.repeat(ident, IMAGES, axis=0) + 0.05 * rng.normal(size=(len(family_of) * IMAGES, dim))
    return lambda rows: image[rows]


def _family(lab: str, family_of: np.ndarray) -> int:
    return int(family_of[int(lab[2:])])


def _sampler(embed_rows, **kw) -> ClusterPKSampler:
    args = dict(p=4, k=2, seed=3, batches=30, clusters=FAMILIES, share=1.0, embed_rows=embed_rows)
    args.update(kw)
    return ClusterPKSampler(_labels(), **args)


def test_every_batch_comes_from_its_chosen_clusters():
    labels = _labels()
    family_of = np.arange(FAMILIES * PER_FAMILY) // PER_FAMILY
    s = _sampler(_model(family_of, seed=0), share=0.5, batches=40)
    kinds = Counter()
    for batch, chosen in s.batches_with_clusters():
        counts = Counter(labels[i] for i in batch)
        assert len(batch) == 8 and len(counts) == 4 and set(counts.values()) == {2}
        kinds[bool(chosen)] += 1
        if chosen:
            groups = {int(labels[i][2:]) for i in batch}  # group number = identity number here
            assert {int(s.assignment[g]) for g in groups} <= set(chosen)
            assert len(chosen) == 1  # 6 identities per cluster >= P = 4: no neighbour needed
            # k-means found the families: a cluster batch is 4 look-alikes of one family
            assert len({_family(labels[i], family_of) for i in batch}) == 1
    assert kinds[True] >= 10 and kinds[False] >= 10  # share 0.5 mixes both kinds


def test_small_clusters_borrow_their_nearest_neighbours():
    labels = _labels()
    family_of = np.arange(FAMILIES * PER_FAMILY) // PER_FAMILY
    s = _sampler(_model(family_of, seed=1), p=8, clusters=FAMILIES)  # P = 8 > 6 per cluster
    for batch, chosen in s.batches_with_clusters():
        assert len(chosen) == 2
        first, second = chosen
        others = [c for c in range(FAMILIES) if c != first]
        sims = s.centres[others] @ s.centres[first]
        assert second == others[int(np.argmax(sims))]
        assert {int(s.assignment[int(labels[i][2:])]) for i in batch} <= set(chosen)


def test_refresh_follows_the_model():
    """Swap which identities look alike: the next epoch's clusters follow the new model."""
    labels = _labels()
    before = np.arange(24) // PER_FAMILY
    after = np.random.default_rng(7).permutation(before)
    model = {"now": _model(before, seed=0)}
    s = _sampler(lambda rows: model["now"](rows), batches=5)
    list(s)

    def partition(assign):
        return sorted(sorted(np.flatnonzero(assign == c).tolist()) for c in range(FAMILIES))

    def families(family_of):
        return sorted(sorted(np.flatnonzero(family_of == f).tolist()) for f in range(FAMILIES))

    assert partition(s.assignment) == families(before)
    model["now"] = _model(after, seed=0)
    s.set_epoch(1)
    batches = list(s)
    assert partition(s.assignment) == families(after) != families(before)
    for batch in batches:
        assert len({_family(labels[i], after) for i in batch}) == 1
    assert s.refreshes == 2


def test_refresh_every_n_steps_embeds_again():
    calls = []
    family_of = np.arange(24) // PER_FAMILY
    base = _model(family_of, seed=0)

    def embed(rows):
        calls.append(rows.copy())
        return base(rows)

    s = _sampler(embed, batches=10, refresh_every=4, refresh_images=2)
    list(s)
    assert len(calls) == 3  # steps 0, 4 and 8
    assert all(len(c) == 24 * 2 for c in calls)  # 2 images per identity
    assert s.refresh_seconds > 0


def test_seeded_and_reproducible():
    family_of = np.arange(24) // PER_FAMILY
    embed = _model(family_of, seed=0)
    a = list(_sampler(embed, share=0.5).batches_with_clusters())
    b = list(_sampler(embed, share=0.5).batches_with_clusters())
    assert a == b
    other = _sampler(embed, share=0.5)
    other.set_epoch(1)
    assert list(other.batches_with_clusters()) != a
    assert list(_sampler(embed, share=0.5, seed=4).batches_with_clusters()) != a


def test_share_zero_is_the_random_sampler():
    labels = _labels()
    s = ClusterPKSampler(labels, p=4, k=2, seed=2, batches=12, share=0.0)
    assert list(s) == list(PKSampler(labels, p=4, k=2, seed=2, batches=12))


def test_without_clusters_iteration_asks_for_a_refresh():
    s = ClusterPKSampler(_labels(), p=4, k=2, clusters=4, share=1.0, batches=2)
    with pytest.raises(RuntimeError, match="no clusters yet"):
        list(s)
    s.refresh(np.eye(24, 24))  # one centroid per identity, given directly
    assert len(list(s)) == 2


@pytest.mark.parametrize("kwargs, message", [
    ({"share": 1.5}, "share of cluster batches"),
    ({"clusters": 30}, "30 clusters for 24 identities"),
    ({"refresh_every": 0}, "refresh_every"),
])
def test_bad_settings_are_refused(kwargs, message):
    with pytest.raises(ValueError, match=message):
        ClusterPKSampler(_labels(), p=4, k=2, **kwargs)


def test_spherical_kmeans_keeps_every_cluster_and_is_seeded():
    rng = np.random.default_rng(0)
    x = rng.normal(size=(40, 8))
    x /= np.linalg.norm(x, axis=1, keepdims=True)
    a1, c1 = spherical_kmeans(x, 10, np.random.default_rng(5))
    a2, c2 = spherical_kmeans(x, 10, np.random.default_rng(5))
    assert np.array_equal(a1, a2) and np.allclose(c1, c2)
    assert set(a1.tolist()) == set(range(10))
    np.testing.assert_allclose(np.linalg.norm(c1, axis=1), 1.0)
    # every point sits in the cluster whose centre is closest (a fixed point of the iteration)
    assert np.array_equal(np.argmax(x @ c1.T, axis=1)[np.bincount(a1)[a1] > 1],
                          a1[np.bincount(a1)[a1] > 1])
