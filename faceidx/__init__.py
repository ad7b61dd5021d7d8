"""faceidx: face identification at billion scale.

images --embed--> parquet shards --build--> sharded IVF-PQ index --query--> identity or UNKNOWN
"""

__version__ = "0.1.0"
