"""Integrity audit: each finding of issue 12 replayed through the CLI of a faceidx tree.

    python benchmarks/integrity_audit.py [--tree PATH]   # default: this checkout

Prints one JSON line per finding: {"finding", "outcome"}. Run it on an older tree
(e.g. `git archive bfc2ec2 | tar -x -C /tmp/old`, then --tree /tmp/old) to get the
"before" column. Small seeded synthetic collections; a few minutes on 2 cores.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

HERE = Path(__file__).resolve().parents[1]


class Tree:
    def __init__(self, tree: Path, work: Path):
        self.tree, self.work = tree, work
        self.env = {**os.environ, "PYTHONPATH": str(tree), "OMP_WAIT_POLICY": "PASSIVE",
                    "OMP_NUM_THREADS": "2"}

    def cli(self, *args, timeout=600) -> subprocess.CompletedProcess:
        code = "import sys; from faceidx.cli.main import cli; cli(sys.argv[1:])"
        return subprocess.run([sys.executable, "-c", code, *map(str, args)], env=self.env,
                              capture_output=True, text=True, timeout=timeout, cwd=self.work)

    def py(self, code: str, *args) -> subprocess.CompletedProcess:
        return subprocess.run([sys.executable, "-c", code, *map(str, args)], env=self.env,
                              capture_output=True, text=True, timeout=600, cwd=self.work)


def outcome(r: subprocess.CompletedProcess) -> str:
    if "Traceback" in r.stderr:
        last = [ln for ln in r.stderr.strip().splitlines() if ln.strip()][-1]
        return f"traceback ({last[:90]})"
    if r.returncode == 0:
        return "exit 0"
    line = (r.stderr.strip() or r.stdout.strip()).splitlines()[-1] if (r.stderr or r.stdout) else ""
    return f"exit {r.returncode}: {line[:110]}"


def collection(t: Tree, name: str, n_ids=200, per_id=6, seed=0, fids=None) -> Path:
    code = ("import sys, numpy as np\n"
            "from faceidx.io import CollectionMeta, CollectionWriter\n"
            "rng = np.random.default_rng(int(sys.argv[2]))\n"
            "n, p = int(sys.argv[3]), int(sys.argv[4])\n"
            "c = rng.standard_normal((n, 32)); c /= np.linalg.norm(c, axis=1, keepdims=True)\n"
            "x = np.repeat(c, p, 0) + 0.5 / np.sqrt(32) * rng.standard_normal((n * p, 32))\n"
            "x = (x / np.linalg.norm(x, axis=1, keepdims=True)).astype(np.float32)\n"
            "ids = [f's{sys.argv[2]}-p{i // p}' for i in range(n * p)]\n"
            "with CollectionWriter(sys.argv[1], CollectionMeta(model='m', dim=32, model_version='1'),"
            " shard_rows=1000) as w:\n"
            "    w.write(x, identities=ids, sources=[f'img{sys.argv[2]}-{i}.jpg' for i in range(n * p)])\n")
    r = t.py(code, t.work / name, seed, n_ids, per_id)
    assert r.returncode == 0, r.stderr
    return t.work / name


def scan(idx: Path, vectors: np.ndarray, names: list[str]) -> dict:
    sys.path.insert(0, str(HERE))
    from faceidx.index.erasure_scan import scan_for_traces

    rep = scan_for_traces([idx], vectors, names, index_dir=idx)
    out: dict[str, int] = {}
    for tr in rep["traces"]:
        out[tr["what"]] = out.get(tr["what"], 0) + tr["count"]
    return out


def unit_rows(coll: Path, identity: str) -> np.ndarray:
    import pyarrow.parquet as pq

    rows = []
    for f in sorted(coll.glob("*.parquet")):
        t = pq.read_table(f).to_pydict()
        rows += [e for e, i in zip(t["embedding"], t["identity"], strict=True) if i == identity]
    x = np.asarray(rows, np.float32)
    return x / np.linalg.norm(x, axis=1, keepdims=True)


def audit(t: Tree) -> list[dict]:
    res = []

    def put(finding, value):
        res.append({"finding": finding, "outcome": value})
        print(json.dumps(res[-1]), flush=True)

    c = collection(t, "c")
    new = collection(t, "new", n_ids=60, seed=1)
    victim, victim2 = "s0-p3", "s1-p2"
    for spec, label, add, merge in (("Flat", "exact", False, False),
                                    ("IVF16,PQ16x4fs", "IVF-PQ + added shards", True, False),
                                    ("IVF16,PQ16x4fs", "IVF-PQ merged", True, True)):
        idx = t.work / f"idx-{label.replace(' ', '_')}"
        assert t.cli("build", c, "--out", idx, "--index-spec", spec, "--shard-rows", 500,
                     "--tune-queries", 100).returncode == 0
        if add:
            assert t.cli("add", idx, new, "--shard-rows", 200).returncode == 0
        if merge:
            assert t.cli("merge", idx).returncode == 0
        rows_before = json.loads(t.cli("info", idx, "--json").stdout)["rows"]
        r = t.cli("erase", idx, "--identity", victim, *(["--identity", victim2] if add else []))
        vec = np.concatenate([unit_rows(c, victim)] + ([unit_rows(new, victim2)] if add else []))
        found = scan(idx, vec, [victim] + ([victim2] if add else []))
        rows_after = json.loads(t.cli("info", idx, "--json").stdout)["rows"]
        put(f"erase on {label}: traces left ({len(vec)} faces)", found or "none")
        put(f"erase on {label}: info rows", f"{rows_before} -> {rows_after}")
        if label == "exact":
            put("erase a misspelled name", outcome(t.cli("erase", idx, "--identity", "s0-p33x")))

    # writers
    idx = t.work / "idx-w"
    assert t.cli("build", c, "--out", idx, "--index-spec", "IVF16,PQ16x4fs", "--shard-rows",
                 300, "--tune-queries", 100).returncode == 0
    probe = t.work / "probe.parquet"
    import pyarrow.parquet as pq
    pq.write_table(pq.read_table(next(c.glob("*.parquet"))).slice(0, 5), probe)
    code = "import sys; from faceidx.cli.main import cli; cli(sys.argv[1:])"
    p = subprocess.Popen([sys.executable, "-c", code, "add", str(idx), str(new), "--shard-rows",
                          "50"], env=t.env, cwd=t.work, stdout=subprocess.PIPE,
                         stderr=subprocess.PIPE, text=True)
    for _ in range(1200):  # until the add is building a shard, then freeze it there
        time.sleep(0.05)
        if list(idx.glob(".shard-*.tmp")):
            break
    p.send_signal(signal.SIGSTOP)
    q = t.cli("query", idx, probe, "--threshold", "0.5")
    second = t.cli("add", idx, new)
    p.send_signal(signal.SIGKILL)
    p.wait()
    put("query while add runs", outcome(q))
    put("second add while one runs", outcome(second))
    put("query after a killed add", outcome(t.cli("query", idx, probe, "--threshold", "0.5")))
    r = t.cli("add", idx, new, "--shard-rows", 50)
    rows1 = json.loads(t.cli("info", idx, "--json").stdout)["rows"]
    t.cli("add", idx, new, "--shard-rows", 50)
    rows2 = json.loads(t.cli("info", idx, "--json").stdout)["rows"]
    put("rerun a finished add (rows)", f"{rows1} -> {rows2}")
    # resume with another --shard-rows: kill a build after its first shard
    big = collection(t, "big", n_ids=500, per_id=6, seed=2)
    idx2 = t.work / "idx-resume"
    p = subprocess.Popen([sys.executable, "-c", code, "build", str(big), "--out", str(idx2),
                          "--index-spec", "IVF16,PQ16x4fs", "--shard-rows", "1000",
                          "--tune-queries", "50"], env=t.env, cwd=t.work)
    for _ in range(600):
        time.sleep(0.05)
        if (idx2 / "shard-00000").exists():
            break
    p.send_signal(signal.SIGKILL)
    p.wait()
    r = t.cli("build", big, "--out", idx2, "--index-spec", "IVF16,PQ16x4fs", "--shard-rows", 400,
              "--tune-queries", 50)
    info = json.loads(t.cli("info", idx2, "--json").stdout) if r.returncode == 0 else {}
    put("resume a build with another --shard-rows (faces of 3000)",
        f"{outcome(r)}; {info.get('rows')} indexed")

    # silent wrong values and tracebacks
    flip = t.work / "flip"
    shutil.copytree(c, flip)
    part = next(flip.glob("*.parquet"))
    data = bytearray(part.read_bytes())
    data[len(data) // 2] ^= 0x40
    part.write_bytes(bytes(data))
    put("bit-flipped parquet (same size) built", outcome(t.cli("build", flip, "--out",
                                                              t.work / "idx-flip")))
    tiny = t.py("import sys, numpy as np\nfrom faceidx.io import CollectionMeta, CollectionWriter\n"
                "with CollectionWriter(sys.argv[1], CollectionMeta(model='m', dim=32, model_version='1')) as w:\n"
                "    w.write(np.full((3, 32), 1e-30, np.float32), face_ids=np.array([-5, 1, 2]))",
                t.work / "tiny")
    put("vectors of norm 1e-30 with face id -5 written", outcome(tiny))

    def edited(name, fn, cmd=("query",), file="manifest.json", threshold="0.5"):
        d = t.work / f"e-{name}"
        shutil.copytree(idx, d)
        obj = json.loads((d / file).read_text()) if (d / file).exists() else {}
        fn(obj, d)
        (d / file).write_text(json.dumps(obj))
        return outcome(t.cli(*cmd, d, probe, "--threshold", threshold))

    put("manifest nprobe -5", edited("np", lambda m, d: m["search"].update(nprobe=-5)))
    put("manifest k_factor 0", edited("kf", lambda m, d: m["search"].update(k_factor=0)))
    put("manifest nprobe 'abc'", edited("npa", lambda m, d: m["search"].update(nprobe="abc")))
    put("manifest shifted row_offset", edited("ro", lambda m, d: m["shards"][1].update(
        row_offset=m["shards"][1]["row_offset"] + 5)))
    put("manifest center: true without mean.npy", edited("ce", lambda m, d: m.update(center=True)))
    put("manifest dir ../other.idx/shard-00000 (erase)", _erase_crafted(t, idx))

    def names_file(obj, d):
        f = d / "shard-00000" / "identity_names.bin"
        f.write_bytes(b"\xff\xfe" + f.read_bytes()[2:])
    put("non-UTF-8 identity names file", edited("utf", names_file))

    def codes(obj, d):
        f = d / "shard-00000" / "identity_codes.npy"
        a = np.load(f)
        a[:] = 10_000
        np.save(f, a)
    put("out-of-range identity codes", edited("codes", codes))
    put("calibration.json threshold true", _calibration(t, idx, probe, {"value": True}))
    put("calibration.json target_fpir 'x'", _calibration(t, idx, probe, {"target_fpir": "x"}))
    empty = t.py("import sys\nfrom faceidx.io import CollectionMeta, CollectionWriter\n"
                 "with CollectionWriter(sys.argv[1], CollectionMeta(model='m', dim=32, model_version='1')):\n"
                 "    pass", t.work / "empty")
    assert empty.returncode == 0
    put("empty collection as probes", outcome(t.cli("query", idx, t.work / "empty",
                                                    "--threshold", "0.5")))
    pq.write_table(pq.read_table(probe).drop_columns(["source"]), t.work / "nosrc.parquet")
    put("probe parquet without source column", outcome(t.cli("query", idx, t.work / "nosrc.parquet",
                                                            "--threshold", "0.5")))
    r = t.cli("embed", "--help")
    put("embed --retry-failed exists", "--retry-failed" in r.stdout)
    return res


def _erase_crafted(t: Tree, idx: Path) -> str:
    a, b = t.work / "crafted", t.work / "victim.idx"
    shutil.copytree(idx, a)
    shutil.copytree(idx, b)
    m = json.loads((a / "manifest.json").read_text())
    m["shards"][0]["dir"] = "../victim.idx/shard-00000"
    (a / "manifest.json").write_text(json.dumps(m))
    before = np.load(b / "shard-00000" / "vectors.npy").copy()
    r = t.cli("erase", a, "--face-id", "3")
    after = np.load(b / "shard-00000" / "vectors.npy")
    return f"{outcome(r)}; other index changed: {not np.array_equal(before, after)}"


def _calibration(t: Tree, idx: Path, probe: Path, edit: dict) -> str:
    d = t.work / f"cal-{len(list(t.work.glob('cal-*')))}"
    shutil.copytree(idx, d)
    code = ("import sys, json\nfrom faceidx.index import open_index\n"
            "from faceidx.query.calibfile import index_id\n"
            "m = open_index(sys.argv[1]).manifest\n"
            "cal = {'format': 'faceidx-calibration', 'format_version': 1, 'index': {'id': index_id(m),"
            " 'identities': 200}, 'threshold': {'value': 0.6, 'target_fpir': 0.01,"
            " 'gallery_identities': 200}, 'openset': {}}\n"
            "cal['threshold'].update(json.loads(sys.argv[2]))\n"
            "open(sys.argv[1] + '/calibration.json', 'w').write(json.dumps(cal))\n")
    assert t.py(code, d, json.dumps(edit)).returncode == 0
    r = t.cli("query", d, probe, "--threshold", "auto")
    return outcome(r)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--tree", type=Path, default=HERE)
    args = ap.parse_args()
    with tempfile.TemporaryDirectory() as work:
        audit(Tree(args.tree.resolve(), Path(work)))


if __name__ == "__main__":
    main()
