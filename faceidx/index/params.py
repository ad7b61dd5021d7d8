"""The automatic index parameters: a pure function of (n, D, memory budget).

    p = choose_params(n=1_000_000, dim=128)
    p.factory        # 'IVF4096,PQ64x4fs'
    p.train_size     # how many sampled vectors train it

Vectors are L2-normalised and indexed with the L2 metric: on unit vectors L2 ranks
exactly like cosine, and FAISS's 4-bit fast-scan works there while inner-product
fast-scan loses most true neighbours on face-like vectors (shared/FAISS_NOTES.md).
Codes are not residual (``x4fs``): with exact re-ranking, residual codes (``x4fsr``)
gave the same rank-1 agreement on realistic synthetic faces (100k: 1.000 vs 0.998 at
nprobe 128, k_factor 16) for 4.4x the search time (one look-up table per probed list).
Exact float32 vectors are kept beside the index (memory mapped, not in RAM) and
candidates are re-ranked with them, so decision scores are exact cosines.

Rules, each a line below:
- n <= FLAT_MAX: exact ``Flat`` (no training; search is cheap at that size).
- nlist: the power of two nearest 4*sqrt(n), kept within [4*sqrt(n), 16*sqrt(n)],
  then lowered until the training sample holds >= 30 points per centroid.
- training sample: 64 points per centroid (>= 30, <= 256), capped by n and by
  `max_train`.
- coarse quantizer: HNSW32 when nlist > HNSW_MIN_NLIST; it assigns vectors when adding
  (2.5x faster than exact at 16384 lists), searches assign exactly (coarse.py).
- codes: D/2 sub-quantizers of 4 bits (``PQ64x4fs``: 32 B + 8 B id per 128-D vector).
  Measured at 100k: PQ32x4 topped out at 0.986 rank-1 agreement whatever
  nprobe/k_factor, PQ64x4 reached 1.0.
- a `max_memory` below that: first, when D is a multiple of 16, PCA to 7D/8 (centred,
  random rotation) with 7D/16 sub-quantizers (``PCAR112,...,PQ56x4fs``: 28 B + 8 B id).
  The PCA centres away the large mean that face embeddings share, and drops the 16
  weakest directions. On 10M realistic synthetic faces (merged index) it used 38.0 B
  per vector instead of 42.2, and reached rank-1 accuracy within 0.5 pt of exact at
  18.4x exact QPS instead of 26.1x. Then D/4 or D/8 sub-quantizers. When even D/8 4-bit
  codes do not fit, 8-bit codes (``PQmnp``, no polysemous training) of the largest m
  that fits: at a few bytes per vector, 8 bits per sub-quantizer give more accuracy
  per byte.
- OPQ rotation only with heavy compression (m < D/4), where balancing the
  variance across sub-vectors matters.
"""

from __future__ import annotations

import math
import re
from dataclasses import asdict, dataclass, field, replace

from faceidx.errors import MemoryBudgetError
from faceidx.index.memory import ID_BYTES, estimate, fmt_bytes

FLAT_MAX = 20_000
MIN_POINTS_PER_CENTROID = 30
TARGET_POINTS_PER_CENTROID = 64
MAX_POINTS_PER_CENTROID = 256
MIN_NLIST = 16
HNSW_MIN_NLIST = 4096
DEFAULT_MAX_TRAIN = 500_000


@dataclass(frozen=True)
class IndexParams:
    """What to build: the FAISS factory string plus how to train it.

    factory: index_factory string (metric L2 on unit vectors).
    nlist: inverted lists (0 for a flat index). train_size: sample size to train.
    code_bytes: bytes of PQ code per vector. ram_bytes_per_vector: code + id.
    fallback: a sentence when the request could not be honoured as asked, else "".
    """

    factory: str
    nlist: int
    train_size: int
    pq_m: int = 0
    pq_bits: int = 0
    opq: bool = False
    pca_dim: int = 0
    hnsw_quantizer: bool = False
    keep_vectors: bool = True
    vector_dtype: str = "float32"  # the exact re-rank vectors on disk (faceidx/index/store.py)
    code_bytes: float = 0.0
    ram_bytes_per_vector: float = 0.0
    fallback: str = ""
    notes: list[str] = field(default_factory=list)
    memory: dict = field(default_factory=dict)  # faceidx/index/memory.py's estimate

    def to_json(self) -> dict:
        return asdict(self)


