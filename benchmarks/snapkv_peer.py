"""SnapKV (kvpress) against slim at the same KV budget, on the harness's exact prompts.

Why a separate script: kvpress 0.5.5 requires `transformers>=4.56,<5.3`, which cannot share the
sliminfer environment (transformers 5.x, newer than 5.3). So the work is split in three steps
that pass JSONL files between two environments (see EVAL.md, "Peer: SnapKV"):

1. `export` (sliminfer env): the harness's prompts (`ModelBackend` and the suite's source with
   seed 0, synthetic or RULER, as `sliminfer eval` builds them, so `prompt_sha` matches
   results.json), the model's converted HF folder (a .gguf is de-quantized once into sliminfer's
   cache), and `kv_share`: the share of prompt KV that slim with the model's default config
   (plus `--set key=value` overrides) keeps, over all layers, computed exactly from the config.
2. `answer` (kvpress venv; does not import sliminfer): SnapKV at `compression_ratio = 1 -
   kv_share` compresses the prefill of all prompt tokens but the last (the observation window
   holds the question), then greedy decoding on the compressed cache. Resumable: rows already in
   the output file are skipped, each answer is appended and flushed.
3. `score` (sliminfer env): our metrics on the SnapKV answers, next to the `full` and `slim`
   records of results.json files matched by `prompt_sha`.

Set up the kvpress venv once:

    python3 -m venv /tmp/kvp-venv
    /tmp/kvp-venv/bin/pip install torch==2.13.0 "transformers>=4.56,<5.3" kvpress==0.5.5

Example:

    python benchmarks/snapkv_peer.py export --lengths 2048,4096 --samples 10 \
        --set min_prompt_tokens=1024 --out prompts.jsonl
    /tmp/kvp-venv/bin/python benchmarks/snapkv_peer.py answer --prompts prompts.jsonl --out answers.jsonl
    python benchmarks/snapkv_peer.py score --answers answers.jsonl \
        --results benchmarks/results/cpu/eval-floor/results.json --out table.md

RULER on a GGUF model in chat format, as `sliminfer eval --suite ruler --chat`:

    python benchmarks/snapkv_peer.py export --model model.gguf --suite ruler --chat \
        --tasks niah_single_2,vt,qa_1 --lengths 8k --samples 5 --out prompts.jsonl

`answer --ratio 0` checks the loop: without compression it reproduces the `full` answers.

On the GPU machine (no network, transformers 5.17 in its image) `benchmarks/snapkv_gpu.sh` runs
the three steps in one command inside `benchmarks/gpu_models.sh run MODEL`: the kvpress environment
is a set of wheels carried in `.peer-wheels/` (`snapkv_gpu.sh prepare` fetches them here: kvpress,
transformers 5.2 and what they need beyond the image) installed into /tmp/kvp-site, the only
PYTHONPATH `answer` gets, ahead of the image's packages; `answer --device cuda --dtype bfloat16`.
"""

from __future__ import annotations

import argparse
import json
import time
from collections import defaultdict
from collections.abc import Iterable, Iterator
from pathlib import Path
from statistics import mean
from typing import Any

Row = dict[str, Any]
Key = tuple[str, int, int]  # (task, length, index)
Cell = tuple[str, int]  # (task, length)
METHODS = ("full", "slim", "snapkv")
HEADERS = {"full": "full", "slim": "slim (default)", "snapkv": "SnapKV"}
DTYPES = ("float32", "bfloat16", "float16")  # answer --dtype: torch dtype names


def read_jsonl(path: str | Path) -> Iterator[Row]:
    """Rows of a JSONL file (none if it does not exist)."""
    if not Path(path).exists():
        return
    with open(path, encoding="utf-8") as handle:
        for line in handle:
            if line.strip():
                yield json.loads(line)


def row_key(row: Row) -> Key:
    return row["task"], row["length"], row["index"]


# --- export (sliminfer env) ---


