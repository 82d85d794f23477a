#!/usr/bin/env bash
# Tensor parallelism on one host with 2 GPUs (issue 13), in one command of under 9 minutes:
#
#   benchmarks/tp_gpu.sh             results under $OUT/tp (2 GPUs, random bf16 weights)
#   benchmarks/tp_gpu.sh --dry-run   the same steps on CPU with tiny-llama and 2 gloo ranks
#
# Parts, most important first (each has its own time limit, results are written after every
# measured call, so a part cut short still leaves what it measured, and summary.md/json are
# rewritten after each part by benchmarks/tp_summary.py):
#   0. kept.json: Llama-3.1-8B, TP 2, 32k: kept positions per layer and greedy tokens (with
#      decode-time selection) identical on both ranks; its plain slim generation also tries CUDA
#      graphs on the sharded step. If that part fails, the benches below run without graphs
#      (--set cuda_graph_decode=false) and graphs.txt says so.
#   1. llama-3.1-70b-tp2/: Llama-3.1-70B, TP 2, 128k: hf vs slim (the default schedule, FLOP
#      ideal 2.78x) vs slim[keep_schedule=20:0.2] (FLOP ideal 3.0x); 32 new tokens.
#   2. llama-3.1-8b-tp1/ and -tp2/: Llama-3.1-8B at 128k, slim on 1 GPU vs slim and hf on 2.
#   3. llama-3.1-70b-tp2/ again at 32k and 64k.
# Time estimate (H200, not yet measured): part 0 ~60 s, 1 ~170 s, 2 ~120 s, 3 ~110 s.
set -uo pipefail
cd "$(dirname "$0")/.."
export PYTHONPATH="$PWD/src${PYTHONPATH:+:$PYTHONPATH}"
OUT_DIR="${OUT:?set OUT}/tp"
mkdir -p "$OUT_DIR"

if [[ "${1:-}" == "--dry-run" ]]; then
    big=tiny-llama small=tiny-llama long=2k short=1k,1536 check=2k variant="slim[keep_schedule=1:0.2]"
    extra=(--set min_prompt_tokens=0 --set min_keep_tokens=0)
    limits=(120 120 120 120)
else
    big=llama-3.1-70b small=llama-3.1-8b long=128k short=32k,64k check=32k variant="slim[keep_schedule=20:0.2]"
    extra=()
    limits=(90 210 140 120)
fi

summary() { python3 benchmarks/tp_summary.py "$OUT_DIR" > /dev/null; }
bench() {  # LIMIT ARGS...: one `sliminfer bench`, cut at LIMIT seconds (finished calls are kept)
    local limit=$1
    shift
    timeout --kill-after=20 "$limit" python3 -m sliminfer bench --new-tokens 32 --repeats 1 --warmup 1 \
        "${extra[@]}" "${graphs[@]}" "$@"
    echo "tp_gpu.sh: bench $* exited $?" | tee -a "$OUT_DIR/log.txt"
    summary
}

graphs=()
timeout --kill-after=20 "${limits[0]}" python3 -m torch.distributed.run --standalone --nproc-per-node 2 \
    benchmarks/tp_kept_check.py --model "$small" --length "$check" "${extra[@]}" --out "$OUT_DIR/kept.json"
if [[ $? -ne 0 ]]; then
    echo "kept check failed with CUDA graphs allowed: benches run with cuda_graph_decode=false" | tee "$OUT_DIR/graphs.txt"
    graphs=(--set cuda_graph_decode=false)
    timeout --kill-after=20 "${limits[0]}" python3 -m torch.distributed.run --standalone --nproc-per-node 2 \
        benchmarks/tp_kept_check.py --model "$small" --length "$check" "${extra[@]}" "${graphs[@]}" --out "$OUT_DIR/kept.json"
fi
summary

bench "${limits[1]}" --model "$big" --tp 2 --lengths "$long" --methods "hf,slim,$variant" --out "$OUT_DIR/llama-3.1-70b-tp2"
bench "$((limits[2] / 2))" --model "$small" --lengths "$long" --methods slim --out "$OUT_DIR/llama-3.1-8b-tp1"
bench "$((limits[2] / 2))" --model "$small" --tp 2 --lengths "$long" --methods hf,slim --out "$OUT_DIR/llama-3.1-8b-tp2"
bench "${limits[3]}" --model "$big" --tp 2 --lengths "$short" --methods "hf,slim,$variant" --out "$OUT_DIR/llama-3.1-70b-tp2"
cat "$OUT_DIR/summary.md"
