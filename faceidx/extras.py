"""Which optional install (`pip install 'faceidx[EXTRA]'`) provides a missing import.

The core install (numpy, pyarrow, click, tqdm, h5py, matplotlib, threadpoolctl) plus
FAISS from `cpu` or `gpu` synthesises, imports, builds, calibrates and queries
embeddings. Faces in images need `embed`; see setup.cfg for every extra.

    err = missing_dependency(module_not_found_error)   # MissingDependencyError or None
"""

from __future__ import annotations

from faceidx.errors import MissingDependencyError

# top-level import name -> (extra, what it is for)
EXTRA_OF = {
    "faiss": ("cpu", "indexes"),
    "torch": ("embed", "face models"),
    "dlib": ("embed", "face detection and landmarks"),
    "face_recognition_models": ("embed", "dlib's pretrained face models"),
    "PIL": ("embed", "image decoding"),
    "safetensors": ("embed", "trained model weights"),
    "onnxruntime": ("onnx", "ONNX face models"),
    "fastapi": ("serve", "the HTTP service"),
    "uvicorn": ("serve", "the HTTP service"),
    "prometheus_client": ("serve", "service metrics"),
    "multipart": ("serve", "image uploads"),
    "ray": ("ray", "distributed runs"),
}


def missing_dependency(err: ModuleNotFoundError) -> MissingDependencyError | None:
    """A MissingDependencyError saying what to install, when `err` is an optional package."""
    top = (err.name or "").split(".")[0]
    if top not in EXTRA_OF:
        return None
    extra, purpose = EXTRA_OF[top]
    also = " (or 'faceidx[gpu]' on a CUDA machine)" if extra == "cpu" else ""
    return MissingDependencyError(f"{purpose} need the Python package {top!r}, which is not "
                                  f"installed here: pip install 'faceidx[{extra}]'{also}")
