"""The P x K sampler's guarantee and its small-identity policies."""

from __future__ import annotations

from collections import Counter

import pytest

from faceidx.train.sampler import BatchSizeError, PKSampler


def _labels():
    # 6 identities with 5 images, 3 with 2 images, 2 with 1 image
    return [f"a{i}" for i in range(6) for _ in range(5)] + [f"b{i}" for i in range(3) for _ in range(2)] + ["c0", "c1"]


@pytest.mark.parametrize("small", ["replace", "skip"])
def test_every_batch_is_p_identities_times_k(small):
    labels = _labels()
    s = PKSampler(labels, p=3, k=4, seed=1, small=small, batches=20)
    assert len(list(s)) == 20
    for batch in s:
        counts = Counter(labels[i] for i in batch)
        assert len(batch) == 12 and len(counts) == 3 and set(counts.values()) == {4}
        assert not {"c0", "c1"} & set(counts)
        if small == "skip":
            assert all(lab.startswith("a") for lab in counts)
        for lab in counts:  # distinct images first, repeats only when the identity is short
            distinct = {i for i in batch if labels[i] == lab}
            assert len(distinct) == min(4, labels.count(lab))


def test_replace_policy_uses_small_identities_and_cycles():
    labels = _labels()
    seen = Counter()
    for batch in PKSampler(labels, p=3, k=4, seed=0, small="replace", batches=12):
        seen.update({labels[i] for i in batch})
    assert {f"b{i}" for i in range(3)} <= set(seen)
    assert max(seen.values()) - min(seen.values()) <= 1  # identities drawn evenly


def test_seeded_per_epoch():
    labels = _labels()
    s = PKSampler(labels, p=2, k=2, seed=5)
    e0 = list(s)
    s.set_epoch(1)
    e1 = list(s)
    s.set_epoch(0)
    assert list(s) == e0 and e1 != e0


def test_p_times_k_larger_than_data_is_refused():
    with pytest.raises(BatchSizeError, match="needs 7 identities with >= 4 images, the data has 6"):
        PKSampler(_labels(), p=7, k=4, small="skip")
    with pytest.raises(BatchSizeError, match="the data has 9"):
        PKSampler(_labels(), p=10, k=2)
    with pytest.raises(BatchSizeError, match="K must be >= 2"):
        PKSampler(_labels(), p=2, k=1)
