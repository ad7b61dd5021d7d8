"""The identification service without HTTP: micro-batched identify, verify, enrol, erase.

    svc = Service.open("faces.index", ServeConfig(max_wait_ms=2))
    fut = svc.identify_vectors(vectors, k=3, threshold=None)   # Future of [Identification]
    svc.close()

Identify requests are queued to a MicroBatcher that searches every waiting probe in one
call (grouped by k) on the snapshot current when the batch starts; image probes are
detected in the caller's thread, then their chips are queued to a second batcher that
runs one model batch. The app (faceidx/serve/app.py) maps this onto HTTP.
"""

from __future__ import annotations

import os
import threading
import time
from dataclasses import dataclass

import numpy as np

from faceidx.gallery import Gallery, open_gallery
from faceidx.query.identify import Identification, identify
from faceidx.serve.batcher import MicroBatcher
from faceidx.serve.metrics import Metrics


@dataclass
class ServeConfig:
    """Limits and batching of a service. Sizes are bytes; waits milliseconds."""

    threshold: str = "auto"
    device: str = "auto"
    max_batch: int = 256           # probes per search batch
    max_wait_ms: float = 2.0       # how long a batch waits for company
    max_body_bytes: int = 32 << 20
    max_images: int = 32           # images per request
    max_embeddings: int = 1024     # embeddings per request
    max_k: int = 100
    flush_rows: int = 4096         # pending faces that trigger a flush into the index
    flush_seconds: float = 5.0     # or the age of the oldest pending face
    writable: bool = True          # hold the writer lock and accept enrol/erase/merge
    holder: str = "faceidx serve"
    threads: int | None = None     # FAISS OpenMP threads (None: FAISS's default)
    nprobe: int | None = None      # IVF lists probed (None: the index's tuned value)


class Service:
    """A Gallery, its LiveGallery (writes) and the batchers; thread-safe."""

    def __init__(self, gallery: Gallery, config: ServeConfig):
        from faceidx.serve.live import LiveGallery

        self.gallery, self.config = gallery, config
        self.metrics = Metrics()
        self.started = time.time()
        self.live = None
        if config.writable:
            self.live = LiveGallery(gallery, holder=config.holder, flush_rows=config.flush_rows,
                                    flush_seconds=config.flush_seconds)
        self.search = MicroBatcher(self._search_batch, config.max_batch, config.max_wait_ms / 1000,
                                   size=lambda item: len(item[0]), name="search",
                                   on_batch=self.metrics.batch_of("search"))
        self.embed = MicroBatcher(self._embed_batch, 64, config.max_wait_ms / 1000,
                                  size=lambda chips: max(len(chips), 1), name="embed",
                                  on_batch=self.metrics.batch_of("embed"))
        self.ready = True
        self.closed = False
        # identity keys of the shards, read off the request path (first queries stay fast)
        threading.Thread(target=gallery.index.keys.warm, name="faceidx-warm", daemon=True).start()

    @classmethod
    def open(cls, index_dir: str | os.PathLike, config: ServeConfig | None = None) -> Service:
        config = config or ServeConfig()
        return cls(open_gallery(index_dir, threshold=config.threshold, device=config.device,
                                threads=config.threads), config)

    # -- batches ------------------------------------------------------------------------

    def submit_search(self, q: np.ndarray, k: int, nprobe: int | None = None):
        """A Future of the Identifications (thresholds not set) of q, micro-batched."""
        return self.search.submit((q, k, nprobe or self.config.nprobe))

    def _search_batch(self, items: list) -> list:
        snap = self.gallery.snapshot   # one consistent gallery for the whole batch
        out: list = [None] * len(items)
        for key in sorted({(k, p or 0) for _, k, p in items}):
            mine = [i for i, (_, k, p) in enumerate(items) if (k, p or 0) == key]
            q = np.concatenate([items[i][0] for i in mine])
            found = identify(snap.index, q, k=key[0], threshold=None, nprobe=key[1] or None)
            at = 0
            for i in mine:
                n = len(items[i][0])
                out[i] = found[at:at + n]
                at += n
        return out

    def _embed_batch(self, items: list) -> list:
        embedder = self.gallery.embedder()
        flat = [c for chips in items for c in chips]
        vectors = embedder.encode(flat)
        out, at = [], 0
        for chips in items:
            out.append(vectors[at:at + len(chips)])
            at += len(chips)
        return out

    # -- identification -------------------------------------------------------------------

    def identify_vectors(self, vectors: np.ndarray, k: int, threshold) -> list[Identification]:
        """Identifications of embedding rows (micro-batched); threshold None: the default."""
        q = self.gallery._vectors(vectors)
        thr = self.gallery.threshold_for(threshold)
        found = self.submit_search(q, k).result() if len(q) else []
        for res in found:
            res.threshold, res.fpir = thr.value, thr.fpir
        return found

    def embed_images(self, images: list, faces: str = "largest") -> list[tuple]:
        """(vectors, boxes, reason) per image: detected here, embedded in one model batch
        shared with concurrent requests."""
        embedder = self.gallery.embedder()
        found = [embedder.detect(image, faces) for image in images]
        futures = [self.embed.submit(chips) if reason is None else None
                   for chips, _, reason, _ in found]
        empty = np.empty((0, embedder.dim), np.float32)
        return [(empty if fut is None else fut.result(), boxes, reason)
                for (_, boxes, reason, _), fut in zip(found, futures, strict=True)]

    def identify_images(self, images: list[tuple[str, bytes]], k: int, threshold,
                        faces: str = "largest") -> list[dict]:
        """One record per face (with its box) or per skipped image, in order, each the
        JSON of `faceidx query --json` ("probe" is the upload's file name)."""
        thr = self.gallery.threshold_for(threshold)
        embedded = self.embed_images([data for _, data in images], faces)
        rows = [v for v, _, _ in embedded]
        found = iter(self.identify_vectors(np.concatenate(rows), k, threshold)
                     if sum(map(len, rows)) else [])
        records = []
        for (name, _), (_, boxes, reason) in zip(images, embedded, strict=True):
            if reason is not None:
                res = Identification.skipped(reason, thr.value)
                res.fpir = thr.fpir
                records.append({"probe": name, **res.to_json()})
                continue
            for box in boxes:
                res = next(found)
                res.box = tuple(int(v) for v in box)
                records.append({"probe": name, **res.to_json()})
        return records

    # -- state --------------------------------------------------------------------------

    def gauges(self) -> dict:
        snap = self.gallery.snapshot
        return {"gallery_faces": int(snap.index.ntotal), "identities": len(snap.counts()),
                "pending": 0 if self.live is None else self.live.pending,
                "generation": int(snap.index.manifest.get("generation", 0) or 0),
                "queues": {"search": self.search.depth, "embed": self.embed.depth}}

    def close(self) -> None:
        """Stop batching, flush pending faces, release the writer lock (once)."""
        if self.closed:
            return
        self.closed = True
        self.ready = False
        self.search.close()
        self.embed.close()
        if self.live is not None:
            self.live.close()
