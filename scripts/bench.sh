#!/usr/bin/env bash
# `make bench`: the quick versions of every benchmark; each prints JSON lines and most
# write a plot under bench-out/. Bigger runs (1M/10M index, full LFW verification,
# openset at 1M identities): see each script's --help and docs/*.md for the commands.
set -euo pipefail
out=bench-out
mkdir -p "$out"
data=../shared/data

echo "# synth write throughput" >&2
python benchmarks/synth_write.py --rows 200000 --out "$out"

echo "# index: build + search vs exact on 200k synthetic faces" >&2
faceidx -q synth --out "$out/syn200k" --identities 20000 --per-identity 10 --seed 0 >/dev/null
python benchmarks/index_bench.py --collection "$out/syn200k" --work "$out/index-work" --out "$out"

echo "# open-set calibration holds on unseen people (synthetic galleries)" >&2
python benchmarks/openset.py --synthetic 10000 --out "$out/openset"

if [ -d "$data/lfw-subset" ]; then
  echo "# embedder: torch port vs dlib, end-to-end images/s" >&2
  python benchmarks/embed_speed.py --what model --batch-sizes 8,64 --rounds 2 --plot "$out/embed_speed.png"
  python benchmarks/embed_e2e.py --images 100 --workers 0 1
else
  echo "# $data not found: embedder, LFW and training benchmarks skipped" >&2
fi
