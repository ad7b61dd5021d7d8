"""Every endpoint and error path of the HTTP API, in process."""

from __future__ import annotations

import json

import numpy as np
import pytest
from click.testing import CliRunner

from faceidx.cli.main import cli
from faceidx.errors import IndexBusyError
from tests.query.conftest import write_collection
from tests.serve.conftest import TOKEN, start


def probes(s, n=12):
    x = s["x"][~s["gallery"]][:n]
    return x, s["labels"][~s["gallery"]][:n]


def test_identify_equals_faceidx_query(served, tmp_path):
    service, client, s = served
    x, labels = probes(s)
    write_collection(tmp_path / "p", x, labels, [f"p{i}" for i in range(len(x))])
    r = CliRunner().invoke(cli, ["query", str(service.gallery.path), str(tmp_path / "p"), "-k", "3",
                                 "--json"])
    assert r.exit_code == 0, r.output
    cli_out = [json.loads(ln) for ln in r.stdout.splitlines()]
    got = client.post("/v1/identify", json={"embeddings": x.tolist(), "k": 3})
    assert got.status_code == 200, got.text
    results = got.json()["results"]
    assert len(results) == len(x) == len(cli_out)
    for i, (a, b) in enumerate(zip(results, cli_out, strict=True)):
        assert a["probe"] == i
        for key in ("decision", "status", "threshold", "fpir", "margin"):
            assert a[key] == b[key], key
        assert a["candidates"] == b["candidates"]
    assert {r["status"] for r in results} == {"known", "unknown"}
    fixed = client.post("/v1/identify", json={"embeddings": x[:2].tolist(), "threshold": -1.0})
    assert all(r["status"] == "known" and r["threshold"] == -1.0 for r in fixed.json()["results"])


@pytest.mark.parametrize("body,status,words", [
    ({"embeddings": [[1.0, 2.0]]}, 422, "shape"),
    ({"embeddings": []}, 422, "invalid request"),
    ({"embeddings": [[0.0] * 32]}, 422, "zero (or nearly zero) vector"),
    ({"embeddings": [[1.0] * 32], "k": 0}, 422, "invalid request"),
    ({"embeddings": [[1.0] * 32], "k": 101}, 422, "k must be within"),
    ({"embeddings": [[1.0] * 32], "threshold": 1.5}, 422, "invalid request"),
    ({"embeddings": [[1.0] * 32], "extra": 1}, 422, "invalid request"),
    ({"embeddings": [[1.0] * 32] * 1025}, 413, "at most 1024"),
])
def test_identify_errors(served, body, status, words):
    _, client, _ = served
    r = client.post("/v1/identify", json=body)
    assert r.status_code == status and words in r.json()["error"] + json.dumps(r.json())
    assert r.json()["status"] == status


def test_bad_requests_are_json(served):
    _, client, _ = served
    r = client.post("/v1/identify", content=b"{not json", headers={"content-type": "application/json"})
    assert r.status_code == 422 and r.json()["error"] == "invalid request"
    r = client.post("/v1/identify", content=b"x", headers={"content-type": "text/plain"})
    assert r.status_code == 415
    r = client.post("/v1/identify", files={"other": ("a.jpg", b"123")})
    assert r.status_code == 422 and "images" in r.json()["error"]
    r = client.post("/v1/identify", files={"images": ("a.jpg", b"not an image")})
    assert r.status_code == 400 and "cannot be loaded" in r.json()["error"]   # test-model
    r = client.get("/v1/nothing")
    assert r.status_code == 404 and r.json()["status"] == 404
    r = client.post("/v1/identify", content=b"0" * (33 << 20), headers={"content-type": "application/json"})
    assert r.status_code == 413 and "limit" in r.json()["error"]


