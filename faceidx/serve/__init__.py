"""`faceidx serve`: a resident identification service (FastAPI + uvicorn).

    from faceidx.serve import Service, ServeConfig, create_app
    app = create_app(Service.open("faces.index", ServeConfig()), token=None)

service.py holds the logic (micro-batched search and embedding), live.py the writes
(writer lock, write-ahead log, in-memory delta, flush, merge), app.py the HTTP API,
guard.py auth and limits, metrics.py Prometheus. FastAPI is imported only by app.py.
"""

from faceidx.serve.service import ServeConfig, Service


def create_app(service: Service, token: str | None = None, close_on_shutdown: bool = False):
    """The ASGI app of `service` (see faceidx.serve.app)."""
    from faceidx.serve.app import create_app as _create

    return _create(service, token, close_on_shutdown)


__all__ = ["ServeConfig", "Service", "create_app"]