def slim_kv_share(config: Any, num_layers: int, prompt_tokens: int) -> float:
    """Share of prompt KV that slim keeps: kept tokens summed over layers / (layers x prompt tokens).

    The counts follow from the config alone (`LayerPlan`), so this equals the
    `prefill_fraction` that results.json records for slim on the same prompt.
    """
    from sliminfer.schedule import LayerPlan

    return LayerPlan.build(config, prompt_tokens, num_layers).prefill_fraction


def export(
    model: str,
    suite: str,
    tasks: tuple[str, ...],
    chat: bool,
    lengths: list[int],
    samples: int,
    overrides: list[str],
    out: str,
) -> None:
    """Write the harness's prompts for each task, length and index < samples, with the KV share
    of slim's default config plus `overrides` (`key=value`).

    The prompts are those of `sliminfer eval --model MODEL --suite SUITE --tasks TASKS [--chat]`
    with seed 0 (`make_source` and `ModelBackend.render`); `tasks` empty means the suite's default.
    """
    from sliminfer.eval.backend import ModelBackend
    from sliminfer.eval.evaluate import EvalSpec, make_source, resolve_tasks
    from sliminfer.eval.sample import text_digest
    from sliminfer.generate import encode_prompt
    from sliminfer.loading import load_model

    loaded = load_model(model, device="cpu")
    backend = ModelBackend(loaded, chat=chat)
    spec = EvalSpec(suite=suite, lengths=tuple(lengths), samples=samples, methods=(), tasks=tasks, chat=chat)
    source = make_source(spec, backend)
    num_layers = loaded.model.config.num_hidden_layers
    config = loaded.default_config.with_overrides(overrides)
    with open(out, "w", encoding="utf-8") as sink:
        for length in lengths:
            for task in resolve_tasks(spec):
                for index in range(samples):
                    sample = source.sample(task, length, index)
                    text = backend.render(sample)
                    prompt_tokens = len(encode_prompt(loaded, text))
                    row = dict(
                        task=task,
                        length=length,
                        index=index,
                        depth=sample.depth,
                        text=text,
                        expected=list(sample.expected),
                        metric=sample.metric,
                        max_new_tokens=sample.max_new_tokens,
                        prompt_sha=text_digest(text),
                        prompt_tokens=prompt_tokens,
                        model=loaded.model.name_or_path,
                        kv_share=slim_kv_share(config, num_layers, prompt_tokens),
                    )
                    sink.write(json.dumps(row) + "\n")
                print(f"exported {task}@{length}: {samples} samples", flush=True)


# --- answer (kvpress venv, no sliminfer import) ---


def load_peer(folder: str, device: str = "cpu", dtype: str = "float32") -> tuple[Any, Any]:
    """Tokenizer and sdpa model from the converted HF folder, in `dtype` (one of DTYPES) on `device`."""
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(folder)
    model = AutoModelForCausalLM.from_pretrained(
        folder, dtype=getattr(torch, dtype), attn_implementation="sdpa"
    )
    return tokenizer, model.to(device).eval()


def snapkv_answer(model: Any, tokenizer: Any, row: Row, ratio: float) -> Row:
    """SnapKV-compressed prefill of the prompt but its last token, then greedy decoding to eos."""
    import torch
    from kvpress import SnapKVPress
    from transformers import DynamicCache

    press = SnapKVPress(compression_ratio=ratio, window_size=32, kernel_size=5)
    eos = model.generation_config.eos_token_id
    start = time.perf_counter()
    with torch.inference_mode():
        ids = tokenizer(row["text"], return_tensors="pt")["input_ids"].to(model.device)
        cache = DynamicCache()
        with press(model):
            model.model(input_ids=ids[:, :-1], past_key_values=cache)
        kv_kept = cache.get_seq_length() / (ids.shape[1] - 1)
        token, answer, position = ids[:, -1:], [], ids.shape[1] - 1
        for step in range(row["max_new_tokens"]):
            logits = model(
                input_ids=token,
                past_key_values=cache,
                position_ids=torch.tensor([[position + step]], device=model.device),
            ).logits
            token = logits[:, -1:].argmax(-1)
            if token.item() == eos:
                break
            answer.append(token.item())
    return dict(
        task=row["task"],
        length=row["length"],
        index=row["index"],
        prompt_sha=row["prompt_sha"],
        prompt_tokens=int(ids.shape[1]),
        metric=row["metric"],
        expected=row["expected"],
        kv_share=row["kv_share"],
        compression_ratio=ratio,
        kv_kept=kv_kept,
        answer=tokenizer.decode(answer, skip_special_tokens=True),
        new_tokens=len(answer),
        seconds=time.perf_counter() - start,
    )


