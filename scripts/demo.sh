#!/usr/bin/env bash
# The end-to-end demo: enrol people from photo folders, calibrate the index's open-set
# threshold on photos it has never seen, then ask it about people it knows and people it
# has never seen. Every step is a `faceidx` command; scripts/demo_data.py only lays out
# the photo folders (symbolic links into the data set).
# Run through `make demo` (which installs first and puts the venv's bin on PATH).
# Real faces from ../shared/data/lfw-subset when present; synthetic embeddings otherwise.
set -euo pipefail
out=${DEMO_OUT:-demo-out}
data=${DEMO_DATA:-../shared/data}
rm -rf "$out"; mkdir -p "$out"
start=$(date +%s)

if [ -d "$data/lfw-subset" ]; then
  echo "== REAL FACES: photo folders from a subset of LFW ($data/lfw-subset)"
  python scripts/demo_data.py select "$data/lfw-subset" --out "$out" \
    --enrolled 250 --others 150 --singletons 400 --per-person 4 --probes 6
  echo "== faceidx enrol: one photo per person, folder = person (dlib HOG detection +"
  echo "   5-point alignment + the dlib ResNet ported to torch), then an index of them."
  echo "   LFW's press photos often show bystanders: --face largest enrols the main face."
  faceidx enrol "$out/index" "$out/gallery" --face largest --quiet
  faceidx info "$out/index"

  echo "== faceidx calibrate on strangers only: people never enrolled (the usual case: a"
  echo "   public labelled face set of other people) set the 1:N threshold on their own;"
  echo "   TPIR is then not measured, and the calibration below replaces this one"
  mkdir -p "$out/strangers"
  for d in "$out/holdout"/*/; do
    name=$(basename "$d")
    [ -e "$out/gallery/$name" ] || cp -r "$d" "$out/strangers/$name"
  done
  faceidx calibrate "$out/index" --holdout "$out/strangers" --target-far 1e-3 --target-fpir 1e-2

  echo "== faceidx calibrate on a photo folder the gallery has never seen: other photos of"
  echo "   enrolled people and photos of never-enrolled people (threshold for FPIR 1% at this"
  echo "   gallery's size; 1:1 numbers for FAR 0.1%)"
  faceidx calibrate "$out/index" --holdout "$out/holdout" --target-far 1e-3 --target-fpir 1e-2 \
    --plots "$out/plots"
else
  echo "== $data not found: running on SYNTHETIC embeddings from \`faceidx synth\` (no real faces)"
  faceidx --quiet synth --out "$out/faces" --identities 3000 --per-identity 3 --fixed-counts --seed 0
  faceidx info "$out/faces"
  echo "== split: gallery (one embedding per enrolled person), holdout (other people and embeddings)"
  python scripts/demo_data.py split "$out/faces" --out "$out" --enrolled 1000 --probes 5
  echo "== faceidx build"
  faceidx --quiet build "$out/gallery" --out "$out/index"
  faceidx info "$out/index"
  echo "== faceidx calibrate (threshold for FPIR 1% at this gallery's size; 1:1 numbers for FAR 0.1%)"
  faceidx calibrate "$out/index" --holdout "$out/holdout" --target-far 1e-3 --target-fpir 1e-2 \
    --plots "$out/plots"
fi

echo "== faceidx query: unseen photos of enrolled people, and people never enrolled"
echo "   (truth = the folder's name; 'unknown' is the right answer for a never-enrolled person;"
echo "   the result column marks each answer right or WRONG)"
faceidx query "$out/index" "$out/probes" -k 3

echo "== done in $(( $(date +%s) - start )) s; plots: $out/plots/{scores,roc,openset}.png;" \
     "calibration: $out/index/calibration.json"
