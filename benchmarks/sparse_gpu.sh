#!/usr/bin/env bash
# Issue 12 on the GPU machine, in one command (about 5 minutes on an H200):
#   1. benchmarks/sparse_kernel_gpu.py at 128k: the mask check, the kernel at densities
#      1.0 / 0.5 / 0.15 plus the adaptive mode's densities measured on real models, the
#      cost of each part of the pattern (--components), and flex's kernel options (--sweep):
#      step 2 runs with the fastest (SLIMINFER_FLEX_KERNEL_OPTIONS);
#   2. `sliminfer bench` TTFT at 32k and 128k, Llama-3.1-8B architecture with random bf16 weights
#      (speed only): plain HF, slim, slim with fixed-density sparse prefill in the dense layers
#      and in every layer, and the same for a cut at half depth (16:0.25), the accuracy-safe
#      schedule. Each row's FLOP ideal counts the attention at the density computed.
#
# Usage: OUT=DIR benchmarks/sparse_gpu.sh [--dry-run]
#   --dry-run         the same steps on CPU in a minute: small kernel shapes, tiny-llama at 2k
#   ADAPTIVE_RESULTS  glob of eval results.json files whose 32k records of a sparse_prefill=adaptive
#                     method give the densities timed in step 1 (default: this machine's
#                     accuracy runs, /tmp/sliminfer-runs/*/eval/methods/*adaptive*/results.json)
#   METHODS, LENGTHS  override step 2's methods and lengths
set -uo pipefail
cd "$(dirname "$0")/.."
export PYTHONPATH=src
out=${OUT:?OUT}
kernel=(--lengths 131072) model=llama-3.1-8b lengths=${LENGTHS:-32k,128k} floor=() half=16
if [[ ${1:-} == --dry-run ]]; then
    kernel=(--tiny) model=tiny-llama lengths=2k floor=(--set min_prompt_tokens=0 --set sparse_min_tokens=0) half=2
fi

densities=$(python3 benchmarks/adaptive_densities.py "${ADAPTIVE_RESULTS:-/tmp/sliminfer-runs/*/eval/methods/*adaptive*/results.json}")
python3 benchmarks/sparse_kernel_gpu.py --out "$out/sparse-kernel" --reps 3 "${kernel[@]}" --components --sweep \
    ${densities:+--densities "$densities"} 2>&1 | tail -40
if [[ -s $out/sparse-kernel/best_kernel_options.json ]]; then
    export SLIMINFER_FLEX_KERNEL_OPTIONS=$(cat "$out/sparse-kernel/best_kernel_options.json")
    echo "bench with SLIMINFER_FLEX_KERNEL_OPTIONS=$SLIMINFER_FLEX_KERNEL_OPTIONS"
fi

half="preserve_layers=$half;keep_schedule=$half:0.25"
methods=${METHODS:-"hf,slim,slim[sparse_prefill=fixed],slim[sparse_prefill=fixed;sparse_estimate=block_means],slim[sparse_prefill=fixed;sparse_layers=all],slim[$half],slim[$half;sparse_prefill=fixed],slim[$half;sparse_prefill=fixed;sparse_layers=all]"}
python3 -m sliminfer bench --model "$model" --lengths "$lengths" --methods "$methods" "${floor[@]}" \
    --new-tokens 2 --repeats 2 --out "$out/sparse-bench" 2>&1 | tail -30
