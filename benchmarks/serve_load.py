"""Load test of `faceidx serve` on loopback: QPS and latency, start-up, enrol-to-searchable.

    python benchmarks/serve_load.py --index /tmp/serve_bench/idx --collection /tmp/serve_bench/syn \
        [--image-index IDX --images DIR] --plot docs/img/serve_load.png

Starts `faceidx serve` as a subprocess (time to /readyz is the start-up figure), then an
async httpx client sends a fixed number of requests (or stops at --duration seconds)
at concurrency 1, 8 and 32, one embedding probe per request; the same at 32 while
enrolling 10 faces/s and erasing 1 face/s (faces the benchmark enrolled: the gallery
is left as it was, plus erased rows); enrol-to-searchable delay; and, with an image
index, image probes at concurrency 4 against `faceidx embed` on the same images.
One JSON line per measurement on stdout (and --out). The index is written to (enrol,
flush, erase): give a scratch copy.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import numpy as np


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def start_server(index: Path, port: int, extra=()) -> tuple[subprocess.Popen, float]:
    """(process, seconds from launch to /readyz answering 200)."""
    import httpx

    env = {**os.environ, "OMP_WAIT_POLICY": "PASSIVE"}
    cmd = [sys.executable, "-c", "from faceidx.cli.main import cli; cli()", "-q", "serve", str(index),
           "--port", str(port), *extra]
    t0 = time.perf_counter()
    proc = subprocess.Popen(cmd, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    while True:
        if proc.poll() is not None:
            raise SystemExit(f"server exited: {proc.stderr.read().decode()[-2000:]}")
        try:
            if httpx.get(f"http://127.0.0.1:{port}/readyz", timeout=2).status_code == 200:
                return proc, time.perf_counter() - t0
        except httpx.HTTPError:
            time.sleep(0.05)


def stop_server(proc: subprocess.Popen) -> None:
    proc.send_signal(signal.SIGTERM)
    try:
        proc.wait(120)
    except subprocess.TimeoutExpired:
        proc.kill()


def probe_vectors(collection: Path, n: int, seed: int = 0) -> np.ndarray:
    """n gallery faces drawn uniformly from the whole collection, with noise (mated
    probes), unit norm."""
    from faceidx.io import open_collection

    coll = open_collection(collection)
    rng = np.random.default_rng(seed)
    picks = np.sort(rng.choice(coll.num_rows, n, replace=False))
    out, start = [], 0
    for batch in coll.iter_batches(65_536, columns=["embedding"]):
        end = start + len(batch.embeddings)
        mine = picks[(picks >= start) & (picks < end)] - start
        out.append(np.asarray(batch.embeddings)[mine])
        start = end
    x = np.concatenate(out)
    x = x + 0.3 / np.sqrt(x.shape[1]) * rng.normal(size=x.shape)
    return rng.permutation(x / np.linalg.norm(x, axis=1, keepdims=True)).astype(np.float32)


class RawClient:
    """A keep-alive HTTP/1.1 connection speaking just enough HTTP for the load: httpx's
    per-request cost on a loaded 2-core machine capped the offered load below what the
    server could answer (its batches averaged 2 probes at concurrency 32)."""

    def __init__(self, host: str, port: int):
        self.host, self.port = host, port
        self.reader = self.writer = None

    async def post(self, path: str, body: bytes, ctype: str = "application/json") -> int:
        if self.writer is None:
            self.reader, self.writer = await asyncio.open_connection(self.host, self.port)
        head = (f"POST {path} HTTP/1.1\r\nHost: {self.host}\r\nContent-Type: {ctype}\r\n"
                f"Content-Length: {len(body)}\r\n\r\n").encode()
        self.writer.write(head + body)
        await self.writer.drain()
        status_line = await self.reader.readline()
        length = 0
        while True:
            line = await self.reader.readline()
            if line in (b"\r\n", b""):
                break
            name, _, value = line.partition(b":")
            if name.strip().lower() == b"content-length":
                length = int(value)
        await self.reader.readexactly(length)
        return int(status_line.split()[1])

    async def close(self) -> None:
        if self.writer is not None:
            self.writer.close()


def multipart(name: str, filename: str, data: bytes) -> tuple[bytes, str]:
    boundary = "faceidxbench0123456789"
    body = (f"--{boundary}\r\nContent-Disposition: form-data; name=\"{name}\"; "
            f"filename=\"{filename}\"\r\nContent-Type: application/octet-stream\r\n\r\n").encode() \
        + data + f"\r\n--{boundary}--\r\n".encode()
    return body, f"multipart/form-data; boundary={boundary}"


def server_cpu_seconds(pid: int) -> float:
    """utime + stime of a process (all its threads), from /proc."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


