"""The faceidx command line (click). The only layer that imports click."""
