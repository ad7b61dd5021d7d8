#!/usr/bin/env bash
# Runs the quick benchmarks; each prints JSON lines. Bigger runs: see each script's --help.
set -euo pipefail
mkdir -p bench-out
python benchmarks/synth_write.py --rows 200000 --out bench-out
