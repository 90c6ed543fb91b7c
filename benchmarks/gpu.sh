#!/usr/bin/env bash
# Issue 17's GPU run, in one go (about 7 minutes on one H200, 2026-11-29; each step has a time limit, below): the
# gpu-marked tests, the training benchmark (benchmarks/train.py) and the decode benchmark (benchmarks/decode.py),
# every figure written as JSON lines under $OUT (the device tool's output folder; a temporary folder when unset).
#
# Here, first: bash benchmarks/gpu_wheels.sh        (wheels and fixtures into .gpu-carry, git-ignored)
# Then, with the device tool: run(command="bash benchmarks/gpu.sh", carry=[".gpu-carry"], timeout_s=480)
# Check the whole script on the CPU at toy sizes first: bash benchmarks/gpu.sh --dry-run
#
# Files under $OUT: tests.txt (pytest's report), train_stage_batch.jsonl, train_fill.jsonl, train_compile.jsonl,
# decode.jsonl, log.txt. Each step has its own time limit, so one that hangs costs its limit, not the run.
set -uo pipefail
cd "$(dirname "$0")/.."
dry=0
if [[ "${1:-}" == "--dry-run" ]]; then
    dry=1
elif [[ $# -gt 0 ]]; then
    echo "usage: bash benchmarks/gpu.sh [--dry-run]" >&2
    exit 2
fi
OUT="${OUT:-$(mktemp -d)}"
export PYTHONUNBUFFERED=1
exec > >(tee -a "$OUT/log.txt") 2>&1
echo "gpu.sh: figures under $OUT ($(date -u +%FT%TZ))"
python=python3
if ((dry)); then
    python="${PYTHON:-python}"
    export MMV_GPU_TEST_DEVICE=cpu
    device=cpu dtype=float32
    train_size=(--preset tiny --encoder-layers 1 --steps 1 --warmup 1 --threads 2)
    stage_rows=(--rows 24) fill=(--rows 24 --batch-size 4) compile=()  # torch.compile on a CPU takes minutes
    decode_size=(--preset tiny --encoder-layers 1 --new-tokens 4 --runs 1 --threads 2)
    # the tests themselves run on the CPU with MMV_GPU_TEST_DEVICE=cpu pytest -m gpu (minutes): here, collected
    tests=(--collect-only)
    slower=4  # the time limits, for a shared CPU
else
    if [[ ! -d .gpu-carry/wheels ]]; then
        echo "no .gpu-carry here: run bash benchmarks/gpu_wheels.sh before, and carry .gpu-carry" >&2
        exit 2
    fi
    $python -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/site \
        .gpu-carry/wheels/*.whl || exit 2
    export PYTHONPATH=/tmp/site
    $python -m pip install -q --no-deps --no-build-isolation -e . || exit 2
    # the tests and benchmarks read ../shared, which does not travel
    [[ -e ../shared ]] || ln -s "$PWD/.gpu-carry/shared" ../shared
    nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader
    device=cuda dtype=bfloat16
    train_size=(--steps 5 --warmup 2)
    # a pretrain batch that fills the GPU is 256: 7 batches need about 4096 rows (the tail over 450 tokens is skipped)
    stage_rows=(--rows 1024) fill=(--rows 4096 --fill-memory 0.5) compile=(--compile)
    decode_size=(--preset minimind-3v --new-tokens 256 --runs 3)
    tests=()
    slower=1
fi
$python -c "import torch, transformers, mmv; print('torch', torch.__version__, 'transformers', transformers.__version__)"

step() {  # step SECONDS NAME COMMAND...: one timed step; its failure is logged and the run goes on
    local limit=$(($1 * slower)) name=$2
    shift 2
    echo "== $name" >&2
    local start=$SECONDS
    timeout "$limit" "$@"
    local rc=$?
    echo "== $name: exit $rc after $((SECONDS - start)) s" >&2
}

# 1. the gpu-marked tests
step 120 tests $python -m pytest -q -m gpu -p no:cacheprovider "${tests[@]}" tests/train/test_cuda.py \
    tests/test_generate_cuda.py > >(tee "$OUT/tests.txt")

# 2. training: the stage batch sizes and a batch that fills the GPU, with and without the cache; torch.compile
train=($python benchmarks/train.py --device "$device" --dtype "$dtype" "${train_size[@]}")
step 90 train-stage-batch "${train[@]}" --features images cache --modes longest packed "${stage_rows[@]}" \
    > "$OUT/train_stage_batch.jsonl"
step 130 train-fill "${train[@]}" --features images cache --modes longest "${fill[@]}" > "$OUT/train_fill.jsonl"
step 160 train-compile "${train[@]}" --stages sft --features cache --modes longest "${fill[@]}" "${compile[@]}" \
    > "$OUT/train_compile.jsonl"

# 3. decoding in bfloat16 through the modules (the fast path is the CPU's): batch 1 and 8
for batch in 1 8; do
    step 90 "decode-batch-$batch" $python benchmarks/decode.py --device "$device" --dtype "$dtype" --batch "$batch" \
        --path modules "${decode_size[@]}" >> "$OUT/decode.jsonl"
done
echo "gpu.sh: done ($(date -u +%FT%TZ)); files: $(ls "$OUT" | tr '\n' ' ')"
