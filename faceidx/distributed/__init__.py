"""faceidx on Ray: the embed and build stages across a cluster, and serving over replicas.

    faceidx embed SOURCE --out C --ray [ADDRESS]    faceidx.distributed.embed
    faceidx build C --out I --ray [ADDRESS]         faceidx.distributed.build
    Ray Serve deployment of an index's parts        faceidx.distributed.serve

Same files on disk as the local engine (one writer, one index format); Ray is imported
inside functions only (faceidx.distributed.cluster.require_ray says how to install it).
Inputs and outputs live on a path every node sees (faceidx.io.fs).
"""
