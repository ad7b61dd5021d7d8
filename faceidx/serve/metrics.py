"""Prometheus metrics of one service (its own registry: several apps may live in a process).

    m = Metrics()
    m.observe("identify", 200, 0.004)
    body, content_type = m.render(gallery_faces=1_000_000, identities=100_000, pending=3,
                                  queues={"search": 0, "embed": 0})
"""

from __future__ import annotations

LATENCY_BUCKETS = (0.001, 0.002, 0.003, 0.005, 0.01, 0.02, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 10.0)
BATCH_BUCKETS = (1, 2, 4, 8, 16, 32, 64, 128, 256, 512, 1024)


class Metrics:
    """Request counts and latency histograms per endpoint, batch sizes, gallery gauges."""

    def __init__(self):
        from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram

        self.registry = CollectorRegistry()
        r = self.registry
        self.requests = Counter("faceidx_requests", "HTTP requests by endpoint and status",
                                ["endpoint", "status"], registry=r)
        self.latency = Histogram("faceidx_request_seconds", "HTTP request latency",
                                 ["endpoint"], buckets=LATENCY_BUCKETS, registry=r)
        self.batch = Histogram("faceidx_batch_items", "Items per micro-batch", ["batcher"],
                               buckets=BATCH_BUCKETS, registry=r)
        self.faces = Gauge("faceidx_gallery_faces", "Faces searchable now", registry=r)
        self.identities = Gauge("faceidx_gallery_identities", "Identities searchable now", registry=r)
        self.pending = Gauge("faceidx_pending_faces", "Enrolled faces not yet in the index", registry=r)
        self.queue = Gauge("faceidx_queue_depth", "Items waiting for a micro-batch", ["batcher"],
                           registry=r)
        self.generation = Gauge("faceidx_index_generation", "Index manifest generation", registry=r)

    def observe(self, endpoint: str, status: int, seconds: float) -> None:
        self.requests.labels(endpoint, str(status)).inc()
        self.latency.labels(endpoint).observe(seconds)

    def batch_of(self, batcher: str):
        """A callback for MicroBatcher(on_batch=...) recording batch sizes."""
        hist = self.batch.labels(batcher)
        return hist.observe

    def render(self, gallery_faces: int, identities: int, pending: int, generation: int,
               queues: dict[str, int]) -> tuple[bytes, str]:
        from prometheus_client import CONTENT_TYPE_LATEST, generate_latest

        self.faces.set(gallery_faces)
        self.identities.set(identities)
        self.pending.set(pending)
        self.generation.set(generation)
        for name, depth in queues.items():
            self.queue.labels(name).set(depth)
        return generate_latest(self.registry), CONTENT_TYPE_LATEST
