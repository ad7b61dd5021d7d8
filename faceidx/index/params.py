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
from dataclasses import asdict, dataclass, field

FLAT_MAX = 20_000
MIN_POINTS_PER_CENTROID = 30
TARGET_POINTS_PER_CENTROID = 64
MAX_POINTS_PER_CENTROID = 256
MIN_NLIST = 16
HNSW_MIN_NLIST = 4096
DEFAULT_MAX_TRAIN = 500_000
ID_BYTES = 8  # FAISS stores one int64 id per vector in the inverted lists


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
    code_bytes: float = 0.0
    ram_bytes_per_vector: float = 0.0
    fallback: str = ""
    notes: list[str] = field(default_factory=list)

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


def choose_pq(dim: int, n: int, max_memory: int | None) -> tuple[int, int, int, list[str]]:
    """(m, bits, pca_dim) of the codes for n vectors of dim D within max_memory bytes.

    pca_dim > 0: vectors go through PCA (centred, randomly rotated) to pca_dim first.
    """
    notes: list[str] = []
    candidates = [(m, 0) for m in (dim // 2, dim // 4, dim // 8) if m >= 1 and dim % m == 0]
    if dim % 16 == 0 and candidates:  # between D/2 and D/4: PCA to 7D/8, 2-D sub-vectors
        candidates.insert(1, (dim * 7 // 16, dim * 7 // 8))
    if not candidates:
        candidates = [(dim, 0)]
    if max_memory is None:
        m, pca = candidates[0]
        return m, 4, pca, notes
    budget = max_memory / n - ID_BYTES
    for m, pca in candidates:
        if m / 2 <= budget:
            return m, 4, pca, notes
    fits = [m for m in range(1, dim + 1) if dim % m == 0 and m <= budget]
    if fits:
        m = max(fits)
        notes.append(f"memory budget {budget:.1f} B/vector for codes: 8-bit PQ{m}")
        return m, 8, 0, notes
    m = min(c[0] for c in candidates)
    notes.append(f"memory budget {budget:.1f} B/vector is below the smallest code; "
                 f"using PQ{m}x4 ({m / 2:g} B) anyway")
    return m, 4, 0, notes


def choose_params(n: int, dim: int, max_memory: int | None = None,
                  max_train: int = DEFAULT_MAX_TRAIN) -> IndexParams:
    """The index to build for n unit vectors of dimension dim within max_memory bytes of RAM.

    Pure: no I/O, no FAISS. `max_memory` bounds the index's resident size (codes + ids);
    the exact vectors used for re-ranking live on disk, memory-mapped.
    """
    if n <= 0:
        raise ValueError("cannot choose parameters for an empty collection")
    if n <= FLAT_MAX:
        return IndexParams(factory="Flat", nlist=0, train_size=0, code_bytes=4.0 * dim,
                           ram_bytes_per_vector=4.0 * dim + ID_BYTES,
                           notes=[f"n={n} <= {FLAT_MAX}: exact flat index"])
    nlist = choose_nlist(n, max_train)
    train = train_size_for(nlist, n, max_train)
    m, bits, pca, notes = choose_pq(dim, n, max_memory)
    hnsw = nlist > HNSW_MIN_NLIST
    opq = m < dim // 4
    coarse = f"IVF{nlist}_HNSW32" if hnsw else f"IVF{nlist}"
    code = f"PQ{m}x4fs" if bits == 4 else f"PQ{m}np"
    factory = (f"OPQ{m}," if opq else f"PCAR{pca}," if pca else "") + f"{coarse},{code}"
    code_bytes = m * bits / 8
    return IndexParams(factory=factory, nlist=nlist, train_size=train, pq_m=m, pq_bits=bits,
                       opq=opq, pca_dim=pca, hnsw_quantizer=hnsw, code_bytes=code_bytes,
                       ram_bytes_per_vector=code_bytes + ID_BYTES, notes=notes)


_IVF = re.compile(r"IVF(\d+)")


def params_for_spec(spec: str, n: int, dim: int, max_memory: int | None = None,
                    max_train: int = DEFAULT_MAX_TRAIN) -> IndexParams:
    """IndexParams for a user's factory string, or the automatic choice for "auto".

    A user's IVF list count that the collection cannot train (< 30 points per centroid)
    is lowered, and below MIN_NLIST lists the index falls back to Flat; `fallback`
    says so.
    """
    if spec == "auto":
        return choose_params(n, dim, max_memory, max_train)
    if n <= 0:
        raise ValueError("cannot choose parameters for an empty collection")
    match = _IVF.search(spec)
    if not match:
        return IndexParams(factory=spec, nlist=0, train_size=min(n, max_train))
    asked = int(match.group(1))
    trainable = min(n, max_train) // MIN_POINTS_PER_CENTROID
    if asked <= trainable:
        return IndexParams(factory=spec, nlist=asked, train_size=train_size_for(asked, n, max_train))
    nlist = asked
    while nlist > trainable:
        nlist //= 2
    if nlist < MIN_NLIST:
        return IndexParams(factory="Flat", nlist=0, train_size=0,
                           fallback=f"{n} vectors cannot train {spec!r} (needs >= "
                                    f"{MIN_POINTS_PER_CENTROID * asked}); using an exact Flat index")
    factory = spec[:match.start(1)] + str(nlist) + spec[match.end(1):]
    return IndexParams(factory=factory, nlist=nlist, train_size=train_size_for(nlist, n, max_train),
                       fallback=f"{n} vectors cannot train IVF{asked} (needs >= "
                                f"{MIN_POINTS_PER_CENTROID * asked}); using IVF{nlist}")
