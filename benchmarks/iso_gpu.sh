#!/usr/bin/env bash
# Issue 11's peers and iso-accuracy figure (plus issue 15's and 12's open cells) on the GPU
# machine, both real models staged by benchmarks/gpu_models.sh:
#
#   gpu_models.sh run qwen0.5b true && gpu_models.sh run qwen1.5b benchmarks/iso_gpu.sh PHASES
#
#   PHASES  comma-separated, default eval,ttft:
#     eval  the RULER suite (accuracy_gpu.sh, 8k / 16k / 32k, 10 samples per task and length)
#           of the peer selections expressed as configs at the presets' prefill FLOPs at 32k:
#           FastKV-style (one cut scored by the layer before it, its last 8 queries, token-level
#           units pooled over 7) and last-query / GemFilter-style (the same cut ranked by the last
#           query alone), both selecting 8-token blocks as the peers select tokens, and
#           FastKV's scoring on our 64-token blocks; the 1.5B with decode budget 0.25 and offload (issue 15); the 0.5B with
#           adaptive sparse prefill at mass 0.97 (issue 12); the 1.5B's niah_multiquery at 30
#           samples per length. Every method resumes from the committed v4 records.
#     ttft  `sliminfer bench` at 16k and 32k (32640 tokens: the context is 32768 with the new token) on a quiet GPU: plain HF and every config of the
#           Pareto plot, so each point has a measured TTFT next to its FLOP ideal.
#     v6    issue 15's and 12's open cells, in parallel: the 1.5B's offload preset (its missing
#           32k cells) and `pin_scores=deepest` at decode_pin 0.5 and 0.75 (8k-32k, 10 samples,
#           into qwen1.5b-v6); the 0.5B's offload with `pin_scores=deepest` (qwen0.5b-v6); the
#           0.5B's slim and adaptive sparse prefill at 30 samples per length, 16k and 32k
#           (qwen0.5b-sparse30). Each resumes from the committed v4, v5 and v6 records.
#     v7    issue 12's open cells, in parallel: the 1.5B's adaptive sparse prefill at sparse_mass
#           0.9, 0.85 and 0.8 (16k and 32k, 10 samples, into qwen1.5b-v7: its block-mean estimates
#           are flatter than the 0.5B's, so mass 0.9 keeps the share of true attention mass 0.95
#           keeps on the 0.5B; BENCHMARKS.md section 6.3), and block_means' peak memory at 128k
#           on the Llama-3.1-8B architecture (random weights; iso-peak-128k); then the kernel
#           alone at 128k at the densities those masses picked at 32k ($OUT/kernel-v7).
#   DEADLINE  epoch seconds when eval stops (default now + 540); a second command continues it.
#   TTFT_MODELS  which models ttft times: "small large" (default), "small" or "large".
#
# Work lives in /tmp/sliminfer-runs/{qwen0.5b,qwen1.5b}-v5, qwen1.5b-mq and iso-ttft-*; each is
# packed into $OUT/LABEL.tar.gz.
set -uo pipefail
cd "$(dirname "$0")/.."

phases=${1:-eval,ttft}
has() { [[ ",$phases," == *",$1,"* ]]; }
results=$PWD/benchmarks/results/h200
small=/tmp/sliminfer-model/qwen0.5b/model.gguf
large=$MODEL_PATH

offload="kv_offload=cpu;decode_budget=0.25;gamma=0.5"
adaptive="sparse_prefill=adaptive;sparse_min_tokens=4096;sparse_estimate=block_means"
fastkv="window=8;block_size=8;unit_size=1;unit_pool_kernel=7"
last_query="window=1;block_size=8;unit_size=1;unit_pool_kernel=1"
fastkv_blocks="window=8;unit_size=1;unit_pool_kernel=7"  # FastKV's scoring, our 64-token blocks
cut_small="preserve_layers=10;keep_schedule=10:0.15;score_layers=[[9]]"  # 0.455 of full's FLOPs at 32k
cut_large="preserve_layers=13;keep_schedule=13:0.05;score_layers=[[12]]"  # 0.478
small_methods="full,slim,slim[$adaptive],slim[$adaptive;sparse_mass=0.97],slim[$cut_small;$fastkv],slim[$cut_small;$last_query],slim[$cut_small;$fastkv_blocks]"
large_methods="full,slim,slim[$adaptive],slim[$offload],slim[$cut_large;$fastkv],slim[$cut_large;$last_query],slim[$cut_large;$fastkv_blocks]"