async def load(url: str, bodies, concurrency: int, requests: int, duration: float,
               files=None, pid: int | None = None) -> dict:
    """Send `requests` requests (or for `duration` s) with `concurrency` connections.

    Reports QPS, latency percentiles, and the CPU seconds the server and this client
    used per request (the machine is shared: CPU per request says what the time cannot).
    """
    host, port = url.split("//")[1].split(":")
    payloads = [(json.dumps(b).encode(), "application/json") for b in bodies] if files is None \
        else [multipart("images", name, data) for name, data in files]
    latencies, errors = [], 0
    sent = 0
    cpu0 = server_cpu_seconds(pid) if pid else None
    me0 = time.process_time()
    t0 = time.perf_counter()
    stop = t0 + duration

    async def worker():
        nonlocal sent, errors
        client = RawClient(host, int(port))
        try:
            while sent < requests and time.perf_counter() < stop:
                body, ctype = payloads[sent % len(payloads)]
                sent += 1
                t = time.perf_counter()
                status = await client.post("/v1/identify", body, ctype)
                latencies.append(time.perf_counter() - t)
                errors += status != 200
        finally:
            await client.close()

    await asyncio.gather(*(worker() for _ in range(concurrency)))
    elapsed = time.perf_counter() - t0
    lat = np.asarray(latencies) * 1000
    out = {"requests": len(lat), "errors": errors, "seconds": round(elapsed, 3),
           "qps": round(len(lat) / elapsed, 1), "p50_ms": round(float(np.percentile(lat, 50)), 2),
           "p99_ms": round(float(np.percentile(lat, 99)), 2),
           "client_cpu_ms_per_request": round((time.process_time() - me0) / len(lat) * 1000, 3)}
    if pid:
        out["server_cpu_ms_per_request"] = round((server_cpu_seconds(pid) - cpu0) / len(lat) * 1000, 3)
    return out


async def writes(url: str, dim: int, stop: asyncio.Event, enrol_rate: float = 10.0,
                 erase_rate: float = 1.0) -> dict:
    """Enrol `enrol_rate` faces/s (new identities) and erase `erase_rate` of them per s."""
    import httpx

    rng = np.random.default_rng(7)
    enrolled, enrol_ms, erase_ms = [], [], []
    async with httpx.AsyncClient(base_url=url, timeout=60) as client:
        t0 = time.perf_counter()
        n = 0
        while not stop.is_set():
            v = rng.normal(size=(1, dim))
            t = time.perf_counter()
            r = await client.post("/v1/faces", json={"identity": f"bench_{n:06d}", "embeddings": v.tolist()})
            enrol_ms.append((time.perf_counter() - t) * 1000)
            if r.status_code == 201:
                enrolled.append(r.json()["face_ids"][0])
            n += 1
            if n % int(enrol_rate / erase_rate) == 0 and enrolled:
                t = time.perf_counter()
                await client.delete(f"/v1/faces/{enrolled.pop(0)}")
                erase_ms.append((time.perf_counter() - t) * 1000)
            await asyncio.sleep(max(0.0, t0 + n / enrol_rate - time.perf_counter()))
    return {"enrolled": n, "erased": len(erase_ms),
            "enrol_p50_ms": round(float(np.percentile(enrol_ms, 50)), 2) if enrol_ms else None,
            "erase_p50_ms": round(float(np.percentile(erase_ms, 50)), 2) if erase_ms else None,
            "erase_p99_ms": round(float(np.percentile(erase_ms, 99)), 2) if erase_ms else None}