def selected(rows: Iterable[Row], lengths: list[int] | None, samples: int | None) -> list[Row]:
    """Prompts of the given lengths (all if None) with index < samples (all if None)."""
    return [
        r
        for r in rows
        if (lengths is None or r["length"] in lengths) and (samples is None or r["index"] < samples)
    ]


def answer_all(
    prompts: str,
    out: str,
    ratio: float | None,
    ratio_scale: float,
    lengths: list[int] | None,
    samples: int | None,
    limit: int | None,
    device: str = "cpu",
    dtype: str = "float32",
) -> None:
    """Answer the selected prompts not yet in `out`, appending each answer as it is done.

    The compression ratio is `ratio` if given, else `ratio_scale * (1 - kv_share)`; the model
    runs on `device` in `dtype`.
    """
    done = {row_key(r) for r in read_jsonl(out)}
    todo = [r for r in selected(read_jsonl(prompts), lengths, samples) if row_key(r) not in done]
    todo = todo[:limit] if limit is not None else todo
    if not todo:
        print("nothing to answer", flush=True)
        return
    tokenizer, model = load_peer(todo[0]["model"], device, dtype)
    with open(out, "a", encoding="utf-8") as sink:
        for count, row in enumerate(todo, 1):
            press_ratio = ratio if ratio is not None else ratio_scale * (1 - row["kv_share"])
            result = snapkv_answer(model, tokenizer, row, press_ratio)
            sink.write(json.dumps(result) + "\n")
            sink.flush()
            print(
                f"[{count}/{len(todo)}] {row['task']}@{row['length']}#{row['index']} "
                f"ratio {press_ratio:.3f} kept {result['kv_kept']:.3f} {result['seconds']:.1f}s "
                f"{result['answer']!r}",
                flush=True,
            )


# --- score (sliminfer env) ---


def load_records(paths: list[str]) -> dict[str, dict[str, Row]]:
    """method ("full", "slim") -> prompt_sha -> record, from results.json files."""
    records: dict[str, dict[str, Row]] = defaultdict(dict)
    for path in paths:
        with open(path, encoding="utf-8") as handle:
            for record in json.load(handle)["records"]:
                if record["method"] in ("full", "slim"):
                    records[record["method"]][record["prompt_sha"]] = record
    return records


def check_kv_share(answers: list[Row], slim: dict[str, Row]) -> int:
    """Raise unless each exported kv_share equals slim's recorded prefill_fraction; return matches."""
    matched = [(a, slim[a["prompt_sha"]]) for a in answers if a["prompt_sha"] in slim]
    wrong = [
        (a["task"], a["length"], a["index"]) for a, r in matched if a["kv_share"] != r["prefill_fraction"]
    ]
    if wrong:
        raise SystemExit(f"kv_share differs from slim's prefill_fraction for {wrong}")
    return len(matched)


def scored_rows(answers: list[Row], records: dict[str, dict[str, Row]]) -> list[Row]:
    """Per prompt present for all three methods: cell, depth, expected, answers and scores."""
    from sliminfer.eval.scorers import score

    rows = []
    for a in answers:
        full, slim = records["full"].get(a["prompt_sha"]), records["slim"].get(a["prompt_sha"])
        if full is None or slim is None:
            continue
        rows.append(
            dict(
                task=a["task"],
                length=a["length"],
                expected=a["expected"],
                answers=dict(full=full["answer"], slim=slim["answer"], snapkv=a["answer"]),
                scores=dict(
                    full=full["score"],
                    slim=slim["score"],
                    snapkv=score(a["metric"], a["answer"], a["expected"]),
                ),
                kv_share=a["kv_share"],
                kv_kept=a["kv_kept"],
                seconds=a["seconds"],
            )
        )
    return rows


