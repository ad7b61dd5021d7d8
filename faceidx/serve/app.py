"""The HTTP API of `faceidx serve` (FastAPI): /v1 endpoints, health, metrics, errors as JSON.

FastAPI is imported at the top of this module only: faceidx.serve imports it lazily.

    app = create_app(Service.open("faces.index"), token=None)    # an ASGI app for uvicorn

Endpoints (docs/SERVE.md has a curl example for each):
    POST   /v1/identify            embeddings (JSON) or images (multipart) -> {"results": [...]}
    POST   /v1/verify              1:1: a probe and a claimed identity
    POST   /v1/faces               enrol embeddings or images under an identity -> face ids
    DELETE /v1/identities/{name}   erase a person;  DELETE /v1/faces/{face_id}: one face
    GET    /v1/identities          paged, ?prefix=;  GET /v1/identities/{name}
    GET    /v1/info                index, calibration, counts, model
    POST   /v1/admin/flush|merge   write pending faces into the index / merge its shards
    GET    /healthz /readyz /metrics
"""

from __future__ import annotations

import asyncio
import logging

import numpy as np
from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse, Response
from pydantic import ValidationError
from starlette.concurrency import run_in_threadpool
from starlette.exceptions import HTTPException

from faceidx.errors import (
    DataError,
    FaceidxError,
    IndexBusyError,
    ModelMismatchError,
    NotFoundError,
)
from faceidx.gallery import Verification
from faceidx.serve import schemas as S
from faceidx.serve.guard import BodyTooLarge, Guard
from faceidx.serve.service import Service

log = logging.getLogger(__name__)

JSON = "application/json"
MULTIPART = "multipart/form-data"
FACES = ("largest", "all")


