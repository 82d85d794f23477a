#!/usr/bin/env bash
# Accuracy on a real model on the GPU machine: calibration and the RULER eval, methods in parallel.
# Runs inside `benchmarks/gpu_models.sh run MODEL benchmarks/accuracy_gpu.sh LABEL [PHASES]`,
# which exports MODEL_PATH, SLIMINFER_RULER_DATA and PYTHONPATH (MODEL_PATH may be overridden to
# run a second staged model from the same command).
#
#   PHASES  comma-separated, default calibrate,eval:
#     variants   benchmarks/scoring_variants.py -> variants.json / variants.md
#     calibrate  sliminfer calibrate -> preset.json / calibrate.md ($CALIBRATE_ARGS appended)
#     eval       RULER through benchmarks/eval_parallel.py, one process per method on $GPUS:
#                $EARLY_METHODS (default full) start at once, beside calibration, into eval/; then
#                $EVAL_METHODS (default slim) with --config preset.json into eval-calibrated/
#                (its own table: "slim" there is calibrate's pick, in eval/ the built-in default),
#                where full's folder is copied at the end. $EVAL_LENGTHS (8k,16k,32k),
#                $EVAL_SAMPLES (10) per task and length, $EVAL_ARGS appended; $RESUME_FROM,
#                merged results.json files of earlier runs (space-separated), lets each method
#                start from their records of its label where its config is unchanged.
#   GPUS      GPU ids for this model (default 0); calibration runs on the first.
#   DEADLINE  epoch seconds when every eval process is interrupted (default: now + 540).
#   DEVICE, DTYPE  default cuda, bfloat16 (cpu, float32 to try the script here).
#
# Work lives in /tmp/sliminfer-runs/LABEL, which survives between commands on a warm machine: a
# phase whose output exists is skipped and eval resumes where it stopped, so a second command
# continues the first. At the end everything is packed into $OUT/LABEL.tar.gz.
set -uo pipefail

label=${1:?LABEL}
phases=${2:-calibrate,eval}
work=/tmp/sliminfer-runs/$label
mkdir -p "$work"
gpus=${GPUS:-0}
deadline=${DEADLINE:-$(($(date +%s) + 540))}
model=(--model "$MODEL_PATH" --device "${DEVICE:-cuda}" --dtype "${DTYPE:-bfloat16}")
has() { [[ ",$phases," == *",$1,"* ]]; }
left() { echo $((deadline - $(date +%s))); }
# The CLI with SIGINT raising KeyboardInterrupt.
cli='import signal, sys
signal.signal(signal.SIGINT, signal.default_int_handler)
from sliminfer.cli.main import main
sys.exit(main(sys.argv[1:]))'
resume=()
for from in ${RESUME_FROM:-}; do resume+=(--resume-from "$from"); done
eval_parallel() {  # OUT, then eval arguments
    local out=$1
    shift
    # shellcheck disable=SC2086
    python3 benchmarks/eval_parallel.py --gpus "$gpus" --time-limit "$(left)" "${resume[@]}" -- --suite ruler "${model[@]}" \
        --lengths "${EVAL_LENGTHS:-8k,16k,32k}" --samples "${EVAL_SAMPLES:-10}" --out "$out" ${EVAL_ARGS:-} "$@"
}

early=
if has eval && [[ -n ${EARLY_METHODS-full} ]]; then
    eval_parallel "$work/eval" --methods "${EARLY_METHODS-full}" >"$work/early.log" 2>&1 &
    early=$!
fi
if has variants && [[ ! -s $work/variants.json ]]; then
    CUDA_VISIBLE_DEVICES=${gpus%%,*} python3 benchmarks/scoring_variants.py "${model[@]}" --out "$work/variants.json" | tee "$work/variants.md"
fi
if has calibrate && [[ ! -s $work/preset.json ]]; then
    # shellcheck disable=SC2086
    CUDA_VISIBLE_DEVICES=${gpus%%,*} timeout --preserve-status --signal=INT "$(left)" \
        python3 -c "$cli" calibrate "${model[@]}" --out "$work/preset.json" ${CALIBRATE_ARGS:-} 2>"$work/calibrate.log" | tee "$work/calibrate.md"
fi
if has eval; then
    config=()
    [[ -s $work/preset.json ]] && config=(--config "$work/preset.json")
    [[ -n ${EVAL_METHODS-slim} ]] && eval_parallel "$work/eval-calibrated" "${config[@]}" --methods "${EVAL_METHODS-slim}" | tail -5
    [[ -n $early ]] && wait "$early"
    for out in "$work/eval" "$work/eval-calibrated"; do
        [[ -d $out/methods ]] || continue
        [[ -d $work/eval/methods/full && $out != "$work/eval" ]] && rm -rf "$out/methods/full" && cp -r "$work/eval/methods/full" "$out/methods/"
        python3 benchmarks/eval_parallel.py --merge-only "$out" >/dev/null && sed -n '/## Average/,/^Cells/p' "$out/table.md"
    done
fi
tar -czf "$OUT/$label.tar.gz" -C /tmp/sliminfer-runs "$label"
ls -l "$OUT"