def cell_means(rows: list[Row]) -> dict[Cell, dict[str, float]]:
    """(task, length) -> method -> mean score, plus "n"."""
    by_cell: dict[Cell, list[Row]] = defaultdict(list)
    for r in rows:
        by_cell[(r["task"], r["length"])].append(r)
    return {
        cell: {**{m: mean(r["scores"][m] for r in group) for m in METHODS}, "n": len(group)}
        for cell, group in by_cell.items()
    }


def relative(means: dict[Cell, dict[str, float]], method: str, cells: list[Cell]) -> float | None:
    """Sum of `method`'s cell means over sum of full's, on cells where full > 0 (as EVAL.md)."""
    used = [c for c in cells if means[c]["full"] > 0]
    return sum(means[c][method] for c in used) / sum(means[c]["full"] for c in used) if used else None


def fmt(value: float | None) -> str:
    return "—" if value is None else f"{value:.3f}"


def render(rows: list[Row], kv_checked: int) -> str:
    """The markdown report: scores per cell, averages and relative scores, pass key, KV and time."""
    from sliminfer.report import markdown_table as table

    means = cell_means(rows)
    lengths = sorted({length for _, length in means})
    tasks = dict.fromkeys(r["task"] for r in rows)  # in export order
    cells = [(t, n) for t in tasks for n in lengths if (t, n) in means]
    labels = [HEADERS[m] for m in METHODS]
    text = (
        "# SnapKV (kvpress 0.5.5) vs slim at slim's KV share\n\n"
        "Scores in [0, 1], mean over the prompts answered by all three methods (n per cell); "
        "relative scores are over those same prompts (— where full scores 0).\n\n"
    )
    text += table(
        ["task", "length", "n", *labels, "slim/full", "SnapKV/full"],
        [
            [
                t,
                n,
                means[(t, n)]["n"],
                *(fmt(means[(t, n)][m]) for m in METHODS),
                *(fmt(relative(means, m, [(t, n)])) for m in METHODS[1:]),
            ]
            for t, n in cells
        ],
    )
    text += "\n## Average over tasks; relative to full over cells where full > 0\n\n"
    summary = []
    for group, group_lengths in [*((str(n), [n]) for n in lengths), ("all", lengths)]:
        group_cells = [c for c in cells if c[1] in group_lengths]
        summary.append(
            [
                group,
                *(fmt(mean(means[c][m] for c in group_cells)) for m in METHODS),
                *(fmt(relative(means, m, group_cells)) for m in METHODS[1:]),
            ]
        )
    text += table(["length", *labels, "slim/full", "SnapKV/full"], summary)
    if "passkey" in tasks:
        text += "\n" + passkey_section(rows, lengths)
    text += "\n## KV kept and SnapKV time\n\n"
    kv_rows = []
    for length in lengths:
        group = [r for r in rows if r["length"] == length]
        kv_rows.append(
            [
                length,
                len(group),
                fmt(mean(r["kv_share"] for r in group)),
                fmt(mean(r["kv_kept"] for r in group)),
                f"{mean(r['seconds'] for r in group):.1f}",
            ]
        )
    text += table(["length", "n", "slim kv_share", "SnapKV kv_kept", "SnapKV s/answer"], kv_rows)
    text += f"\nkv_share equals slim's recorded prefill_fraction on all {kv_checked} matched prompts.\n"
    return text


