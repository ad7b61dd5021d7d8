"""The FAISS GPU path, guarded: nothing here touches CUDA unless faiss reports GPUs.

Training: k-means assignment runs on the GPU through the IVF's clustering index.
Adding: the coarse quantizer is swapped for a GPU copy while vectors are assigned,
and the CPU quantizer is put back before the index is written, so index files are
always CPU indexes.
"""

from __future__ import annotations

import contextlib
import logging
from collections.abc import Iterator

from faceidx.index.faissio import faiss, ivf_of

log = logging.getLogger(__name__)


def num_gpus() -> int:
    """GPUs faiss can use (0 for faiss-cpu builds, which lack the call or report none)."""
    f = faiss()
    get = getattr(f, "get_num_gpus", None)
    if get is None:
        return 0
    try:
        return int(get())
    except RuntimeError:
        return 0


def use_gpu(device: str) -> bool:
    """Resolve a device choice ("auto", "cpu", "cuda") for faiss work."""
    if device == "cpu":
        return False
    n = num_gpus()
    if device == "cuda" and n == 0:
        raise RuntimeError("--device cuda asked for, but this faiss build sees no GPU")
    return n > 0


@contextlib.contextmanager
def gpu_training(index, enabled: bool) -> Iterator[None]:
    """While training `index`, run its coarse k-means on all GPUs (when enabled and IVF)."""
    ivf = ivf_of(index) if enabled else None
    if ivf is None:
        yield
        return
    f = faiss()
    ivf.clustering_index = f.index_cpu_to_all_gpus(f.IndexFlatL2(ivf.d))
    log.info("training the coarse quantizer on %d GPU(s)", num_gpus())
    try:
        yield
    finally:
        ivf.clustering_index = None


@contextlib.contextmanager
def gpu_assignment(index, enabled: bool) -> Iterator[None]:
    """While adding to `index`, assign vectors to lists with a GPU copy of the quantizer."""
    ivf = ivf_of(index) if enabled else None
    if ivf is None:
        yield
        return
    f = faiss()
    cpu_quantizer = ivf.quantizer
    flat = f.IndexFlatL2(ivf.d)
    flat.add(cpu_quantizer.reconstruct_n(0, cpu_quantizer.ntotal))
    gpu_q = f.index_cpu_to_all_gpus(flat)
    owned = swap_quantizer(ivf, gpu_q, False)
    try:
        yield
    finally:
        swap_quantizer(ivf, cpu_quantizer, owned)


def swap_quantizer(ivf, quantizer, own: bool) -> bool:
    """Point `ivf` at another quantizer holding the same centroids; returns the old ownership.

    The caller keeps a Python reference to the quantizer it swapped out and restores it
    (with its ownership) before the index is written or freed.
    """
    owned = bool(ivf.own_fields)
    ivf.quantizer = quantizer
    ivf.own_fields = own
    return owned
