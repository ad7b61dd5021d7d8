#!/usr/bin/env bash
# The checks that need a CUDA GPU, as one script (CI never has one): the gpu-marked tests,
# the embedder's throughput on the GPU, torch k-means against FAISS's CPU k-means, and a
# build whose coarse k-means runs on the GPU. JSON lines go to $RESULTS (default ./gpu-out).
#
#   WEIGHTS=/path/dlib_face_recognition_resnet_model_v1.dat CHIPS=chips.npz scripts/gpu_check.sh
#
# CHIPS comes from `python benchmarks/embed_gpu.py --make-chips chips.npz` on a machine
# with dlib and the LFW subset. FAISS_THREADS: CPU threads of the FAISS k-means compared.
set -uo pipefail
RESULTS=${RESULTS:-gpu-out}
SYN=${SYN:-/tmp/faceidx-gpu-syn1m}
FAISS_THREADS=${FAISS_THREADS:-$(nproc)}
mkdir -p "$RESULTS"
export PYTHONUNBUFFERED=1 OMP_WAIT_POLICY=PASSIVE
py=${PYTHON:-python3}
step() { echo "== $* ($(date +%T))"; }

step environment
nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader
$py -c "import torch, faiss; print('torch', torch.__version__, 'cuda', torch.cuda.is_available(), 'faiss', faiss.__version__, 'faiss GPUs', getattr(faiss, 'get_num_gpus', lambda: 0)())"

step gpu-marked tests
$py -m pytest -q -p no:cacheprovider -m gpu tests/index/test_kmeans.py tests/index/test_gpu.py 2>&1 | tail -5

step embedder throughput
$py benchmarks/embed_gpu.py --chips "$CHIPS" ${WEIGHTS:+--weights "$WEIGHTS"} \
    --faces "${FACES:-16384}" --batch-sizes "${BATCHES:-64,256,1024}" --rounds 2 | tee "$RESULTS/embed_gpu.jsonl"

step synthetic collection
[ -f "$SYN/collection.json" ] || $py -m faceidx --quiet synth --out "$SYN" --identities 100000 --per-identity 10

step "k-means: torch on the GPU vs FAISS on $FAISS_THREADS CPU threads"
$py benchmarks/kmeans_gpu.py --collection "$SYN" --runs "${RUNS:-500000:16384}" --faiss-threads "$FAISS_THREADS" \
    | tee "$RESULTS/kmeans.jsonl"
$py benchmarks/kmeans_gpu.py --collection "$SYN" --runs "${GPU_ONLY_RUNS:-1000000:32768}" --faiss-threads 0 \
    | tee -a "$RESULTS/kmeans.jsonl"

step "faceidx build --device cuda (IVF16384_HNSW32,PQ64x4fs, 1M faces)"
rm -rf "$SYN-idx"
/usr/bin/time -v $py -m faceidx --quiet build "$SYN" --out "$SYN-idx" --index-spec "${SPEC:-IVF16384_HNSW32,PQ64x4fs}" \
    --device "${DEVICE:-cuda}" --json > "$RESULTS/build_cuda.json" 2> "$RESULTS/build_cuda.time"
tail -c 1500 "$RESULTS/build_cuda.json"; grep -E "Elapsed|Maximum resident" "$RESULTS/build_cuda.time"
$py -c "import json,sys; m=json.load(open('$SYN-idx/manifest.json')); print(json.dumps({'train': m['build'].get('train'), 'search': m.get('search')}))" \
    | tee "$RESULTS/build_cuda_train.json"
step done
