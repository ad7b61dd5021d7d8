"""faceidx: face identification at billion scale.

images --embed--> parquet shards --build--> sharded IVF-PQ index --query--> identity or UNKNOWN
"""

__version__ = "0.1.0"

_LAZY = {"open_gallery": "faceidx.gallery", "Gallery": "faceidx.gallery",
         "Identification": "faceidx.gallery", "UNKNOWN": "faceidx.gallery"}


def __getattr__(name: str):
    """`faceidx.open_gallery` and friends, imported on first use (importing faceidx stays cheap)."""
    if name in _LAZY:
        import importlib

        return getattr(importlib.import_module(_LAZY[name]), name)
    raise AttributeError(f"module 'faceidx' has no attribute {name!r}")