def test_enrol_identify_erase(served):
    service, client, s = served
    dim = service.gallery.dim
    v = np.random.default_rng(4).normal(size=(2, dim))
    r = client.post("/v1/faces", json={"identity": "newcomer", "embeddings": v.tolist(),
                                        "sources": ["cam1", "cam2"]})
    assert r.status_code == 201, r.text
    ids = r.json()["face_ids"]
    assert len(ids) == 2 and service.live.pending == 2
    found = client.post("/v1/identify", json={"embeddings": v.tolist(), "k": 1, "threshold": 0.9})
    assert [x["decision"] for x in found.json()["results"]] == ["newcomer"] * 2
    faces = client.get("/v1/identities/newcomer").json()["faces"]
    assert [f["face_id"] for f in faces] == ids and faces[0]["source"] == "cam1"
    assert client.post("/v1/faces", json={"identity": "", "embeddings": v.tolist()}).status_code == 422
    assert client.post("/v1/faces", json={"identity": "x", "embeddings": v.tolist(),
                                          "sources": ["a"]}).status_code == 422
    # one face erased while pending, then the rest after a flush into the index
    assert client.delete(f"/v1/faces/{ids[0]}").json()["erased"]["erased_pending"] == 1
    assert client.post("/v1/admin/flush").json() == {"flushed": 1}
    assert service.live.pending == 0
    found = client.post("/v1/identify", json={"embeddings": v.tolist(), "k": 1, "threshold": 0.9})
    assert [x["decision"] for x in found.json()["results"]] == ["unknown", "newcomer"]
    assert client.delete("/v1/identities/newcomer").status_code == 200
    found = client.post("/v1/identify", json={"embeddings": v.tolist(), "k": 1, "threshold": 0.9})
    assert all(x["decision"] == "unknown" for x in found.json()["results"])
    for path in ("/v1/identities/newcomer", f"/v1/faces/{ids[1]}", "/v1/faces/-3"):
        r = client.delete(path)
        assert r.status_code == 404 and "not in the gallery" in r.json()["error"], path
    assert client.get("/v1/identities/newcomer").status_code == 404
    assert client.delete("/v1/faces/abc").status_code == 422


def test_verify_catalog_info_health_metrics(served):
    service, client, s = served
    x, labels = probes(s, 400)
    mate = int(np.flatnonzero(np.isin(labels, s["labels"][s["gallery"]]))[0])
    r = client.post("/v1/verify", json={"embedding": x[mate].tolist(), "identity": labels[mate]})
    assert r.status_code == 200 and r.json()["threshold_from"].startswith("calibration.json (1:1")
    assert r.json()["match"] == (r.json()["score"] >= r.json()["threshold"])
    assert client.post("/v1/verify", json={"embedding": x[0].tolist(),
                                           "identity": "nobody"}).status_code == 404
    page = client.get("/v1/identities", params={"prefix": "id001", "offset": 5, "limit": 3}).json()
    assert page["total"] == 100 and [i["identity"] for i in page["identities"]] == \
        ["id00105", "id00106", "id00107"]
    assert client.get("/v1/identities", params={"limit": 0}).status_code == 422
    info = client.get("/v1/info").json()
    assert info["index"]["faces"] == 400 and info["calibration"] and info["service"]["writable"]
    assert client.get("/healthz").json() == {"status": "ok"}
    assert client.get("/readyz").json()["status"] == "ready"
    text = client.get("/metrics").text
    for name in ("faceidx_requests_total", "faceidx_request_seconds_bucket", "faceidx_gallery_faces 400.0",
                 "faceidx_queue_depth", "faceidx_batch_items"):
        assert name in text, name
    assert client.get("/openapi.json").json()["paths"]["/v1/identify"]["post"]["requestBody"]


def test_token_required_when_set(index_copy):
    service, client = start(index_copy[0], token=TOKEN)
    try:
        assert client.get("/healthz").status_code == 200      # open: liveness probes
        r = client.get("/v1/info")
        assert r.status_code == 401 and r.headers["www-authenticate"] == "Bearer"
        assert client.get("/v1/info", headers={"Authorization": "Bearer wrong"}).status_code == 401
        assert client.get("/v1/info", headers={"Authorization": f"Bearer {TOKEN}"}).status_code == 200
    finally:
        service.close()


