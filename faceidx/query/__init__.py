"""Open-set query: per-identity search, calibrated thresholds, verification metrics.

Stands on faceidx.index; never imports torch. Vectors in, decisions out.
"""
