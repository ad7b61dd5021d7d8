"""Images -> face embeddings: the pretrained dlib ResNet in torch, its registry, the pipeline.

Kept light on purpose: importing `faceidx.embedder` loads no torch, no dlib and no model.
Import the submodule you need, e.g. `from faceidx.embedder.registry import load_model`.
"""
