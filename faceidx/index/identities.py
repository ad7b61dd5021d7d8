"""Distinct identities of an index, counted without re-reading every shard each time.

    ids = IdentitySet.load(index_dir, manifest)    # cache + only the shards it lacks
    ids.add_names(identity_names_of(new_shard))    # as each new shard is finished
    manifest.num_identities = ids.count
    ids.save(index_dir, manifest)

The set is kept as sorted 64-bit hashes of the names (BLAKE2b): 8 bytes an identity,
~800 MB at 100M identities, so that finishing a shard costs the new shard's names,
whatever the number of shards. Two names share a hash with probability about
U^2 / 2^65 (3e-4 at U = 100M identities), which would undercount by one.

``identities.npy`` + ``identities.json`` (the shard folders it covers) is a cache,
written only by the writer holding the index lock: when its shard list is not a prefix
of the manifest's (an erase rewrote a shard), it is rebuilt from the shards once.
"""

from __future__ import annotations

import hashlib
import json
import os
from collections.abc import Iterable
from pathlib import Path

import numpy as np

from faceidx.index.manifest import IndexManifest
from faceidx.index.store import identity_names_of
from faceidx.io.atomic import atomic_path, write_json_atomic
from faceidx.io.fs import load_npy

CACHE = "identities.npy"
CACHE_INFO = "identities.json"


def name_hashes(names: Iterable[str]) -> np.ndarray:
    """Sorted unique uint64 hashes of non-empty names."""
    h = [int.from_bytes(hashlib.blake2b(n.encode(), digest_size=8).digest(), "little")
         for n in names if n]
    return np.unique(np.asarray(h, np.uint64))


class IdentitySet:
    """Hashes of the identity names of the shards in `dirs` (in manifest order)."""

    def __init__(self, hashes: np.ndarray, dirs: list[str]):
        self.hashes = hashes
        self.dirs = dirs

    @property
    def count(self) -> int:
        return len(self.hashes)

    def add_names(self, names: Iterable[str], shard_dir: str) -> None:
        self.hashes = np.union1d(self.hashes, name_hashes(names))
        self.dirs.append(shard_dir)

    @classmethod
    def load(cls, index_dir: str | os.PathLike, manifest: IndexManifest) -> IdentitySet:
        """The set of the manifest's shards: the cache, plus the shards after it."""
        out = Path(index_dir)
        dirs = [s.dir for s in manifest.shards]
        ids = cls(np.empty(0, np.uint64), [])
        try:
            cached = json.loads((out / CACHE_INFO).read_text())["dirs"]
            if cached == dirs[:len(cached)]:
                ids = cls(load_npy(out / CACHE).astype(np.uint64), list(cached))
        except (OSError, ValueError, KeyError, TypeError):
            pass  # no cache, or a damaged one: rebuilt from the shards
        for d in dirs[len(ids.dirs):]:
            ids.add_names(identity_names_of(out / d), d)
        return ids

    def save(self, index_dir: str | os.PathLike) -> None:
        out = Path(index_dir)
        with atomic_path(out / CACHE) as tmp, open(tmp, "wb") as fh:
            np.save(fh, self.hashes)
        write_json_atomic(out / CACHE_INFO, {"dirs": self.dirs, "count": self.count})


def count_identities(index_dir: str | os.PathLike, manifest: IndexManifest) -> int:
    """Distinct identity names over the manifest's shards (updates the cache)."""
    ids = IdentitySet.load(index_dir, manifest)
    ids.save(index_dir)
    return ids.count
