"""Synthetic face embeddings with the statistics of a real face model (dlib 128-D on LFW).

See faceidx/synth/model.py for the model and how its parameters are solved, counts.py for
images per identity, generator.py for streaming, write.py for collections, stats.py for the report.
"""

from faceidx.synth.generator import SyntheticFaces, iter_synthetic, sample_raw
from faceidx.synth.model import GENERATOR_VERSION, MODEL_NAME, FaceTargets, SynthModel, build_model
from faceidx.synth.stats import report_stats, report_table, target_stats
from faceidx.synth.write import synth_report, write_faces, write_synthetic

__all__ = [
    "GENERATOR_VERSION",
    "MODEL_NAME",
    "FaceTargets",
    "SynthModel",
    "SyntheticFaces",
    "build_model",
    "iter_synthetic",
    "report_stats",
    "report_table",
    "sample_raw",
    "synth_report",
    "target_stats",
    "write_faces",
    "write_synthetic",
]
