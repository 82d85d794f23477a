#!/usr/bin/env bash
# SnapKV (kvpress 0.5.5) at slim's KV share on a real model on the GPU machine, which has no
# network: benchmarks/snapkv_peer.py's three steps in one command.
#
# Usage:  benchmarks/snapkv_gpu.sh prepare      here, once: the wheels below into .peer-wheels/
#         benchmarks/gpu_models.sh run MODEL benchmarks/snapkv_gpu.sh LABEL     there
#
# The kvpress environment: kvpress needs transformers<5.3, older than the image's 5.17, so the
# WHEELS below (15 MiB: transformers 5.2 refuses the image's tokenizers 0.23.2, and `import kvpress`
# imports datasets, fire and cachetools, which the image lacks) are installed once into $KVP_SITE
# (/tmp/kvp-site), and `answer` runs with PYTHONPATH=$KVP_SITE alone, ahead of the image's
# site-packages; export and score keep sliminfer's PYTHONPATH from gpu_models.sh. The wheels do not
# fit beside the last model part in the 64 MiB a command carries: stage all N parts with
# `gpu_models.sh stage MODEL` (commands 1..N), then carry [".peer-wheels", ".whl", ".data"] here
# (49 MiB with the repository; only ".peer-wheels" once a run on the warm machine has the model).
#
#   export  prompts.jsonl: the prompts of `sliminfer eval --suite ruler --chat` (seed 0, RULER's
#           eight tasks, $EVAL_LENGTHS (8k,16k,32k), $EVAL_SAMPLES (10) per task and length) with
#           the KV share of the model's preset (the built-in one `sliminfer eval` uses).
#   answer  answers.jsonl: SnapKV on $DEVICE (cuda) in $DTYPE (bfloat16; cpu, float32 to try the
#           script here), stopped at $DEADLINE (epoch seconds, default now + 540; the prompt in
#           progress is lost, those answered are kept).
#   score   snapkv.md, if $RESULTS names results.json files (space-separated) with full and slim
#           records of the same prompts, e.g. benchmarks/results/h200/qwen0.5b-v4/results.json.
#
# Work lives in /tmp/sliminfer-runs/LABEL, which survives between commands on a warm machine: an
# existing prompts.jsonl is kept and answer skips the prompts answered, so a second command
# continues the first. At the end everything is packed into $OUT/LABEL.tar.gz.
set -uo pipefail

WHEELS=(
    transformers-5.2.0-py3-none-any.whl
    tokenizers-0.22.2-cp39-abi3-manylinux_2_17_x86_64.manylinux2014_x86_64.whl
    kvpress-0.5.5-py3-none-any.whl
    datasets-5.2.0-py3-none-any.whl
    dill-0.4.1-py3-none-any.whl
    multiprocess-0.70.19-py312-none-any.whl
    fire-0.6.0-py2.py3-none-any.whl
    termcolor-3.3.0-py3-none-any.whl
    cachetools-5.5.2-py3-none-any.whl
)
WHEEL_DIR=.peer-wheels
site=${KVP_SITE:-/tmp/kvp-site}

cd "$(dirname "$0")/.." || exit

prepare() {
    # fire 0.6.0 (kvpress wants <0.7) is published as source only: built here into a pure wheel.
    local wheel name version exclude
    exclude=$(git rev-parse --git-common-dir)/info/exclude
    grep -qx "/$WHEEL_DIR/" "$exclude" 2>/dev/null || echo "/$WHEEL_DIR/" >>"$exclude"
    mkdir -p "$WHEEL_DIR"
    for wheel in "${WHEELS[@]}"; do
        [[ -f $WHEEL_DIR/$wheel ]] && continue
        IFS=- read -r name version _ <<<"$wheel"
        if [[ $wheel == *py2.py3-none-any.whl ]]; then
            python3 -m pip wheel -q --no-deps -w "$WHEEL_DIR" "$name==$version"
        else
            python3 -m pip download -q --no-deps --only-binary=:all: --python-version 3.12 --implementation cp \
                --platform manylinux2014_x86_64 -d "$WHEEL_DIR" "$name==$version"
        fi
        [[ -f $WHEEL_DIR/$wheel ]] || { echo "snapkv_gpu.sh: $WHEEL_DIR/$wheel was not made" >&2; exit 3; }
    done
    du -ch "${WHEELS[@]/#/$WHEEL_DIR/}"
}

install_wheels() {
    # Once per machine, again if WHEELS changed.
    [[ "$(cat "$site/.wheels" 2>/dev/null)" == "${WHEELS[*]}" ]] && return
    local wheel
    for wheel in "${WHEELS[@]}"; do
        [[ -f $WHEEL_DIR/$wheel ]] || { echo "snapkv_gpu.sh: no $WHEEL_DIR/$wheel: run 'prepare' here and carry $WHEEL_DIR" >&2; exit 3; }
    done
    rm -rf "$site"
    PIP_ROOT_USER_ACTION=ignore python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir \
        --target "$site" "${WHEELS[@]/#/$WHEEL_DIR/}" || exit 3
    echo "${WHEELS[*]}" >"$site/.wheels"
}

[[ ${1:-} == prepare ]] && { prepare; exit; }
label=${1:?LABEL, or prepare}
work=/tmp/sliminfer-runs/$label
mkdir -p "$work"
deadline=${DEADLINE:-$(($(date +%s) + 540))}
left() { echo $((deadline - $(date +%s))); }
peer=(python3 benchmarks/snapkv_peer.py)
export HF_HUB_OFFLINE=1

install_wheels
if [[ ! -s $work/prompts.jsonl ]]; then
    if "${peer[@]}" export --model "$MODEL_PATH" --suite ruler --chat --lengths "${EVAL_LENGTHS:-8k,16k,32k}" \
        --samples "${EVAL_SAMPLES:-10}" --out "$work/prompts.partial" 2>"$work/export.log"; then
        mv "$work/prompts.partial" "$work/prompts.jsonl"
    else
        tail -5 "$work/export.log"
    fi
fi
touch "$work/answers.jsonl"
if [[ -s $work/prompts.jsonl ]] && (($(left) > 0)); then
    PYTHONPATH=$site python3 -c 'import kvpress, transformers; print("kvpress", kvpress.__file__, "transformers", transformers.__version__)' \
        && PYTHONPATH=$site timeout "$(left)" "${peer[@]}" answer --prompts "$work/prompts.jsonl" \
            --out "$work/answers.jsonl" --device "${DEVICE:-cuda}" --dtype "${DTYPE:-bfloat16}" >>"$work/answer.log" 2>&1
    tail -3 "$work/answer.log"
    echo "answered $(wc -l <"$work/answers.jsonl") of $(wc -l <"$work/prompts.jsonl") prompts"
fi
if [[ -n ${RESULTS:-} && -s $work/answers.jsonl ]]; then
    results=()
    for path in $RESULTS; do results+=(--results "$path"); done
    "${peer[@]}" score --answers "$work/answers.jsonl" "${results[@]}" --out "$work/snapkv.md"
fi
tar -czf "$OUT/$label.tar.gz" -C /tmp/sliminfer-runs "$label"
ls -l "$OUT"