def choose_nlist(n: int, max_train: int = DEFAULT_MAX_TRAIN) -> int:
    """Inverted lists for n vectors: ~4*sqrt(n) as a power of two, trainable from the sample."""
    if n <= 0:
        raise ValueError("n must be positive")
    root = math.sqrt(n)
    nlist = 2 ** round(math.log2(4 * root))
    while nlist < 4 * root:
        nlist *= 2
    while nlist > 16 * root and nlist > MIN_NLIST:
        nlist //= 2
    trainable = min(n, max_train) // MIN_POINTS_PER_CENTROID
    while nlist > trainable and nlist > 1:
        nlist //= 2
    return max(nlist, 1)


def train_size_for(nlist: int, n: int, max_train: int = DEFAULT_MAX_TRAIN) -> int:
    """Training sample: 64 points per centroid, at least 30, at most 256, within n and max_train."""
    want = max(TARGET_POINTS_PER_CENTROID * nlist, 10_000)
    want = min(want, MAX_POINTS_PER_CENTROID * nlist, max_train, n)
    return max(min(n, MIN_POINTS_PER_CENTROID * nlist), want)


def code_options(dim: int) -> list[tuple[int, int, int]]:
    """(m, bits, pca_dim) from the most to the least accurate (and memory) code.

    4-bit fast-scan: D/2 sub-quantizers; PCA to 7D/8 with 7D/16 (D a multiple of 16);
    D/4; D/8. Then 8-bit codes (``PQmnp``, m >= 4) of fewer bytes than D/16.
    """
    options = [(m, 4, 0) for m in (dim // 2, dim // 4, dim // 8) if m >= 1 and dim % m == 0]
    if dim % 16 == 0 and options:  # between D/2 and D/4: PCA to 7D/8, 2-D sub-vectors
        options.insert(1, (dim * 7 // 16, 4, dim * 7 // 8))
    if not options:
        options = [(dim, 4, 0)]
    smallest = min(m for m, _, _ in options) / 2
    options += [(m, 8, 0) for m in range(dim, 3, -1) if dim % m == 0 and m < smallest]
    return options


def _ivf_params(n: int, dim: int, nlist: int, train: int, m: int, bits: int, pca: int,
                notes: list[str]) -> IndexParams:
    hnsw = nlist > HNSW_MIN_NLIST
    opq = m < dim // 4
    coarse = f"IVF{nlist}_HNSW32" if hnsw else f"IVF{nlist}"
    code = f"PQ{m}x4fs" if bits == 4 else f"PQ{m}np"
    factory = (f"OPQ{m}," if opq else f"PCAR{pca}," if pca else "") + f"{coarse},{code}"
    code_bytes = m * bits / 8
    return IndexParams(factory=factory, nlist=nlist, train_size=train, pq_m=m, pq_bits=bits,
                       opq=opq, pca_dim=pca, hnsw_quantizer=hnsw, code_bytes=code_bytes,
                       ram_bytes_per_vector=code_bytes + ID_BYTES, notes=list(notes))


def _with_memory(p: IndexParams, n: int, dim: int) -> IndexParams:
    return replace(p, memory=estimate(p, n, dim).to_json())


def _fit(p: IndexParams, n: int, dim: int, max_memory: int) -> IndexParams | None:
    """p within max_memory, with a smaller training sample (>= 30 per centroid) if the
    build needs it; None when it cannot fit."""
    if estimate(p, n, dim).peak <= max_memory:
        return p
    floor = max(MIN_POINTS_PER_CENTROID * p.nlist, 1)
    if p.nlist == 0 or p.train_size <= floor:
        return None
    low = replace(p, train_size=floor)
    if estimate(low, n, dim).peak > max_memory:
        return None
    lo, hi = floor, p.train_size  # largest sample that fits: low fits, p does not
    while hi - lo > 1:
        mid = (lo + hi) // 2
        lo, hi = (mid, hi) if estimate(replace(p, train_size=mid), n, dim).peak <= max_memory \
            else (lo, mid)
    return replace(p, train_size=lo, notes=p.notes + [
        f"training sample lowered to {lo} vectors to fit --max-memory {fmt_bytes(max_memory)}"])


def choose_params(n: int, dim: int, max_memory: int | None = None,
                  max_train: int = DEFAULT_MAX_TRAIN, refuse: bool = True) -> IndexParams | None:
    """The index to build for n unit vectors of dimension dim within max_memory bytes of RAM.

    Pure: no I/O, no FAISS. `max_memory` bounds the peak of the memory model
    (faceidx/index/memory.py): what search keeps resident (codes, ids, list padding,
    centroids, HNSW graph, tables, look-up-table and re-rank budgets) and what the build
    holds (training sample, k-means, one shard). The exact vectors used for re-ranking
    live on disk, memory-mapped. When no index fits: MemoryBudgetError saying what
    would fit (None with refuse=False).
    """
    if n <= 0:
        raise ValueError("cannot choose parameters for an empty collection")
    if n <= FLAT_MAX:
        p = IndexParams(factory="Flat", nlist=0, train_size=0, code_bytes=4.0 * dim,
                        ram_bytes_per_vector=4.0 * dim + ID_BYTES,
                        notes=[f"n={n} <= {FLAT_MAX}: exact flat index"])
        if max_memory is None or estimate(p, n, dim).peak <= max_memory:
            return _with_memory(p, n, dim)
    nlist = choose_nlist(n, max_train) if n > FLAT_MAX else max(1, min(MIN_NLIST, n // MIN_POINTS_PER_CENTROID))
    train = train_size_for(nlist, n, max_train)
    options = code_options(dim)
    if max_memory is None:
        m, bits, pca = options[0]
        return _with_memory(_ivf_params(n, dim, nlist, train, m, bits, pca, []), n, dim)
    for m, bits, pca in options:
        notes = [] if (m, bits, pca) == options[0] else [
            f"--max-memory {fmt_bytes(max_memory)}: {m} sub-quantizers x {bits} bits"
            + (f" after PCA to {pca}-D" if pca else "")]
        fit = _fit(_ivf_params(n, dim, nlist, train, m, bits, pca, notes), n, dim, max_memory)
        if fit is not None:
            return _with_memory(fit, n, dim)
    if not refuse:
        return None
    raise MemoryBudgetError(refusal(n, dim, max_memory, max_train))


def refusal(n: int, dim: int, max_memory: int, max_train: int = DEFAULT_MAX_TRAIN,
            factory: str | None = None) -> str:
    """Why nothing fits max_memory, and what would: fewer vectors or a larger budget."""
    if factory is None:
        smallest = choose_params(n, dim, None, max_train)
        m, bits, pca = code_options(dim)[-1]
        if smallest.nlist:
            smallest = _ivf_params(n, dim, smallest.nlist, MIN_POINTS_PER_CENTROID * smallest.nlist,
                                   m, bits, pca, [])
    else:
        smallest = params_for_spec(factory, n, dim, None, max_train)
    est = estimate(smallest, n, dim)
    lo, hi = 0, n  # most vectors whose index fits
    while hi - lo > 1:
        mid = (lo + hi) // 2
        ok = (choose_params(mid, dim, max_memory, max_train, refuse=False) if factory is None
              else _check_spec(params_for_spec(factory, mid, dim, None, max_train), mid, dim,
                               max_memory))
        lo, hi = (mid, hi) if ok is not None else (lo, mid)
    what = f"index spec {factory!r}" if factory else f"the smallest index ({smallest.factory})"
    return (f"--max-memory {fmt_bytes(max_memory)} cannot hold {n:,} vectors of {dim}-D: "
            f"{what} needs {fmt_bytes(est.peak)} ({est.summary()}). "
            + (f"It fits {lo:,} vectors; " if lo else
               f"No collection fits: the look-up-table and re-rank budgets alone take "
               f"{fmt_bytes(est.search['lut_budget'] + est.search['rerank_budget'])}; ")
            + f"for {n:,} use --max-memory {fmt_bytes(est.peak * 1.01 + 1)}"
            + ("" if factory is None else " or --index-spec auto"))


def _check_spec(p: IndexParams, n: int, dim: int, max_memory: int) -> IndexParams | None:
    return p if estimate(p, n, dim).peak <= max_memory else None


_IVF = re.compile(r"IVF(\d+)")


def params_for_spec(spec: str, n: int, dim: int, max_memory: int | None = None,
                    max_train: int = DEFAULT_MAX_TRAIN) -> IndexParams:
    """IndexParams for a user's factory string, or the automatic choice for "auto".

    A user's IVF list count that the collection cannot train (< 30 points per centroid)
    is lowered, and below MIN_NLIST lists the index falls back to Flat; `fallback`
    says so. With `max_memory`, a spec whose memory model does not fit is refused
    (MemoryBudgetError naming what would fit).
    """
    if spec == "auto":
        return choose_params(n, dim, max_memory, max_train)
    if n <= 0:
        raise ValueError("cannot choose parameters for an empty collection")
    p = _user_params(spec, n, dim, max_train)
    if max_memory is not None and estimate(p, n, dim).peak > max_memory:
        raise MemoryBudgetError(refusal(n, dim, max_memory, max_train, factory=spec))
    return _with_memory(p, n, dim)


_PQ = re.compile(r"PQ(\d+)(?:x(\d+))?")
_PCA = re.compile(r"PCAR?(\d+)")
_SQ = {"SQ4": 0.5, "SQ6": 0.75, "SQ8": 1.0, "SQfp16": 2.0, "SQbf16": 2.0}


def describe_factory(spec: str, dim: int) -> dict:
    """What a factory string stores, for the memory model: pq_m, pq_bits, pca_dim, opq,
    hnsw_quantizer, code_bytes (per vector, as stored in the lists or a flat index)."""
    pq = _PQ.search(spec)
    pca = _PCA.search(spec)
    d = int(pca.group(1)) if pca else dim
    out = {"pq_m": 0, "pq_bits": 0, "pca_dim": d if pca else 0, "opq": spec.startswith("OPQ"),
           "hnsw_quantizer": bool(re.search(r"IVF\d+_HNSW", spec))}
    if pq:
        out["pq_m"], out["pq_bits"] = int(pq.group(1)), int(pq.group(2) or 8)
        out["code_bytes"] = out["pq_m"] * out["pq_bits"] / 8
    else:
        sq = next((b for name, b in _SQ.items() if name in spec), None)
        out["code_bytes"] = d * (sq if sq is not None else 4.0)
        graph = re.match(r"(?:\w+,)*HNSW(\d+)", spec)
        if graph and not _IVF.search(spec):  # a graph over all vectors: 2*M links per vector
            out["code_bytes"] += 2 * int(graph.group(1)) * 4 + 16
    return out


def _user_params(spec: str, n: int, dim: int, max_train: int) -> IndexParams:
    info = describe_factory(spec, dim)
    info["ram_bytes_per_vector"] = info["code_bytes"] + ID_BYTES
    match = _IVF.search(spec)
    if not match:
        return IndexParams(factory=spec, nlist=0, train_size=min(n, max_train), **info)
    asked = int(match.group(1))
    trainable = min(n, max_train) // MIN_POINTS_PER_CENTROID
    if asked <= trainable:
        return IndexParams(factory=spec, nlist=asked, train_size=train_size_for(asked, n, max_train),
                           **info)
    nlist = asked
    while nlist > trainable:
        nlist //= 2
    if nlist < MIN_NLIST:
        return IndexParams(factory="Flat", nlist=0, train_size=0, code_bytes=4.0 * dim,
                           ram_bytes_per_vector=4.0 * dim + ID_BYTES,
                           fallback=f"{n} vectors cannot train {spec!r} (needs >= "
                                    f"{MIN_POINTS_PER_CENTROID * asked}); using an exact Flat index")
    factory = spec[:match.start(1)] + str(nlist) + spec[match.end(1):]
    info["hnsw_quantizer"] = info["hnsw_quantizer"] and nlist > 0
    return IndexParams(factory=factory, nlist=nlist, train_size=train_size_for(nlist, n, max_train),
                       fallback=f"{n} vectors cannot train IVF{asked} (needs >= "
                                f"{MIN_POINTS_PER_CENTROID * asked}); using IVF{nlist}", **info)
