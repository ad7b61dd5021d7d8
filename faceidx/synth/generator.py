"""Stream synthetic faces: identities in fixed blocks, each block from its own seeded stream.

    for labels, vectors in iter_synthetic(100_000, 10, dim=128, seed=0):
        ...                                   # labels: str array, vectors: float32 unit rows
    summary = write_synthetic("faces/", 100_000, 10, seed=0)   # a collection (write.py)

Identity k belongs to block k // BLOCK_IDENTITIES; its image count and vectors come from
random streams keyed by (seed, block), so the output does not depend on the chunk size,
and the first N identities of a larger run are exactly a run with N identities. Memory is
one chunk (about `chunk_rows` rows) at a time, whatever the total.
"""

from __future__ import annotations

import contextlib
import logging
from collections.abc import Iterator
from dataclasses import dataclass

import numpy as np
import pyarrow as pa

from faceidx.io import CollectionMeta
from faceidx.synth.counts import count_cap, draw_counts, solve_shape
from faceidx.synth.model import GENERATOR_VERSION, MODEL_NAME, SynthModel, build_model

log = logging.getLogger(__name__)

BLOCK_IDENTITIES = 1024
CHUNK_ROWS = 65_536
# stream tags inside a block's seed: counts; identity centres, image scales, image noise
_COUNTS, _VECTOR_STREAMS = 0, (1, 2, 3)
ID_DIGITS, IMAGE_DIGITS = 8, 4  # minimum widths; names widen when needed


@dataclass
class SynthChunk:
    """Rows of consecutive identities. identity_ids, image_ids int64 (n,); vectors float32."""

    identity_ids: np.ndarray
    image_ids: np.ndarray
    vectors: np.ndarray

    def __len__(self) -> int:
        return len(self.identity_ids)