async def under_writes(url: str, bodies, dim: int, concurrency: int, requests: int,
                       duration: float, pid: int | None = None) -> dict:
    stop = asyncio.Event()
    w = asyncio.create_task(writes(url, dim, stop))
    out = await load(url, bodies, concurrency, requests, duration, pid=pid)
    stop.set()
    return {**out, **await w}


def enrol_to_searchable(url: str, dim: int, samples: int = 20) -> dict:
    """Time from sending an enrolment to an identify (sent after the 201) finding it."""
    import httpx

    rng = np.random.default_rng(11)
    delays, found = [], 0
    with httpx.Client(base_url=url, timeout=60) as client:
        for i in range(samples):
            v = rng.normal(size=(1, dim))
            t = time.perf_counter()
            client.post("/v1/faces", json={"identity": f"visible_{i:04d}", "embeddings": v.tolist()})
            r = client.post("/v1/identify", json={"embeddings": v.tolist(), "k": 1, "threshold": 0.99})
            delays.append((time.perf_counter() - t) * 1000)
            found += r.json()["results"][0]["decision"] == f"visible_{i:04d}"
    return {"samples": samples, "found_by_next_request": found,
            "p50_ms": round(float(np.percentile(delays, 50)), 2),
            "max_ms": round(float(np.max(delays)), 2)}


def embed_cli_images_per_s(images: list[Path], tmp: Path) -> float:
    """`faceidx embed` images/s on the same images (its own summary)."""
    folder = tmp / "embed_src"
    folder.mkdir(parents=True, exist_ok=True)
    for i, p in enumerate(images):
        link = folder / f"{i:05d}{p.suffix}"
        if not link.exists():
            link.symlink_to(p.resolve())
    out = tmp / "embed_out"
    subprocess.run(["rm", "-rf", str(out)], check=True)
    r = subprocess.run([sys.executable, "-c", "from faceidx.cli.main import cli; cli()", "-q", "embed",
                        str(folder), "--out", str(out), "--json"], capture_output=True, text=True,
                       env={**os.environ, "OMP_WAIT_POLICY": "PASSIVE"}, check=True)
    line = [ln for ln in r.stdout.splitlines() if ln.startswith("{")][-1]
    return float(json.loads(line)["images_per_s"])


def inprocess(gallery, vectors: np.ndarray, n: int = 256) -> dict:
    """The same identifications without HTTP: one at a time and in batches of 32
    (what the service's micro-batches can reach at best), wall and CPU per probe."""
    gallery.identify(vectors[:32], k=5)   # warm-up
    out = {}
    for label, size in (("single", 1), ("batch32", 32)):
        w, c = time.perf_counter(), time.process_time()
        for lo in range(0, n, size):
            gallery.identify(vectors[lo:lo + size], k=5)
        out[f"{label}_ms_per_probe"] = round((time.perf_counter() - w) / n * 1000, 3)
        out[f"{label}_cpu_ms_per_probe"] = round((time.process_time() - c) / n * 1000, 3)
        out[f"{label}_qps"] = round(n / (time.perf_counter() - w), 1)
    return out


def emit(rec: dict, out) -> None:
    line = json.dumps(rec)
    print(line, flush=True)
    if out is not None:
        out.write(line + "\n")
        out.flush()