def test_token_rules(tmp_path, monkeypatch):
    from faceidx.errors import DataError
    from faceidx.serve.guard import load_token

    monkeypatch.delenv("FACEIDX_TOKEN", raising=False)
    assert load_token(None, "127.0.0.1") is None
    with pytest.raises(DataError, match="needs a bearer token"):
        load_token(None, "0.0.0.0")
    (tmp_path / "t").write_text(TOKEN + "\n")
    assert load_token(tmp_path / "t", "0.0.0.0") == TOKEN
    monkeypatch.setenv("FACEIDX_TOKEN", "short")
    with pytest.raises(DataError, match="too short"):
        load_token(None, "0.0.0.0")


def test_one_writer_while_serving(served, tmp_path):
    service, client, s = served
    from faceidx.index.writer import open_writer

    with pytest.raises(IndexBusyError, match="faceidx serve"):
        open_writer(service.gallery.path, holder="test")
    write_collection(tmp_path / "new", s["x"][:3], ["a", "b", "c"], ["1", "2", "3"])
    r = CliRunner().invoke(cli, ["add", str(service.gallery.path), str(tmp_path / "new")])
    assert r.exit_code == 1 and "faceidx serve" in r.output


def test_read_only_service_refuses_writes(index_copy):
    service, client = start(index_copy[0], writable=False)
    try:
        r = client.post("/v1/faces", json={"identity": "a", "embeddings": [[1.0] * 32]})
        assert r.status_code == 409 and "read-only" in r.json()["error"]
        assert client.post("/v1/identify", json={"embeddings": [[1.0] * 32]}).status_code == 200
    finally:
        service.close()


def test_merge_while_serving(tmp_path):
    from faceidx.index import BuildOptions, build_index
    from tests.index.helpers import write_collection as clusters

    clusters(tmp_path / "c", n_ids=400, per_id=10, shard_rows=2000)
    build_index(tmp_path / "c", tmp_path / "idx", BuildOptions(index_spec="IVF64,PQ8x4fs",
                                                               shard_rows=2000, tune_queries=50))
    service, client = start(tmp_path / "idx", threshold="0.9", flush_seconds=3600)
    try:
        v = np.random.default_rng(8).normal(size=(3, service.gallery.dim))
        client.post("/v1/faces", json={"identity": "m", "embeddings": v.tolist()})
        assert len(service.gallery.index.base.parts) == 2
        r = client.post("/v1/admin/merge")
        assert r.status_code == 200, r.text
        assert service.live.pending == 0 and len(service.gallery.index.base.parts) == 1
        found = client.post("/v1/identify", json={"embeddings": v.tolist(), "k": 1})
        assert [x["decision"] for x in found.json()["results"]] == ["m"] * 3
        # nprobe per request reaches the search (a per-call FAISS parameter)
        from faceidx.query.identify import identify

        q = np.random.default_rng(9).normal(size=(40, service.gallery.dim)).astype(np.float32)
        answers = []
        for nprobe in (1, 64):
            got = client.post("/v1/identify", json={"embeddings": q.tolist(), "k": 3,
                                                    "nprobe": nprobe}).json()["results"]
            want = identify(service.gallery.index, q, k=3, nprobe=nprobe)
            answers.append([[c.face_id for c in w.candidates] for w in want])
            assert [[c["face_id"] for c in g["candidates"]] for g in got] == answers[-1]
        assert answers[0] != answers[1]   # nprobe 1 misses faces that nprobe 64 finds
        assert client.post("/v1/identify", json={"embeddings": q.tolist(), "nprobe": 0}).status_code == 422
    finally:
        service.close()
