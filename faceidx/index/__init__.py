"""The index: streaming IVF-PQ build with automatic parameters, shards, merge, search.

FAISS is imported inside functions, so importing this package stays cheap.
"""

from faceidx.index.build import BuildOptions, add_collection, build_index
from faceidx.index.params import IndexParams, choose_params, params_for_spec
from faceidx.index.search import IndexReader, open_index

__all__ = [
    "BuildOptions",
    "IndexParams",
    "IndexReader",
    "add_collection",
    "build_index",
    "choose_params",
    "open_index",
    "params_for_spec",
]