if has eval; then
    export DEADLINE=${DEADLINE:-$(($(date +%s) + 540))}
    MODEL_PATH=$small RESUME_FROM=$results/qwen0.5b-v4/results.json EVAL_METHODS= EARLY_METHODS=$small_methods \
        benchmarks/accuracy_gpu.sh qwen0.5b-v5 eval >/tmp/iso-small.log 2>&1 &
    MODEL_PATH=$large RESUME_FROM=$results/qwen1.5b-v4/results.json EVAL_METHODS= EARLY_METHODS="full,slim" \
        EVAL_SAMPLES=30 EVAL_ARGS="--tasks niah_multiquery" benchmarks/accuracy_gpu.sh qwen1.5b-mq eval >/tmp/iso-mq.log 2>&1 &
    MODEL_PATH=$large RESUME_FROM=$results/qwen1.5b-v4/results.json EVAL_METHODS= EARLY_METHODS=$large_methods \
        benchmarks/accuracy_gpu.sh qwen1.5b-v5 eval >/tmp/iso-large.log 2>&1
    wait
    tail -n 12 /tmp/iso-small.log /tmp/iso-mq.log /tmp/iso-large.log
fi
resume_small=$(ls "$results"/qwen0.5b-{v4,v5,v6,sparse30}/results.json 2>/dev/null)
resume_large=$(ls "$results"/qwen1.5b-{v4,v5,v6,v7}/results.json 2>/dev/null)
if has v6; then
    export DEADLINE=${DEADLINE:-$(($(date +%s) + 540))}
    deepest="$offload;pin_scores=deepest"
    MODEL_PATH=$large RESUME_FROM=$resume_large EVAL_METHODS= \
        EARLY_METHODS="full,slim,slim[$offload],slim[$deepest],slim[$deepest;decode_pin=0.75]" \
        benchmarks/accuracy_gpu.sh qwen1.5b-v6 eval >/tmp/v6-large.log 2>&1 &
    MODEL_PATH=$small RESUME_FROM=$resume_small EVAL_METHODS= EARLY_METHODS="full,slim,slim[$offload],slim[$deepest]" \
        benchmarks/accuracy_gpu.sh qwen0.5b-v6 eval >/tmp/v6-small.log 2>&1 &
    MODEL_PATH=$small RESUME_FROM=$resume_small EVAL_METHODS= EARLY_METHODS="slim,slim[$adaptive]" EVAL_SAMPLES=30 \
        EVAL_LENGTHS=16k,32k benchmarks/accuracy_gpu.sh qwen0.5b-sparse30 eval >/tmp/v6-sparse.log 2>&1
    wait
    tail -n 12 /tmp/v6-large.log /tmp/v6-small.log /tmp/v6-sparse.log
fi
if has v7; then
    export DEADLINE=${DEADLINE:-$(($(date +%s) + 540))}
    MODEL_PATH=$large RESUME_FROM=$resume_large EVAL_METHODS= EVAL_LENGTHS=16k,32k \
        EARLY_METHODS="slim,slim[$adaptive],slim[$adaptive;sparse_mass=0.9],slim[$adaptive;sparse_mass=0.85],slim[$adaptive;sparse_mass=0.8]" \
        benchmarks/accuracy_gpu.sh qwen1.5b-v7 eval >/tmp/v7-large.log 2>&1 &
    python3 -m sliminfer bench --model llama-3.1-8b --lengths 128k --new-tokens 2 --repeats 1 \
        --methods "slim,slim[sparse_prefill=adaptive],slim[sparse_prefill=adaptive;sparse_estimate=block_means]" \
        --out /tmp/sliminfer-runs/iso-peak-128k 2>&1 | tail -8
    tar -czf "$OUT/iso-peak-128k.tar.gz" -C /tmp/sliminfer-runs iso-peak-128k
    wait
    tail -n 12 /tmp/v7-large.log
    # The kernel alone at 128k at the densities those masses picked at 32k (the GPU is idle now).
    densities=$(python3 benchmarks/adaptive_densities.py "/tmp/sliminfer-runs/qwen1.5b-v7/eval/methods/*adaptive*/results.json")
    python3 benchmarks/sparse_kernel_gpu.py --out "$OUT/kernel-v7" --reps 3 --lengths 131072 \
        ${densities:+--densities "$densities"} 2>&1 | tail -12
fi
if has ttft; then
    for model in ${TTFT_MODELS:-small large}; do
        label=iso-ttft-$model
        methods=${model}_methods
        python3 -m sliminfer bench --model "${!model}" --lengths 16k,32640 --methods "hf,${!methods}" \
            --new-tokens 2 --repeats 3 --out "/tmp/sliminfer-runs/$label" 2>&1 | tail -12
        tar -czf "$OUT/$label.tar.gz" -C /tmp/sliminfer-runs "$label"
    done
fi
