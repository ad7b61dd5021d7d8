#!/usr/bin/env bash
# The end-to-end demo. Run through `make demo` (which installs first).
set -euo pipefail
out=${DEMO_OUT:-demo-out}
rm -rf "$out"; mkdir -p "$out"
echo "== synthesising a small collection of realistic face embeddings"
faceidx --quiet synth --out "$out/synth" --identities 2000 --per-identity 5 --seed 0 --report
echo "== faceidx info"
faceidx info "$out/synth"
