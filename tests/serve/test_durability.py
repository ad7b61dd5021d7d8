"""Durable once acknowledged: the write-ahead log, and a real server killed with SIGKILL."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time

import httpx
import numpy as np
import pytest

from faceidx.errors import DataError
from faceidx.serve.wal import AddRecord, EraseRecord, WriteAheadLog


def test_wal_round_trip_and_torn_tail(tmp_path):
    wal = WriteAheadLog(tmp_path / "wal")
    v = np.arange(6, dtype=np.float32).reshape(2, 3)
    wal.append(AddRecord(np.array([7, 8]), "ann", ["a", None], v))
    wal.append(EraseRecord(np.array([7])))
    wal.close()
    with open(tmp_path / "wal", "ab") as fh:
        fh.write(b"0badc0de {\"op\": \"add\", \"face_i")   # a crash mid-append
    recs = WriteAheadLog(tmp_path / "wal").read()
    assert len(recs) == 2 and recs[0].identity == "ann" and recs[0].sources == ["a", None]
    np.testing.assert_array_equal(recs[0].vectors, v)
    assert list(recs[1].face_ids) == [7]
    lines = (tmp_path / "wal").read_bytes().split(b"\n")
    (tmp_path / "wal").write_bytes(b"\n".join([lines[0][:-3] + b"xyz", lines[1], b""]))
    with pytest.raises(DataError, match="line is damaged"):
        WriteAheadLog(tmp_path / "wal").read()


def test_replay_after_crash_between_publish_and_rewrite(index_copy):
    """Faces flushed into the index but still in the log are not added twice."""
    from faceidx.gallery import open_gallery
    from faceidx.serve.live import LiveGallery

    d, _ = index_copy
    live = LiveGallery(open_gallery(d), background=False)
    v = np.random.default_rng(1).normal(size=(2, live.gallery.dim))
    ids = live.enrol("ann", v)
    records = live.wal.read()
    live.flush()
    live.wal.rewrite(records)          # as if the rewrite had not happened
    live.close(flush=False)
    again = LiveGallery(open_gallery(d), background=False)
    try:
        assert again.pending == 0
        assert [f["face_id"] for f in again.gallery.identity("ann")["faces"]] == list(ids)
    finally:
        again.close()


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _start(index_dir, port):
    env = {**os.environ, "OMP_WAIT_POLICY": "PASSIVE", "FACEIDX_TOKEN": ""}
    cmd = [sys.executable, "-c", "from faceidx.cli.main import cli; cli()", "serve", str(index_dir),
           "--port", str(port), "--flush-seconds", "3600"]
    proc = subprocess.Popen(cmd, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise AssertionError(f"server exited: {proc.stderr.read().decode()[-2000:]}")
        try:
            if httpx.get(f"http://127.0.0.1:{port}/readyz", timeout=1).status_code == 200:
                return proc
        except httpx.HTTPError:
            time.sleep(0.2)
    proc.kill()
    raise AssertionError("server not ready within 60 s")


@pytest.mark.slow
def test_sigkill_after_acknowledged_enrolment(index_copy):
    d, _ = index_copy
    port = _free_port()
    url = f"http://127.0.0.1:{port}"
    proc = _start(d, port)
    v = np.random.default_rng(3).normal(size=(2, 32))
    try:
        r = httpx.post(f"{url}/v1/faces", json={"identity": "durable", "embeddings": v.tolist()},
                       timeout=30)
        assert r.status_code == 201, r.text
        ids = r.json()["face_ids"]
    finally:
        os.kill(proc.pid, signal.SIGKILL)   # right after the acknowledgement
        proc.wait(30)
    assert (d / "serve-wal.log").stat().st_size > 0
    proc = _start(d, port)
    try:
        faces = httpx.get(f"{url}/v1/identities/durable", timeout=30).json()["faces"]
        assert [f["face_id"] for f in faces] == ids
        r = httpx.post(f"{url}/v1/identify", json={"embeddings": v.tolist(), "k": 1, "threshold": 0.9},
                       timeout=30)
        assert [x["decision"] for x in r.json()["results"]] == ["durable"] * 2
    finally:
        proc.send_signal(signal.SIGTERM)     # a clean stop flushes and empties the log
        proc.wait(60)
    assert (d / "serve-wal.log").stat().st_size == 0
    from faceidx.index import open_index

    assert open_index(d).ntotal == 402
