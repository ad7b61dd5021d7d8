"""Property-based API tests generated from /openapi.json (schemathesis): no 5xx, and
every error is JSON with its status. Bounded: 15 examples per operation, derandomized."""

from __future__ import annotations

import shutil

import schemathesis
from hypothesis import HealthCheck, given, settings

from tests.serve.conftest import start


def test_no_server_errors(calibrated_index, tmp_path):
    d = tmp_path / "index"
    shutil.copytree(calibrated_index[0], d)
    service, client = start(d, flush_seconds=3600, max_embeddings=64)
    try:
        schema = schemathesis.openapi.from_asgi("/openapi.json", client.app)
        operations = [r.ok() for r in schema.get_all_operations()]
        assert {f"{op.method.upper()} {op.path}" for op in operations} >= {
            "POST /v1/identify", "POST /v1/verify", "POST /v1/faces", "GET /v1/identities",
            "DELETE /v1/identities/{identity}", "DELETE /v1/faces/{face_id}", "GET /v1/info"}
        for op in operations:
            _check(op)
    finally:
        service.close()


def _check(op) -> None:
    @given(case=op.as_strategy())
    @settings(max_examples=15, deadline=None, derandomize=True, database=None,
              suppress_health_check=list(HealthCheck))
    def run(case):
        response = case.call()
        assert response.status_code < 500, (case.method, case.path, response.text[:500])
        if response.status_code >= 400:
            body = response.json()
            assert body["status"] == response.status_code and body["error"]

    run()
