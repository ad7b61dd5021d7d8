"""Request and response models of the HTTP API (pydantic), and the OpenAPI bodies of
endpoints that take JSON (embeddings) or multipart (images) on one path."""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, ConfigDict, Field

Threshold = float | None
IDENTITY = Field(min_length=1, max_length=256, description="The person's name")


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid")


class IdentifyJSON(_Strict):
    embeddings: list[list[float]] = Field(min_length=1, description="Probe embeddings (n, D)")
    k: int = Field(5, ge=1, description="Distinct identities listed per probe")
    threshold: Threshold = Field(None, ge=-1, le=1,
                                 description="Cosine decision threshold; default: calibrated")
    nprobe: int | None = Field(None, ge=1, le=1 << 20,
                               description="IVF lists probed; default: the service's (tuned)")


class IdentifyForm(_Strict):
    k: int = Field(5, ge=1)
    threshold: Threshold = Field(None, ge=-1, le=1)
    faces: Literal["largest", "all"] = "largest"


class VerifyJSON(_Strict):
    embedding: list[float] = Field(min_length=1)
    identity: str = IDENTITY
    threshold: Threshold = Field(None, ge=-1, le=1,
                                 description="Cosine threshold; default: the calibrated 1:1 one")


class VerifyForm(_Strict):
    identity: str = IDENTITY
    threshold: Threshold = Field(None, ge=-1, le=1)


class EnrolJSON(_Strict):
    identity: str = IDENTITY
    embeddings: list[list[float]] = Field(min_length=1)
    sources: list[str | None] | None = None


class EnrolForm(_Strict):
    identity: str = IDENTITY


class Candidate(BaseModel):
    rank: int
    identity: str | None
    score: float
    face_id: int
    source: str | None


class Result(BaseModel):
    probe: int | str
    decision: str | None
    status: str
    score: float | None
    threshold: float | None
    fpir: float | None
    margin: float | None
    candidates: list[Candidate]
    box: list[int] | None = None
    reason: str | None = None


class IdentifyResponse(BaseModel):
    results: list[Result]


class EnrolResponse(BaseModel):
    identity: str
    face_ids: list[int]


class EraseResponse(BaseModel):
    erased: dict


class IdentityCount(BaseModel):
    identity: str
    faces: int


class IdentityPage(BaseModel):
    total: int
    offset: int
    limit: int
    identities: list[IdentityCount]


class Face(BaseModel):
    face_id: int
    source: str | None


class IdentityFaces(BaseModel):
    identity: str
    faces: list[Face]


def two_bodies(json_model: type[BaseModel], form_model: type[BaseModel], files: str = "images",
               many: bool = True) -> dict:
    """openapi_extra for a path that takes `json_model` as JSON, or `form_model`'s fields
    plus file(s) `files` as multipart (the handler parses the request itself)."""
    form = form_model.model_json_schema()
    binary = {"type": "string", "format": "binary"}
    form_schema = {"type": "object",
                   "properties": {**form.get("properties", {}),
                                  files: {"type": "array", "items": binary} if many else binary},
                   "required": [*form.get("required", []), files]}
    return {"requestBody": {"required": True, "content": {
        "application/json": {"schema": json_model.model_json_schema()},
        "multipart/form-data": {"schema": form_schema}}}}
