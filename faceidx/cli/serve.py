"""`faceidx serve`: answer, enrol and erase over HTTP (FastAPI + uvicorn)."""

from __future__ import annotations

import os
from pathlib import Path

import click

from faceidx.cli.options import device_option
from faceidx.cli.query import threshold_option


@click.command()
@click.argument("index_dir", type=click.Path(exists=True, file_okay=False, path_type=Path))
@click.option("--host", default="127.0.0.1", show_default=True,
              help="Address to listen on; beyond loopback a bearer token is required.")
@click.option("--port", type=click.IntRange(0, 65535), default=8000, show_default=True)
@click.option("--token-file", type=click.Path(exists=True, dir_okay=False, path_type=Path),
              default=None, help="File holding the bearer token (else $FACEIDX_TOKEN).")
@threshold_option("Default decision threshold: 'auto' (calibration.json) or a cosine score.")
@click.option("--read-only", is_flag=True,
              help="Do not take the writer lock: identify and verify only.")
@click.option("--max-batch", type=click.IntRange(min=1), default=256, show_default=True,
              help="Probes searched together at most (micro-batching).")
@click.option("--max-wait-ms", type=click.FloatRange(min=0), default=2.0, show_default=True,
              help="How long a batch waits for more concurrent requests.")
@click.option("--flush-seconds", type=click.FloatRange(min=0.1), default=5.0, show_default=True,
              help="Enrolled faces are written into the index within this time.")
@click.option("--threads", type=click.IntRange(min=1), default=None,
              help="FAISS threads (default: FAISS's own; set once at start-up).")
@click.option("--nprobe", type=click.IntRange(min=1), default=None,
              help="IVF lists probed per search (default: the index's tuned value; lower is "
                   "faster and less exact; requests may set their own).")
@device_option
def serve(index_dir: Path, host: str, port: int, token_file: Path | None, threshold: str,
          read_only: bool, max_batch: int, max_wait_ms: float, flush_seconds: float,
          threads: int | None, nprobe: int | None, device: str) -> None:
    """Serve an index over HTTP: identify, verify, enrol and erase at the same time.

    The service holds the index's writer lock while it runs (a `faceidx add` meanwhile
    is refused: enrol through POST /v1/faces). Enrolled faces are durable and searchable
    when the request returns. API at /docs, schema at /openapi.json; see docs/SERVE.md.

    \b
    Example:
      faceidx serve faces.index --port 8000
      curl -s localhost:8000/v1/identify -H 'content-type: application/json' \\
           -d '{"embeddings": [[0.01, ...]], "k": 3}'
      FACEIDX_TOKEN=$(cat token) faceidx serve faces.index --host 0.0.0.0
    """
    from faceidx.serve import ServeConfig, Service, create_app
    from faceidx.serve.guard import load_token

    try:
        import uvicorn
    except ImportError as err:
        from faceidx.errors import MissingDependencyError

        raise MissingDependencyError("faceidx serve needs fastapi and uvicorn: "
                                     "pip install 'faceidx[serve]'") from err
    token = load_token(token_file, host)
    config = ServeConfig(threshold=threshold, device=device, max_batch=max_batch,
                         max_wait_ms=max_wait_ms, flush_seconds=flush_seconds,
                         writable=not read_only, threads=threads, nprobe=nprobe,
                         holder=f"faceidx serve http://{host}:{port} (pid {os.getpid()})")
    service = Service.open(index_dir, config)
    try:
        click.echo(f"serving {index_dir} ({service.gallery.index.ntotal:,} faces) on "
                   f"http://{host}:{port}" + (" (read-only)" if read_only else ""), err=True)
        uvicorn.run(create_app(service, token, close_on_shutdown=True), host=host, port=port, log_level="warning",
                    access_log=False)
    finally:
        service.close()
