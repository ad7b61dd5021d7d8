"""Image probes over HTTP with the real face model (ORL, already cropped: detector none)."""

from __future__ import annotations

import pytest
from click.testing import CliRunner

from faceidx.cli.main import cli
from tests.serve.conftest import start

pytestmark = pytest.mark.slow


def test_identify_enrol_verify_images(shared_data, tmp_path):
    orl = shared_data / "orl"
    people = ["s1", "s2", "s3"]
    for p in people:
        (tmp_path / "g" / p).mkdir(parents=True)
        (tmp_path / "g" / p / "1.pgm").symlink_to(orl / p / "1.pgm")
    r = CliRunner().invoke(cli, ["--quiet", "embed", str(tmp_path / "g"), "--out", str(tmp_path / "e"),
                                 "--detector", "none", "--workers", "0"])
    assert r.exit_code == 0, r.output
    assert CliRunner().invoke(cli, ["--quiet", "build", str(tmp_path / "e"), "--out",
                                    str(tmp_path / "idx")]).exit_code == 0
    service, client = start(tmp_path / "idx", threshold="0.9", flush_seconds=3600)
    try:
        probe = (orl / "s2" / "1.pgm").read_bytes()   # ORL uncropped: other photos score alike
        r = client.post("/v1/identify", files=[("images", ("s2.pgm", probe)),
                                               ("images", ("empty.pgm", b""))], data={"k": "2"})
        assert r.status_code == 200, r.text
        first, skipped = r.json()["results"]
        assert first["probe"] == "s2.pgm" and first["candidates"][0]["identity"] == "s2"
        assert len(first["box"]) == 4 and first["score"] > 0.999
        assert skipped["status"] == "empty" and skipped["candidates"] == []
        r = client.post("/v1/faces", files={"images": ("s9.pgm", (orl / "s9" / "1.pgm").read_bytes())},
                        data={"identity": "s9"})
        assert r.status_code == 201, r.text
        r = client.post("/v1/identify", files={"images": ("q.pgm", (orl / "s9" / "1.pgm").read_bytes())})
        assert r.json()["results"][0]["decision"] == "s9" and r.json()["results"][0]["score"] > 0.999
        r = client.post("/v1/verify", files={"image": ("q.pgm", probe)},
                        data={"identity": "s2", "threshold": "0.5"})
        assert r.status_code == 200 and r.json()["match"] is True, r.text
        r = client.post("/v1/faces", files={"images": ("bad.pgm", b"nope")}, data={"identity": "x"})
        assert r.status_code == 400 and "not_an_image" in r.json()["error"]
    finally:
        service.close()
