#!/usr/bin/env bash
# Every GPU check in one call, for a machine with CUDA: the CUDA cases of the tests, then the benchmark scripts in
# fp32 and bf16 (docs/benchmarks.md, "GPU"). Each step runs under its own time limit and a failing step does not
# stop the next; the tables are written to benchmarks/results_*_cuda*.md and copied, with the log, to $OUT.
#
#   bash benchmarks/gpu.sh                 # on the GPU machine, from the repository root
#
# A machine without this project's dependencies (and no network) gets them from wheels in .whl/, and WordNet 3.0
# from .whl/wordnet, where those exist. For the H200 run of docs/benchmarks.md (Python 3.12, which had torch,
# torchvision, timm, scikit-image, scikit-learn, opencv and matplotlib), made beforehand on a networked machine:
#   python -m pip download --no-deps --only-binary=:all: --python-version 3.12 --implementation cp \
#       --platform manylinux_2_17_x86_64 -d .whl open_clip_torch==3.3.0 ftfy==6.3.1 wcwidth==0.9.4 captum==0.9.0 \
#       nltk==3.10.4 defusedxml quantus==0.6.0 cachetools platformdirs==4.14.9
#   mkdir -p .whl/wordnet && cp /usr/share/wordnet/{*.adj,*.adv,*.noun,*.verb,*.exc,cntlist.rev} .whl/wordnet/
# PYTHON picks the interpreter; DEVICE=cpu SMOKE=1 runs every step at toy sizes on the CPU, to check this script.
set -u
cd "$(dirname "$0")/.."
OUT=${OUT:-benchmarks/gpu-out}
PYTHON=${PYTHON:-python3}
DEVICE=${DEVICE:-cuda}
SMOKE=${SMOKE:-0}
RESULTS=benchmarks
[ "$SMOKE" = 1 ] && RESULTS=$OUT
mkdir -p "$OUT"
LOG="$OUT/log.txt"
: > "$LOG"
if compgen -G ".whl/*.whl" > /dev/null; then
    "$PYTHON" -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/site \
        .whl/*.whl >> "$LOG" 2>&1 || { echo "wheel install failed"; tail -n 20 "$LOG"; exit 1; }
    export PYTHONPATH="/tmp/site:$PWD"
fi
[ -d .whl/wordnet ] && export WNSEARCHDIR="$PWD/.whl/wordnet"
export PYTHONUNBUFFERED=1 HF_HUB_OFFLINE=1 CAPTUM_CLIP_CACHE_DIR=/tmp/captum-clip-cache
command -v nvidia-smi > /dev/null && nvidia-smi --query-gpu=name,driver_version,memory.total,clocks.sm,clocks.max.sm \
    --format=csv >> "$LOG" 2>&1
# The versions, and the TF32 switches that decide what "fp32" means on the GPU.
"$PYTHON" - >> "$LOG" 2>&1 <<'EOF'
import captum, numpy, open_clip, torch
print("torch", torch.__version__, "cuda", torch.cuda.is_available(), "numpy", numpy.__version__,
      "open_clip", open_clip.__version__, "captum", captum.__version__,
      "tf32: matmul", torch.backends.cuda.matmul.allow_tf32, "cudnn", torch.backends.cudnn.allow_tf32)
EOF

step() {  # step NAME SECONDS COMMAND...: run it under a limit, log it, copy its table to $OUT
    local name=$1 limit=$2 start=$SECONDS
    shift 2
    echo "=== $name: $*" >> "$LOG"
    timeout "$limit" "$@" >> "$LOG" 2>&1
    local rc=$?
    echo "=== $name: rc=$rc in $((SECONDS - start)) s" | tee -a "$LOG"
    [ "$RESULTS" = "$OUT" ] || cp "$RESULTS"/results_*_"$DEVICE"*.md "$OUT"/ 2> /dev/null
}

if [ "$SMOKE" = 1 ]; then
    sizes=(--batch 2 --repeats 1 --classes 10) convis=(--model shapes --images 1 --original-windows 10 --concepts 3)
    mutual=(--descriptors scenes --repeats 1) batches=(2 3) precision=(--images 2) tests=(-k "cpu and bf16")
else
    sizes=(--batch 64 --repeats 10) convis=(--model ViT-B-16 --images 3 --original-windows 1800)
    mutual=(--repeats 5) batches=(8 32) precision=(--images 8) tests=(-k cuda)
fi
# In the order of what matters most, each table copied to $OUT as soon as it is written (a run cut short by its
# overall limit still returns what it finished).
step tests 150 "$PYTHON" -m pytest -q -rs -p no:cacheprovider tests/convis/test_on_device.py \
    tests/test_benchmark_scripts.py "${tests[@]}"
step precision 120 "$PYTHON" benchmarks/bench_precision.py --devices "$DEVICE" --precisions bf16,fp16 \
    "${precision[@]}" --out "$RESULTS/results_precision_$DEVICE.md"
step surgery 150 "$PYTHON" benchmarks/bench_surgery.py --devices "$DEVICE" --precisions fp32,bf16 "${sizes[@]}" \
    --out "$RESULTS/results_surgery_$DEVICE.md"
step convis-fp32 200 "$PYTHON" benchmarks/bench_convis.py --devices "$DEVICE" --precisions fp32 --text-bank random \
    "${convis[@]}" --out "$RESULTS/results_convis_${DEVICE}_fp32.md"
step mutual 150 "$PYTHON" benchmarks/bench_mutual.py --devices "$DEVICE" --precisions fp32,bf16 \
    --batch "${batches[0]}" "${mutual[@]}" --out "$RESULTS/results_mutual_$DEVICE.md"
step convis-bf16 200 "$PYTHON" benchmarks/bench_convis.py --devices "$DEVICE" --precisions bf16 --text-bank random \
    "${convis[@]}" --out "$RESULTS/results_convis_${DEVICE}_bf16.md"
step mutual-b"${batches[1]}" 150 "$PYTHON" benchmarks/bench_mutual.py --devices "$DEVICE" --precisions fp32 \
    --batch "${batches[1]}" --no-stages "${mutual[@]}" --out "$RESULTS/results_mutual_${DEVICE}_b${batches[1]}.md"
step cli 90 "$PYTHON" -m captum_clip.cli demo --device auto --precision bf16 --out /tmp/demo_auto_bf16.png
ls -l /tmp/demo_auto_bf16.png >> "$LOG" 2>&1