def plot(records: list[dict], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    rows = [r for r in records if r["kind"] == "identify"]
    labels = [r["label"] for r in rows]
    fig, (a, b) = plt.subplots(1, 2, figsize=(11, 4))
    a.bar(labels, [r["qps"] for r in rows], color="tab:blue")
    a.axhline(1000, color="tab:red", ls="--", lw=1, label="goal 1,000/s at c=32")
    a.set_ylabel("identifications / s")
    a.legend()
    x = np.arange(len(rows))
    b.bar(x - 0.2, [r["p50_ms"] for r in rows], 0.4, label="p50")
    b.bar(x + 0.2, [r["p99_ms"] for r in rows], 0.4, label="p99")
    b.axhline(50, color="tab:red", ls="--", lw=1, label="goal p99 50 ms")
    b.set_xticks(x, labels)
    b.set_ylabel("latency (ms)")
    b.set_yscale("log")
    b.legend()
    for ax in (a, b):
        ax.tick_params(axis="x", labelrotation=20)
    load = max(r.get("loadavg_1m", 0.0) for r in rows)
    fig.suptitle(f"faceidx serve, loopback, 1M-face merged gallery (2 cores, load average "
                 f"up to {load:.1f})")
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=110)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--index", type=Path, required=True, help="scratch copy of a merged index")
    ap.add_argument("--collection", type=Path, required=True, help="its collection (probe source)")
    ap.add_argument("--requests", type=int, default=3000)
    ap.add_argument("--duration", type=float, default=15.0)
    ap.add_argument("--image-index", type=Path, default=None, help="an index of real faces")
    ap.add_argument("--images", type=Path, default=None, help="probe image folder for it")
    ap.add_argument("--max-images", type=int, default=100)
    ap.add_argument("--nprobe", type=int, default=None, help="serve with --nprobe N (default: tuned)")
    ap.add_argument("--skip-writes", action="store_true", help="only the read measurements")
    ap.add_argument("--out", type=Path, default=None)
    ap.add_argument("--plot", type=Path, default=None)
    ap.add_argument("--tmp", type=Path, default=Path("/tmp/serve_load"))
    args = ap.parse_args()
    out = open(args.out, "a") if args.out else None
    records = []

    def record(rec):
        rec["loadavg_1m"] = round(os.getloadavg()[0], 2)   # the machine is shared: say how busy
        records.append(rec)
        emit(rec, out)

    t0 = time.perf_counter()
    from faceidx.gallery import open_gallery

    g = open_gallery(args.index, threshold="0.9")
    record({"kind": "open_gallery", "faces": int(g.index.ntotal), "seconds": round(time.perf_counter() - t0, 3)})
    dim = g.dim
    vectors = probe_vectors(args.collection, 2000)
    record({"kind": "inprocess", **inprocess(g, vectors)})
    del g
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    extra = ["--threshold", "0.9"] + (["--nprobe", str(args.nprobe)] if args.nprobe else [])
    proc, ready = start_server(args.index, port, extra)
    try:
        record({"kind": "startup", "seconds_to_ready": round(ready, 3), "index": str(args.index)})
        bodies = [{"embeddings": [v.tolist()], "k": 5} for v in vectors]
        asyncio.run(load(url, bodies, 8, 200, 10))   # warm-up
        for c in (1, 8, 32):
            n = args.requests if c > 1 else min(args.requests, 1000)
            record({"kind": "identify", "label": f"c={c}", "concurrency": c, "nprobe": args.nprobe,
                    **asyncio.run(load(url, bodies, c, n, args.duration, pid=proc.pid))})
        if not args.skip_writes:
            record({"kind": "identify", "label": "c=32 +writes", "concurrency": 32, "enrol_per_s": 10,
                    "erase_per_s": 1, **asyncio.run(under_writes(url, bodies, dim, 32, args.requests,
                                                                 args.duration, proc.pid))})
            record({"kind": "enrol_to_searchable", **enrol_to_searchable(url, dim)})
    finally:
        stop_server(proc)
    if args.image_index and args.images:
        from faceidx.embedder.sources import list_source

        items = [Path(it.path) for it in list_source(args.images)][:args.max_images]
        files = [(p.name, p.read_bytes()) for p in items]
        port = free_port()
        url = f"http://127.0.0.1:{port}"
        proc, ready = start_server(args.image_index, port, ["--threshold", "0.9", "--read-only"])
        try:
            asyncio.run(load(url, None, 2, 4, 60, files=files))   # model warm-up
            res = asyncio.run(load(url, None, 4, len(files), 600, files=files, pid=proc.pid))
        finally:
            stop_server(proc)
        embed_rate = embed_cli_images_per_s(items, args.tmp)
        record({"kind": "image_identify", "concurrency": 4, "images": len(files), **res,
                "embed_cli_images_per_s": embed_rate,
                "ratio_to_embed": round(res["qps"] / embed_rate, 3)})
    if args.plot:
        plot(records, args.plot)


if __name__ == "__main__":
    main()
