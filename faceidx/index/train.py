"""Train stage: sample the collection uniformly, train the FAISS index once, write it.

The trained empty index (``trained.index``) is what every shard starts from, so all
shards share one coarse quantizer and one PQ codebook: they can be searched together
or merged, and `faceidx add` enrols new faces without retraining.
"""

from __future__ import annotations

import logging
import shutil
import time
from pathlib import Path

import numpy as np

from faceidx.errors import DataError
from faceidx.index.faissio import faiss, ivf_of, prepare, read_index, write_index
from faceidx.index.gpu import gpu_training, kmeans_backend, train_coarse_in_torch
from faceidx.index.params import IndexParams
from faceidx.io import Collection
from faceidx.io.atomic import atomic_path, sha256_file

log = logging.getLogger(__name__)


def make_index(factory: str, dim: int):
    """An untrained index for `factory` (L2 metric on unit vectors) that accepts ids.

    Non-IVF indexes (Flat, HNSW, ...) are wrapped in IndexIDMap so that every shard can
    add its vectors under their global row numbers. A factory FAISS does not know
    raises ValueError with FAISS's message.
    """
    f = faiss()
    try:
        index = f.index_factory(dim, factory, f.METRIC_L2)
    except RuntimeError as err:
        msg = str(err).strip().splitlines()[-1] if str(err).strip() else "unknown"
        raise ValueError(f"FAISS cannot build index spec {factory!r}: {msg}") from err
    if ivf_of(index) is None and not isinstance(index, f.IndexIDMap):
        index = f.IndexIDMap(index)
    return index


def train_stage(coll: Collection, index_dir: Path, params: IndexParams, dim: int,
                center: bool, seed: int = 0, device: str = "cpu") -> tuple[str, dict]:
    """Train (or reuse) ``trained.index`` in `index_dir`; return (sha256, stats).

    With `center`, the mean of the normalised sample is saved as ``mean.npy`` and
    subtracted (then rows renormalised) before training and adding. `device` ("auto",
    "cpu", "cuda") is resolved here, where the stage runs (a Ray task may run it on a
    GPU node): FAISS on GPUs, torch k-means on a CUDA GPU, or FAISS on the CPU.
    """
    path = index_dir / "trained.index"
    mean_path = index_dir / "mean.npy"
    if path.exists() and (mean_path.exists() or not center):
        read_index(path)  # a damaged file fails here, naming itself
        log.info("trained index found, reusing %s", path)
        return sha256_file(path), {"reused": True}
    index = make_index(params.factory, dim)
    stats: dict = {"train_size": 0, "train_seconds": 0.0}
    mean = None
    if not index.is_trained or center:
        t0 = time.perf_counter()
        sample = coll.sample(max(params.train_size, 1), seed=seed, columns=["embedding"])
        x = prepare(sample.embeddings)
        stats["sample_seconds"] = round(time.perf_counter() - t0, 3)
        if center:
            mean = x.mean(axis=0).astype(np.float32)
            with atomic_path(mean_path) as tmp, open(tmp, "wb") as fh:
                np.save(fh, mean)
            x = prepare(x, mean)
        if not index.is_trained:
            log.info("training %s on %d vectors", params.factory, len(x))
            t1 = time.perf_counter()
            backend = kmeans_backend(device)
            stats["kmeans"] = backend
            try:
                if backend == "torch-cuda":
                    stats["coarse"] = train_coarse_in_torch(index, x, "cuda", seed)
                with gpu_training(index, backend == "faiss-gpu"):
                    index.train(x)
            except RuntimeError as err:
                raise DataError(f"FAISS could not train {params.factory!r} on {len(x)} "
                                f"vectors: {str(err).strip().splitlines()[-1]}", coll.path) from err
            stats["train_seconds"] = round(time.perf_counter() - t1, 3)
        stats["train_size"] = len(x)
    write_index(index, path)
    return sha256_file(path), stats


def install_trained(src: str | Path, index_dir: Path, params: IndexParams, dim: int) -> dict:
    """Use `src`, a trained empty index made elsewhere, as `index_dir`'s trained.index.

    For training once where it is cheap (a GPU machine: `faceidx build --device cuda`
    leaves OUT/trained.index) and building anywhere. It must be what `params.factory`
    makes for `dim`: same index type, lists and code size, trained and empty; otherwise
    DataError names the file and what differs. A resumed build keeps the trained.index
    it already has.
    """
    src = Path(src)
    path = index_dir / "trained.index"
    if path.exists():
        return {"reused": True}
    got = read_index(src)
    want = make_index(params.factory, dim)
    problems = []
    if got.d != dim:
        problems.append(f"it holds {got.d}-D vectors, the collection {dim}-D")
    if type(got).__name__ != type(want).__name__:
        problems.append(f"it is a {type(got).__name__}, {params.factory!r} makes a {type(want).__name__}")
    g_ivf, w_ivf = ivf_of(got), ivf_of(want)
    if g_ivf is not None and w_ivf is not None:
        if g_ivf.nlist != w_ivf.nlist:
            problems.append(f"it has {g_ivf.nlist} lists, {params.factory!r} {w_ivf.nlist}")
        if g_ivf.code_size != w_ivf.code_size:
            problems.append(f"its codes are {g_ivf.code_size} B, {params.factory!r} makes "
                            f"{w_ivf.code_size} B")
    if not got.is_trained:
        problems.append("it is not trained")
    if got.ntotal:
        problems.append(f"it already holds {got.ntotal} vectors (give a trained.index, not a shard)")
    if problems:
        raise DataError(f"cannot be used as the trained index of this build: {'; '.join(problems)}. "
                        f"Train one with `faceidx build COLLECTION --out DIR --index-spec "
                        f"{params.factory}` (OUT/trained.index), or drop --trained", src)
    with atomic_path(path) as tmp:
        shutil.copyfile(src, tmp)
    log.info("trained index taken from %s", src)
    return {"trained_from": str(src.resolve()), "train_size": 0}