class SyntheticFaces:
    """The generator for one (identities, per_identity, dim, seed) request.

    per_identity is the mean number of images per identity (>= 1); with fixed_counts every
    identity gets round(per_identity) images instead of LFW's long tail.
    """

    def __init__(self, identities: int, per_identity: float, dim: int = 128, seed: int = 0,
                 fixed_counts: bool = False, model: SynthModel | None = None):
        if identities < 1:
            raise ValueError(f"identities must be at least 1, got {identities}")
        if per_identity < 1:
            raise ValueError(f"per_identity must be at least 1, got {per_identity}")
        if seed < 0:
            raise ValueError(f"seed must be non-negative, got {seed}")
        if model is not None and model.dim != dim:
            raise ValueError(f"model is for D={model.dim}, not {dim}")
        self.identities = identities
        self.per_identity = float(per_identity)
        self.dim = dim
        self.seed = seed
        self.fixed_counts = fixed_counts
        self.model = model or build_model(dim)
        log.debug("synthetic face model: %s", self.model.describe())
        self._shape = None if fixed_counts or per_identity == 1 else solve_shape(per_identity)
        self._id_digits = max(ID_DIGITS, len(str(identities - 1)))
        cap = count_cap(per_identity) if not fixed_counts else max(1, round(per_identity))
        self._image_table = _digits(np.arange(cap), max(IMAGE_DIGITS, len(str(cap - 1))))
        self._blas = _blas_controller()

    def request(self) -> dict:
        """What determines the rows: enough to check that a resumed run continues the same."""
        return {"identities": self.identities, "per_identity": self.per_identity,
                "dim": self.dim, "seed": self.seed, "fixed_counts": self.fixed_counts,
                "generator_version": GENERATOR_VERSION}

    @property
    def num_blocks(self) -> int:
        return -(-self.identities // BLOCK_IDENTITIES)

    def meta(self, dtype: str = "float32") -> CollectionMeta:
        return CollectionMeta(model=MODEL_NAME, dim=self.dim, model_version=GENERATOR_VERSION,
                              normalized=True, dtype=dtype)

    def block_counts(self, block: int) -> np.ndarray:
        """Images of each identity in `block` (int64, length <= BLOCK_IDENTITIES)."""
        n = min(BLOCK_IDENTITIES, self.identities - block * BLOCK_IDENTITIES)
        rng = np.random.default_rng([self.seed, block, _COUNTS])
        # always a full block's draws, so a partial last block is a prefix of a full one
        full = draw_counts(rng, BLOCK_IDENTITIES, self.per_identity, self._shape,
                           self.fixed_counts)
        return full[:n]

    def num_rows(self) -> int:
        """Total rows, from the counts streams alone (no vectors drawn)."""
        return sum(int(self.block_counts(b).sum()) for b in range(self.num_blocks))

    def chunks(self, chunk_rows: int = CHUNK_ROWS, normalize: bool = True,
               start_block: int = 0) -> Iterator[SynthChunk]:
        """Yield chunks of whole blocks holding about `chunk_rows` rows (at least one block)."""
        blocks: list[tuple[int, np.ndarray]] = []
        rows = 0
        for b in range(start_block, self.num_blocks):
            counts = self.block_counts(b)
            blocks.append((b, counts))
            rows += int(counts.sum())
            if rows >= chunk_rows:
                yield self._generate(blocks, rows, normalize)
                blocks, rows = [], 0
        if blocks:
            yield self._generate(blocks, rows, normalize)

    def _generate(self, blocks: list[tuple[int, np.ndarray]], rows: int,
                  normalize: bool) -> SynthChunk:
        """Per block: draw centres, image scales and unit noise in the eigenbasis, map them
        into the embedding space (one matrix product each), add the offset.

        Every block is computed on its own, on one BLAS thread, so its rows are
        bit-identical however blocks are grouped into chunks (a resumed run matches an
        uninterrupted one exactly) and whatever the machine's BLAS threading.
        """
        m = self.model
        noise_map = m.noise_scale[:, None] * m.basis.T  # diag(sd) U^T, (D, D)
        centre_map = m.centre_scale[:, None] * m.basis.T
        sigma = np.float32(m.sigma)
        x = np.empty((rows, self.dim), dtype=np.float32)
        identity_ids = np.empty(rows, dtype=np.int64)
        image_ids = np.empty(rows, dtype=np.int64)
        at = 0
        with self._one_blas_thread():
            for b, counts in blocks:
                # one stream per kind of draw: a block's first identities get the same
                # values whether or not the block is complete
                streams = [np.random.default_rng([self.seed, b, tag]) for tag in _VECTOR_STREAMS]
                n = int(counts.sum())
                centres = streams[0].standard_normal((len(counts), self.dim), dtype=np.float32)
                scale = streams[1].standard_normal(n, dtype=np.float32)
                scale *= sigma
                scale -= sigma * sigma
                np.exp(scale, out=scale)  # lognormal, E[s^2] = 1
                part = x[at:at + n]
                noise = streams[2].standard_normal((n, self.dim), dtype=np.float32)
                np.matmul(noise, noise_map, out=part)
                part *= scale[:, None]
                part += np.repeat(centres @ centre_map, counts, axis=0)
                part += m.mean
                local = np.repeat(np.arange(len(counts)), counts)
                identity_ids[at:at + n] = b * BLOCK_IDENTITIES + local
                image_ids[at:at + n] = np.arange(n) - (np.cumsum(counts) - counts)[local]
                at += n
        if normalize:
            x /= np.sqrt(np.einsum("ij,ij->i", x, x))[:, None]
        return SynthChunk(identity_ids, image_ids, x)

    def _one_blas_thread(self):
        """OpenBLAS's result for a row can change in the last bit with its thread count;
        and generation already runs beside the writer's thread (two BLAS threads on top
        measured 1.4-1.7x slower end to end on 2 cores)."""
        if self._blas is None:
            return contextlib.nullcontext()
        return self._blas.limit(limits=1, user_api="blas")

    # -- names ---------------------------------------------------------------------------------

    def identity_names(self, chunk: SynthChunk) -> pa.StringArray:
        """One identity name per row, e.g. ``s0-00000042`` (seed, then identity number)."""
        return _fixed_width_strings(self._name_bytes(chunk))

    def source_names(self, chunk: SynthChunk) -> pa.StringArray:
        """One source per row, e.g. ``synth:s0-00000042/0003`` (the image's number)."""
        image = self._image_table[chunk.image_ids]
        cols = [np.frombuffer(b"synth:", np.uint8)[None, :].repeat(len(chunk), 0),
                self._name_bytes(chunk), np.full((len(chunk), 1), ord("/"), np.uint8), image]
        return _fixed_width_strings(np.concatenate(cols, axis=1))

    def _name_bytes(self, chunk: SynthChunk) -> np.ndarray:
        first, last = int(chunk.identity_ids[0]), int(chunk.identity_ids[-1])
        ids = np.arange(first, last + 1)
        prefix = np.frombuffer(f"s{self.seed}-".encode(), np.uint8)
        table = np.concatenate([prefix[None, :].repeat(len(ids), 0),
                                _digits(ids, self._id_digits)], axis=1)
        return table[chunk.identity_ids - first]


def iter_synthetic(identities: int, per_identity: float, dim: int = 128, seed: int = 0,
                   chunk_rows: int = CHUNK_ROWS, normalize: bool = True,
                   fixed_counts: bool = False, model: SynthModel | None = None,
                   chunk_identities: int | None = None
                   ) -> Iterator[tuple[np.ndarray, np.ndarray]]:
    """Yield (labels object array of str (n,), vectors float32 (n, D)) chunks.

    Vectors are L2-normalised unless normalize=False (raw: mu + centre + noise). The same
    arguments give the same rows in the same order, whatever chunk_rows is. `model`: a
    prebuilt build_model(dim), to skip solving it again. chunk_identities, when given,
    sets chunk_rows to about that many identities' rows. Chunks hold whole blocks of
    BLOCK_IDENTITIES identities.
    """
    if chunk_identities is not None:
        chunk_rows = max(1, round(chunk_identities * per_identity))
    gen = SyntheticFaces(identities, per_identity, dim, seed, fixed_counts, model)
    for chunk in gen.chunks(chunk_rows, normalize):
        yield gen.identity_names(chunk).to_numpy(zero_copy_only=False), chunk.vectors


def sample_raw(gen: SyntheticFaces, max_rows: int = 20_000, max_identities: int = 2_000,
               max_per_identity: int = 10) -> tuple[np.ndarray, np.ndarray]:
    """Raw vectors and integer labels of a sample, regenerated rather than read back.

    The first `max_identities` identities (a uniform sample: identities are i.i.d.), at most
    `max_per_identity` images of each, at most `max_rows` rows. The per-identity cap keeps
    the long tail's largest identities from dominating the sample's mean and covariance.
    """
    vectors, labels, rows = [], [], 0
    for chunk in gen.chunks(CHUNK_ROWS, normalize=False):
        keep = (chunk.identity_ids < max_identities) & (chunk.image_ids < max_per_identity)
        idx = np.flatnonzero(keep)[: max_rows - rows]
        vectors.append(chunk.vectors[idx])
        labels.append(chunk.identity_ids[idx])
        rows += len(idx)
        if rows >= max_rows or chunk.identity_ids[-1] >= max_identities - 1:
            break
    return np.concatenate(vectors), np.concatenate(labels)


def _blas_controller():
    try:
        from threadpoolctl import ThreadpoolController
    except ImportError:  # a declared dependency; without it BLAS threading is left alone
        log.warning("threadpoolctl is not installed: synthetic vectors may differ in the "
                    "last bit between machines with different BLAS thread counts")
        return None
    return ThreadpoolController()


def _digits(values: np.ndarray, width: int) -> np.ndarray:
    """Zero-padded decimal digits of non-negative ints as an (n, width) uint8 matrix."""
    out = np.empty((len(values), width), dtype=np.uint8)
    v = np.asarray(values, dtype=np.int64).copy()
    for p in range(width - 1, -1, -1):
        out[:, p] = 48 + v % 10
        v //= 10
    return out


def _fixed_width_strings(chars: np.ndarray) -> pa.StringArray:
    """An arrow string array from an (n, w) uint8 matrix of ASCII, one row per string."""
    n, w = chars.shape
    offsets = pa.py_buffer((np.arange(n + 1, dtype=np.int32) * w).tobytes())
    data = pa.py_buffer(np.ascontiguousarray(chars).tobytes())
    return pa.StringArray.from_buffers(n, offsets, data)
