"""The service's gate: bearer token, request size limit, per-endpoint metrics (pure ASGI).

    app = Guard(fastapi_app, token="s3cret", max_body_bytes=32 << 20, metrics=Metrics())

A token is required on every path but /healthz and /readyz when one is set (the CLI
requires one whenever the service listens beyond loopback: `load_token`). Bodies over
the limit are refused with 413 before they are read whole. Every error is JSON.
"""

from __future__ import annotations

import hmac
import json
import os
import time
from pathlib import Path

from faceidx.errors import DataError

OPEN_PATHS = ("/healthz", "/readyz")
TOKEN_ENV = "FACEIDX_TOKEN"
LOOPBACK = ("127.0.0.1", "localhost", "::1")


def load_token(token_file: str | os.PathLike | None, host: str) -> str | None:
    """The bearer token: from `token_file`, else $FACEIDX_TOKEN. Beyond loopback one is
    required (DataError saying how to give one); on loopback it is optional."""
    token = None
    if token_file is not None:
        try:
            token = Path(token_file).read_text().strip()
        except OSError as err:
            raise DataError(f"cannot read the token file: {err.strerror or err}", token_file) from err
        if not token:
            raise DataError("the token file is empty", token_file)
    elif os.environ.get(TOKEN_ENV, "").strip():
        token = os.environ[TOKEN_ENV].strip()
    if token is None and host not in LOOPBACK:
        raise DataError(f"listening on {host} (beyond loopback) needs a bearer token: give "
                        f"--token-file FILE or set {TOKEN_ENV}")
    if token is not None and len(token) < 16:
        raise DataError("the bearer token is too short (at least 16 characters)")
    return token


class BodyTooLarge(Exception):
    pass


class Guard:
    """ASGI middleware: auth, body size limit, metrics."""

    def __init__(self, app, token: str | None, max_body_bytes: int, metrics=None):
        self.app, self.max_body = app, max_body_bytes
        self.token = None if token is None else f"Bearer {token}".encode()
        self.metrics = metrics

    async def __call__(self, scope, receive, send):
        if scope["type"] != "http":
            return await self.app(scope, receive, send)
        t0 = time.perf_counter()
        status = {"code": 500}

        async def send_status(message):
            if message["type"] == "http.response.start":
                status["code"] = message["status"]
            await send(message)

        try:
            refusal = self._refusal(scope)
            if refusal is not None:
                await _json(send_status, *refusal)
                return
            seen = {"bytes": 0}

            async def limited_receive():
                message = await receive()
                if message["type"] == "http.request":
                    seen["bytes"] += len(message.get("body", b""))
                    if seen["bytes"] > self.max_body:
                        raise BodyTooLarge()
                return message

            try:
                await self.app(scope, limited_receive, send_status)
            except BodyTooLarge:
                await _json(send_status, 413, f"request body over the limit of {self.max_body} bytes")
        finally:
            if self.metrics is not None:
                route = scope.get("route")
                name = getattr(route, "path", None) or "unmatched"
                self.metrics.observe(f"{scope['method']} {name}", status["code"],
                                     time.perf_counter() - t0)

    def _refusal(self, scope) -> tuple[int, str, dict] | None:
        headers = dict(scope.get("headers") or [])
        if self.token is not None and scope["path"] not in OPEN_PATHS:
            given = headers.get(b"authorization", b"")
            if not hmac.compare_digest(given, self.token):
                return 401, "missing or wrong bearer token (Authorization: Bearer TOKEN)", \
                    {"www-authenticate": "Bearer"}
        length = headers.get(b"content-length")
        if length is not None:
            try:
                n = int(length)
            except ValueError:
                return 400, "Content-Length is not a number", {}
            if n > self.max_body:
                return 413, f"request body of {n} bytes is over the limit of {self.max_body}", {}
        return None


async def _json(send, status: int, message: str, headers: dict | None = None) -> None:
    body = json.dumps({"error": message, "status": status}).encode()
    raw = [(b"content-type", b"application/json"), (b"content-length", str(len(body)).encode())]
    raw += [(k.encode(), v.encode()) for k, v in (headers or {}).items()]
    await send({"type": "http.response.start", "status": status, "headers": raw})
    await send({"type": "http.response.body", "body": body})
