#!/usr/bin/env bash
# The GPU speed matrix of issue 4 on the GPU machine (one H100 80GB), in one command:
#   Llama-3.1-8B architecture at 8k, 32k, 64k, 128k and Qwen2.5-7B at 8k, 32k;
#   methods hf, full, slim; 128 new tokens; random bf16 weights (speed figures only).
#
# Usage:  benchmarks/gpu.sh [OUT_DIR] [PART ...]
#   OUT_DIR defaults to $OUT; PARTs are llama, llama-128k, qwen (default: all three, in order).
#   Extra bench flags for every part go in $BENCH_ARGS, e.g. BENCH_ARGS="--set preserve_layers=6".
#   Results: OUT_DIR/llama-3.1-8b/ and OUT_DIR/qwen2.5-7b/ (results.json, table.md, ttft.png,
#   speedup.png); both Llama parts share one folder and one table.
#
# The GPU machine has no network and nothing can be pip-installed there, so the package runs
# from the source tree (PYTHONPATH=src) on its torch and transformers alone: no tokenizer or
# gguf is needed, the random models get text-like prompts by hashing words into the vocabulary.
#
# Time (the machine's limit is 10 minutes per command), from runs there on 2026-11-23: HF
# prefill 0.26 / 1.42 / 3.75 / 11.8 s at 8k / 32k / 64k / 128k; a 128-token decode ~4 s for hf
# (31 ms/step once warm) and ~1.3 s for ours; hf prefills twice per call (TTFT forward +
# generate), slim about a third of full. One (hf, full, slim) round thus costs ~7.5 / 11.5 /
# 19.5 / 49 s at 8k / 32k / 64k / 128k, a warm-up is one more round (it must be the full call:
# the first generate at a new length decodes at ~100 ms/step while HF's cache allocates), and a
# process takes 25-40 s to start (imports, model build, speed of light, warm-up at 2k):
#   llama       8k, 32k, 64k: 1 warm-up + 3 repeats ........ ~185 s
#   llama-128k  128k: 1 warm-up + 2 repeats ................ 185 s (measured)
#   qwen        8k, 32k: 1 warm-up + 3 repeats ............. ~100 s
#   total ≈ 470 s ≈ 8 minutes.
# If the limit stops it, run the same command again: every finished call is saved in
# results.json and only the missing ones are measured. Or run the parts as separate commands.
set -euo pipefail

OUT_DIR="${1:-${OUT:?give an output folder as the first argument or set OUT}}"
shift $(($# > 0 ? 1 : 0))
PARTS=("${@:-llama llama-128k qwen}")
cd "$(dirname "$0")/.."
export PYTHONPATH="src${PYTHONPATH:+:$PYTHONPATH}"

bench() {
    # shellcheck disable=SC2086  # BENCH_ARGS is a list of flags
    python3 -m sliminfer.cli.main bench --methods hf,full,slim --new-tokens 128 "$@" ${BENCH_ARGS:-}
}

for part in ${PARTS[*]}; do
    case "$part" in
        llama) bench --model llama-3.1-8b --lengths 8k,32k,64k --repeats 3 --out "$OUT_DIR/llama-3.1-8b" ;;
        llama-128k) bench --model llama-3.1-8b --lengths 128k --repeats 2 --out "$OUT_DIR/llama-3.1-8b" ;;
        qwen) bench --model qwen2.5-7b --lengths 8k,32k --repeats 3 --out "$OUT_DIR/qwen2.5-7b" ;;
        *) echo "gpu.sh: unknown part '$part': use llama, llama-128k or qwen" >&2; exit 2 ;;
    esac
done
