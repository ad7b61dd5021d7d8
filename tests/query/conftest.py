"""Fixtures for query tests: a small seeded gallery index and a labelled holdout."""

from __future__ import annotations

import numpy as np
import pytest

from faceidx.index import BuildOptions, build_index, open_index
from faceidx.io import CollectionMeta, CollectionWriter
from tests.conftest import make_clusters

META = CollectionMeta(model="test-model", dim=32)


def write_collection(path, x, labels, sources, meta=META):
    with CollectionWriter(path, meta) as w:
        w.write(x, identities=labels, sources=sources)
    return path


def split_gallery(n_ids=400, per_id=4, enrolled=200, gallery_per_id=2, seed=1, noise=1.0):
    """Vectors of n_ids people; the first `enrolled` have `gallery_per_id` faces in the
    gallery, their other faces and all faces of the others form the holdout."""
    x, labels = make_clusters(n_ids, per_id, META.dim, seed=seed, noise=noise)
    person = np.repeat(np.arange(n_ids), per_id)
    nth = np.tile(np.arange(per_id), n_ids)
    gallery = (person < enrolled) & (nth < gallery_per_id)
    sources = np.array([f"img/{labels[i]}/{nth[i]}.jpg" for i in range(len(x))], dtype=object)
    return x, labels, sources, gallery


@pytest.fixture(scope="module")
def small_index(tmp_path_factory):
    """(index_dir, holdout_dir, arrays) for a 200-identity gallery and its holdout."""
    d = tmp_path_factory.mktemp("query")
    x, labels, sources, gallery = split_gallery()
    write_collection(d / "gallery", x[gallery], labels[gallery], sources[gallery])
    write_collection(d / "holdout", x[~gallery], labels[~gallery], sources[~gallery])
    build_index(d / "gallery", d / "index", BuildOptions(tune_queries=100))
    return {"index": d / "index", "holdout": d / "holdout", "dir": d, "x": x, "labels": labels,
            "sources": sources, "gallery": gallery}


@pytest.fixture(scope="module")
def reader(small_index):
    return open_index(small_index["index"])