def passkey_section(rows: list[Row], lengths: list[int]) -> str:
    """Pass keys found per method, those lost where full found them, and SnapKV's wrong answers."""
    from sliminfer.report import markdown_table as table

    text = "## Pass key: found / n, and lost where full found it\n\n"
    counts, misses = [], []
    for length in lengths:
        group = [r for r in rows if r["task"] == "passkey" and r["length"] == length]
        found = {m: [r["scores"][m] == 1.0 for r in group] for m in METHODS}
        lost = {
            m: sum(f and not g for f, g in zip(found["full"], found[m], strict=True)) for m in METHODS[1:]
        }
        counts.append(
            [length, *(f"{sum(found[m])}/{len(group)}" for m in METHODS), lost["slim"], lost["snapkv"]]
        )
        misses += [
            [length, r["expected"][0], repr(r["answers"]["snapkv"])]
            for r in group
            if r["scores"]["full"] == 1.0 and r["scores"]["snapkv"] < 1.0
        ]
    text += table(["length", "full", "slim (default)", "SnapKV", "slim lost", "SnapKV lost"], counts)
    if misses:
        text += "\nSnapKV's answers where full found the pass key:\n\n"
        text += table(["length", "pass key", "SnapKV answer"], misses)
    return text


def score_all(answers_path: str, results: list[str], out: str) -> None:
    """Score the SnapKV answers, check kv_share, write the markdown report and print it."""
    answers = list(read_jsonl(answers_path))
    records = load_records(results)
    kv_checked = check_kv_share(answers, records["slim"])
    rows = scored_rows(answers, records)
    if not rows:
        raise SystemExit("no prompt has full, slim and SnapKV answers")
    text = render(rows, kv_checked)
    Path(out).write_text(text, encoding="utf-8")
    print(text)


# --- command line ---


def int_list(text: str) -> list[int]:
    """`2048,4096` or `2k,4k` -> [2048, 4096]."""
    return [int(t[:-1]) * 1024 if t.lower().endswith("k") else int(t) for t in text.split(",")]


def task_list(text: str) -> tuple[str, ...]:
    """`vt,cwe` -> ("vt", "cwe")."""
    return tuple(t.strip() for t in text.split(",") if t.strip())


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    commands = parser.add_subparsers(dest="command", required=True)
    p = commands.add_parser("export", help="write the harness's prompts and slim's kv_share (sliminfer env)")
    p.add_argument("--model", default="default", help="'default', a .gguf file or a HF folder")
    p.add_argument("--suite", choices=("synthetic", "ruler"), default="synthetic")
    p.add_argument("--tasks", type=task_list, default=(), help="comma-separated (default: the suite's)")
    p.add_argument("--chat", action="store_true", help="wrap prompts in the chat template (as eval --chat)")
    p.add_argument("--lengths", type=int_list, required=True)
    p.add_argument("--samples", type=int, required=True)
    p.add_argument(
        "--set", action="append", default=[], metavar="KEY=VALUE", help="slim config override (repeatable)"
    )
    p.add_argument("--out", required=True)
    p = commands.add_parser("answer", help="answer the prompts with SnapKV (kvpress venv)")
    p.add_argument("--prompts", required=True)
    p.add_argument("--out", required=True)
    p.add_argument("--ratio", type=float, help="fixed compression ratio (0: no compression, checks the loop)")
    p.add_argument(
        "--ratio-scale", type=float, default=1.0, help="compression ratio = scale * (1 - kv_share)"
    )
    p.add_argument("--lengths", type=int_list, help="only these lengths")
    p.add_argument("--samples", type=int, help="only indices below this")
    p.add_argument("--limit", type=int, help="answer at most this many new prompts")
    p.add_argument("--device", default="cpu", help="torch device of the model: cpu, cuda, cuda:N")
    p.add_argument("--dtype", choices=DTYPES, default="float32", help="bfloat16 is typical on cuda")
    p = commands.add_parser("score", help="score SnapKV next to full and slim results (sliminfer env)")
    p.add_argument("--answers", required=True)
    p.add_argument("--results", action="append", required=True, help="a results.json (repeatable)")
    p.add_argument("--out", required=True)
    args = parser.parse_args()
    if args.command == "export":
        export(args.model, args.suite, args.tasks, args.chat, args.lengths, args.samples, args.set, args.out)
    elif args.command == "answer":
        answer_all(
            args.prompts,
            args.out,
            args.ratio,
            args.ratio_scale,
            args.lengths,
            args.samples,
            args.limit,
            args.device,
            args.dtype,
        )
    else:
        score_all(args.answers, args.results, args.out)


if __name__ == "__main__":
    main()
