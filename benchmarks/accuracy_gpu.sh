#!/usr/bin/env bash
# Accuracy on a real model on the GPU machine: scoring variants, calibration, RULER eval.
# Runs inside `benchmarks/gpu_models.sh run MODEL benchmarks/accuracy_gpu.sh LABEL [PHASES]`,
# which exports MODEL_PATH, SLIMINFER_RULER_DATA and PYTHONPATH.
#
#   PHASES  comma-separated, default variants,calibrate,eval:
#     variants   benchmarks/scoring_variants.py -> variants.json / variants.md
#     calibrate  sliminfer calibrate -> preset.json / calibrate.md ($CALIBRATE_ARGS appended)
#     eval       sliminfer eval --suite ruler --config preset.json --methods "$EVAL_METHODS"
#                (default full,slim) at $EVAL_LENGTHS (8k,16k,32k), $EVAL_SAMPLES (10) per task
#                and length, stopped cleanly after $EVAL_TIME_LIMIT s (default 420)
#
# Work lives in /tmp/sliminfer-runs/LABEL, which survives between commands on a warm machine:
# a phase whose output exists is skipped, and eval resumes where it stopped, so a second
# command continues the first. At the end everything is packed into $OUT/LABEL.tar.gz.
set -uo pipefail

label=${1:?LABEL}
phases=${2:-variants,calibrate,eval}
work=/tmp/sliminfer-runs/$label
mkdir -p "$work"
model=(--model "$MODEL_PATH" --device cuda --dtype bfloat16)
has() { [[ ",$phases," == *",$1,"* ]]; }
# The CLI with SIGINT raising KeyboardInterrupt (eval then writes its table and exits 130).
cli='import signal, sys
signal.signal(signal.SIGINT, signal.default_int_handler)
from sliminfer.cli.main import main
sys.exit(main(sys.argv[1:]))'

if has variants && [[ ! -s $work/variants.json ]]; then
    python3 benchmarks/scoring_variants.py "${model[@]}" --out "$work/variants.json" | tee "$work/variants.md"
fi
if has calibrate && [[ ! -s $work/preset.json ]]; then
    # shellcheck disable=SC2086
    python3 -c "$cli" calibrate "${model[@]}" --out "$work/preset.json" ${CALIBRATE_ARGS:-} | tee "$work/calibrate.md"
fi
if has eval; then
    config=()
    [[ -s $work/preset.json ]] && config=(--config "$work/preset.json")
    timeout --preserve-status --signal=INT --kill-after=30 "${EVAL_TIME_LIMIT:-420}" \
        python3 -c "$cli" eval --suite ruler "${model[@]}" "${config[@]}" \
        --lengths "${EVAL_LENGTHS:-8k,16k,32k}" --samples "${EVAL_SAMPLES:-10}" \
        --methods "${EVAL_METHODS:-full,slim}" --out "$work/eval" ${EVAL_ARGS:-}
    echo "accuracy_gpu.sh: eval exited $?"
fi
tar -czf "$OUT/$label.tar.gz" -C /tmp/sliminfer-runs "$label"
ls -l "$OUT"