def create_app(service: Service, token: str | None = None, close_on_shutdown: bool = False):
    """The ASGI app serving `service` (wrapped in the auth / size / metrics Guard).

    close_on_shutdown: close the service (flush pending faces, release the writer lock)
    when the server shuts down (uvicorn re-raises SIGTERM after it, so the CLI cannot).
    """
    from contextlib import asynccontextmanager

    from faceidx import __version__

    @asynccontextmanager
    async def lifespan(_app):
        yield
        if close_on_shutdown:
            await run_in_threadpool(service.close)

    cfg = service.config
    app = FastAPI(title="faceidx", version=__version__, lifespan=lifespan,
                  description="Face identification: identify, verify, enrol, erase.")

    def error(status: int, message: str, **extra) -> JSONResponse:
        return JSONResponse({"error": message, "status": status, **extra}, status_code=status)

    @app.exception_handler(NotFoundError)
    async def _not_found(_, err):
        return error(404, err.reason)

    @app.exception_handler(IndexBusyError)
    async def _busy(_, err):
        return error(409, err.reason)

    @app.exception_handler(ModelMismatchError)
    async def _mismatch(_, err):
        return error(409, err.reason)

    @app.exception_handler(FaceidxError)
    async def _faceidx(_, err):
        return error(400, getattr(err, "reason", str(err)))

    @app.exception_handler(ValueError)
    async def _value(_, err):
        return error(422, str(err))

    @app.exception_handler(RequestValidationError)
    async def _validation(_, err):
        return error(422, "invalid request", detail=_plain(err.errors()))

    @app.exception_handler(ValidationError)
    async def _pydantic(_, err):
        return error(422, "invalid request", detail=_plain(err.errors()))

    @app.exception_handler(BodyTooLarge)
    async def _too_large(_, err):
        return error(413, f"request body over the limit of {cfg.max_body_bytes} bytes")

    @app.exception_handler(Exception)
    async def _internal(_, err):
        log.exception("internal error")
        return error(500, f"internal error ({type(err).__name__}); see the server log")

    @app.exception_handler(HTTPException)
    async def _http(_, err):
        return error(err.status_code, str(err.detail))

    async def body(request: Request, model, files_field: str, max_files: int):
        """(validated model, [(filename, bytes)]) from a JSON or a multipart request."""
        ctype = request.headers.get("content-type", "").split(";")[0].strip().lower()
        if ctype == MULTIPART:
            try:
                form = await request.form(max_files=max_files, max_fields=32)
            except BodyTooLarge:
                raise
            except Exception as err:   # malformed multipart, too many parts
                raise ValueError(f"cannot read the multipart form: {err}") from err
            uploads = [f for f in form.getlist(files_field) if hasattr(f, "read")]
            if not uploads:
                raise ValueError(f"the form has no file in field {files_field!r}")
            files = [(u.filename or f"{files_field} {i}", await u.read()) for i, u in enumerate(uploads)]
            fields = {k: v for k, v in form.items() if isinstance(v, str)}
            return model.model_validate(fields), files
        if ctype != JSON:
            raise _http_error(415, f"send {JSON} (embeddings) or {MULTIPART} (images)")
        raw = await request.body()
        return model.model_validate_json(raw or b"null"), []

    async def threaded(fn, *args):
        return await run_in_threadpool(fn, *args)

    def writable():
        if service.live is None:
            raise _http_error(409, "this service is read-only (started with --read-only)")
        return service.live

    @app.post("/v1/identify", openapi_extra=S.two_bodies(S.IdentifyJSON, S.IdentifyForm),
              response_model=S.IdentifyResponse, tags=["identify"])
    async def identify(request: Request):
        """Top-k identities and the decision for each probe: embeddings as JSON, or images
        as multipart (field `images`, one record per face kept by `faces`)."""
        if request.headers.get("content-type", "").lower().startswith(MULTIPART):
            req, files = await body(request, S.IdentifyForm, "images", cfg.max_images)
            _check_k(req.k, cfg.max_k)
            return {"results": await threaded(service.identify_images, files, req.k,
                                                 req.threshold, req.faces)}
        req, _ = await body(request, S.IdentifyJSON, "images", 0)
        _check_k(req.k, cfg.max_k)
        if len(req.embeddings) > cfg.max_embeddings:
            raise _http_error(413, f"{len(req.embeddings)} embeddings; at most {cfg.max_embeddings} a request")
        q = service.gallery._vectors(np.asarray(req.embeddings, np.float64))
        thr = service.gallery.threshold_for(req.threshold)
        found = await asyncio.wrap_future(service.submit_search(q, req.k, req.nprobe))
        results = []
        for i, res in enumerate(found):
            res.threshold, res.fpir = thr.value, thr.fpir
            results.append({"probe": i, **res.to_json()})
        return JSONResponse({"results": results})   # built here: no response re-validation

    @app.post("/v1/verify", openapi_extra=S.two_bodies(S.VerifyJSON, S.VerifyForm, "image", many=False),
              response_model=Verification, tags=["identify"])
    async def verify(request: Request):
        """1:1: is this probe (an embedding, or an image's largest face) the claimed
        identity? Judged against the calibrated 1:1 threshold unless one is given."""
        if request.headers.get("content-type", "").lower().startswith(MULTIPART):
            req, files = await body(request, S.VerifyForm, "image", 1)
            probe = files[0][1]
            vectors, boxes, reason = (await threaded(service.embed_images, [probe]))[0]
            if reason is not None:
                raise DataError(f"no usable face in the probe image ({reason})", files[0][0])
            v = await threaded(service.gallery.verify, vectors[0], req.identity, req.threshold)
            return {**v.to_json(), "box": [int(x) for x in boxes[0]]}
        req, _ = await body(request, S.VerifyJSON, "image", 0)
        v = await threaded(service.gallery.verify, np.asarray(req.embedding, np.float64),
                           req.identity, req.threshold)
        return v.to_json()

    @app.post("/v1/faces", status_code=201, openapi_extra=S.two_bodies(S.EnrolJSON, S.EnrolForm),
              response_model=S.EnrolResponse, tags=["write"])
    async def enrol(request: Request):
        """Enrol faces under an identity (embeddings, or images: the largest face of each).
        Durable and searchable when this returns."""
        live = writable()
        if request.headers.get("content-type", "").lower().startswith(MULTIPART):
            req, files = await body(request, S.EnrolForm, "images", cfg.max_images)
            found = await threaded(service.embed_images, [d for _, d in files])
            bad = [(n, r) for (n, _), (_, _, r) in zip(files, found, strict=True) if r is not None]
            if bad:
                raise DataError(f"no usable face to enrol ({bad[0][1]})", bad[0][0])
            vectors = np.concatenate([v[:1] for v, _, _ in found])
            sources = [n for n, _ in files]
        else:
            req, _ = await body(request, S.EnrolJSON, "images", 0)
            if len(req.embeddings) > cfg.max_embeddings:
                raise _http_error(413, f"{len(req.embeddings)} embeddings; at most {cfg.max_embeddings} a request")
            vectors = service.gallery._vectors(np.asarray(req.embeddings, np.float64))
            sources = req.sources or [None] * len(vectors)
            if len(sources) != len(vectors):
                raise ValueError(f"{len(vectors)} embeddings need {len(vectors)} sources, got {len(sources)}")
        ids = await threaded(live.enrol, req.identity, vectors, sources)
        return {"identity": req.identity, "face_ids": [int(f) for f in ids]}

    @app.delete("/v1/identities/{identity}", response_model=S.EraseResponse, tags=["write"])
    async def erase_identity(identity: str):
        """Erase every face of a person (404 when the gallery does not hold them)."""
        return {"erased": await threaded(writable().erase, (), [identity])}

    @app.delete("/v1/faces/{face_id}", response_model=S.EraseResponse, tags=["write"])
    async def erase_face(face_id: int):
        """Erase one face by its id (404 when the gallery does not hold it)."""
        if not 0 <= face_id < 2 ** 63:
            raise NotFoundError(f"face id {face_id} is not in the gallery")
        return {"erased": await threaded(writable().erase, [face_id], ())}

    @app.get("/v1/identities", response_model=S.IdentityPage, tags=["catalog"])
    async def identities(prefix: str = "", offset: int = 0, limit: int = 100):
        """Identities sorted by name, with their face counts; `prefix` filters."""
        if offset < 0 or not 1 <= limit <= 1000:
            raise ValueError("offset must be >= 0 and limit within [1, 1000]")
        total, page = await threaded(service.gallery.identities, prefix, offset, limit)
        return {"total": total, "offset": offset, "limit": limit,
                "identities": [{"identity": n, "faces": c} for n, c in page]}

    @app.get("/v1/identities/{identity}", response_model=S.IdentityFaces, tags=["catalog"])
    async def identity(identity: str):
        """One identity's faces (face ids and sources)."""
        return await threaded(service.gallery.identity, identity)

    @app.get("/v1/info", tags=["catalog"])
    async def info():
        """Index, calibration, threshold, counts, model and service settings."""
        out = await threaded(service.gallery.info)
        out["service"] = {"writable": service.live is not None, "max_batch": cfg.max_batch,
                          "max_wait_ms": cfg.max_wait_ms, "max_images": cfg.max_images,
                          "max_embeddings": cfg.max_embeddings, "max_body_bytes": cfg.max_body_bytes,
                          "flushes": 0 if service.live is None else service.live.flushes}
        return out

    @app.post("/v1/admin/flush", tags=["write"])
    async def flush():
        """Write the pending (acknowledged) faces into the index now."""
        return {"flushed": await threaded(writable().flush)}

    @app.post("/v1/admin/merge", tags=["write"])
    async def merge():
        """Flush, then merge the index's shards into one (the service keeps answering)."""
        return {"merged": await threaded(writable().merge)}

    @app.get("/healthz", tags=["health"])
    async def healthz():
        """The process answers."""
        return {"status": "ok"}

    @app.get("/readyz", tags=["health"])
    async def readyz():
        """Ready to answer (503 while starting or stopping)."""
        if not service.ready:
            return error(503, "not ready")
        return {"status": "ready", "faces": int(service.gallery.index.ntotal)}

    @app.get("/metrics", tags=["health"])
    async def metrics():
        """Prometheus metrics: requests, latency histograms, batch sizes, gallery, queues."""
        data, ctype = service.metrics.render(**await threaded(service.gauges))
        return Response(data, media_type=ctype)

    return Guard(app, token, cfg.max_body_bytes, service.metrics)


def _check_k(k: int, max_k: int) -> None:
    if not 1 <= k <= max_k:
        raise ValueError(f"k must be within [1, {max_k}], got {k}")


def _http_error(status: int, message: str):
    return HTTPException(status, message)


def _plain(errors) -> list[dict]:
    """Pydantic errors as plain JSON (no exception objects, no input echo beyond 200 chars)."""
    out = []
    for e in errors:
        out.append({"loc": [str(x) for x in e.get("loc", ())], "msg": str(e.get("msg", "")),
                    "type": str(e.get("type", ""))})
    return out
