"""Synthetic face embeddings with the statistics of a real face model (dlib 128-D on LFW).

See faceidx/synth/model.py for the model and how its parameters are solved, counts.py for
images per identity, generator.py for streaming and writing, stats.py for the report.
"""

from faceidx.synth.generator import (
    SyntheticFaces,
    iter_synthetic,
    sample_raw,
    write_synthetic,
)
from faceidx.synth.model import GENERATOR_VERSION, MODEL_NAME, FaceTargets, SynthModel, build_model

__all__ = [
    "GENERATOR_VERSION",
    "MODEL_NAME",
    "FaceTargets",
    "SynthModel",
    "SyntheticFaces",
    "build_model",
    "iter_synthetic",
    "sample_raw",
    "write_synthetic",
]
