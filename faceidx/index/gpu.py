"""The GPU paths of a build, guarded: nothing here touches CUDA unless a GPU is seen.

With a GPU build of FAISS: k-means assignment runs on the GPU through the IVF's
clustering index, and while adding, the coarse quantizer is swapped for a GPU copy and
the CPU quantizer put back before the index is written, so index files are always CPU
indexes. With faiss-cpu and a CUDA GPU that torch sees, the coarse k-means runs in torch
on that GPU (faceidx/index/kmeans.py) and the rest of training stays on the CPU.
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


def torch_cuda() -> bool:
    """Whether torch is installed and sees a CUDA GPU (torch is an optional dependency)."""
    try:
        import torch
    except ImportError:
        return False
    return bool(torch.cuda.is_available())


def use_gpu(device: str) -> bool:
    """Resolve a device choice ("auto", "cpu", "cuda") for faiss work: True when FAISS
    itself runs on GPUs. "cuda" is refused only when neither FAISS nor torch sees one."""
    if device == "cpu":
        return False
    n = num_gpus()
    if device == "cuda" and n == 0 and not torch_cuda():
        raise RuntimeError("--device cuda asked for, but neither this faiss build nor torch "
                           "sees a GPU; use --device cpu or auto")
    return n > 0


def kmeans_backend(device: str) -> str:
    """Where the coarse k-means runs for a device choice: "faiss-gpu", "torch-cuda" or "cpu"."""
    if use_gpu(device):
        return "faiss-gpu"
    if device != "cpu" and torch_cuda():
        return "torch-cuda"
    return "cpu"


def train_coarse_in_torch(index, x, device: str, seed: int) -> dict:
    """Fill the empty coarse quantizer of `index` with torch k-means centroids of `x`.

    FAISS then skips its own coarse k-means (the quantizer already holds nlist vectors)
    and trains only the rest (e.g. PQ on residuals). Only for an IVF at the top of
    `index` (no pre-transform, whose output the centroids would have to live in);
    returns {} when nothing was done.
    """
    from faceidx.index.kmeans import kmeans

    ivf = ivf_of(index)
    if ivf is None or ivf.quantizer.ntotal:
        return {}
    if isinstance(index, faiss().IndexPreTransform):
        log.info("pre-transformed index: the coarse k-means stays in FAISS")
        return {}
    centroids, stats = kmeans(x, ivf.nlist, device=device, seed=seed)
    ivf.quantizer.add(centroids)
    return stats


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
