"""KV offload on the GPU machine (issue 3): decode speed and GPU memory with and without offload.

Run there as `PYTHONPATH=src python3 benchmarks/offload_gpu.py --out $OUT/offload` (~8 min on an
H100); check it anywhere with `--tiny` (a 4-layer model on CPU, seconds). Llama-3.1-8B
architecture, random bf16 weights: every number is a speed or memory number. Random weights
make attention near uniform, so the decode-time block choice is close to random from step to
step (the worst case for overlap); `gamma=0` keeps the first step's choice (the stable case:
no copies after the initial fill, the best case).

Variants per prompt length (128 new tokens, EOS ignored):
  hf          plain transformers `model.generate` (bench.measure.run_hf: TTFT, decode and end
              to end from one generate call)
  slim        sliminfer slim prefill + CUDA-graph decode, KV all on the GPU
  slim-eager  the same with eager decode (what the offload path runs while it may still swap:
              the comparison that isolates the manager's cost)
  offload     kv_offload=cpu at decode budgets 0.5 / 0.25 of each slim layer's retained blocks,
              gamma 0 (stable: the first step's choice stays, no copies after the initial fill,
              the best case) and gamma 0.5 / 0.9 (noisy selection: swaps, at most
              max_swap_blocks per layer and step, run inside the graphs); CUDA-graph decode
              from the second step on
  offload+P   the same with offload_preserve_layers=true: the preserve layers' prompt KV goes to
              CPU too (all but the score layer), budget 0.25 of all prompt blocks
Then the largest context that fits, measured: each of slim and offload+P (stable) runs 16
new tokens at the longest lengths of --long-lengths until one fits (an out-of-memory error
moves on to the next, shorter one), plus a line through the two longest table runs of each
variant (peak = a + b * tokens) solved for the card's memory. Results go to --out as
results.json and table.md after every run.
"""

from __future__ import annotations

import argparse
import dataclasses
import gc
import os
import time
from typing import Any

import torch

from sliminfer.bench.harness import peak_memory_bytes, reset_peak_memory, timed
from sliminfer.bench.measure import run_hf
from sliminfer.bench.random_models import build_random_model
from sliminfer.envinfo import environment
from sliminfer.generate import SamplingParams, generate
from sliminfer.report import markdown_table, write_json

GIB = 2**30
OFFLOAD = [(budget, gamma) for budget in (0.5, 0.25) for gamma in (0.0, 0.5, 0.9)]
STABLE_PRESERVE = "offload+P b=0.25 g=0.0 (stable)"
LONG_VARIANTS = ("slim", STABLE_PRESERVE)
HEADERS = [
    "tokens", "variant", "decode ms/tok", "TTFT s", "peak GiB", "GPU prompt KV GiB", "% of full prompt KV",
    "CPU KV GiB", "swaps", "mean overlap", "MB copied/step", "MB/copy", "copy ms", "stall ms", "stall % decode",
    "host submit ms/step", "deferred blocks/step", "top-block hit",
]


def variants() -> list[tuple[str, list[str] | None]]:
    """(name, config overrides); None = the HF baseline."""
    out: list[tuple[str, list[str] | None]] = [("hf", None), ("slim", []), ("slim-eager", ["cuda_graph_decode=false"])]
    for budget, gamma in OFFLOAD:
        name = f"offload b={budget} g={gamma}" + (" (stable)" if gamma == 0 else "")
        out.append((name, ["kv_offload=cpu", f"decode_budget={budget}", f"gamma={gamma}"]))
    preserve = ["kv_offload=cpu", "offload_preserve_layers=true", "decode_budget=0.25"]
    out.append((STABLE_PRESERVE, [*preserve, "gamma=0.0"]))
    out.append(("offload+P b=0.25 g=0.5", [*preserve, "gamma=0.5"]))
    return out


def run_one(loaded, prompt_ids: list[int], new_tokens: int, overrides: list[str] | None) -> dict[str, Any]:
    """One measured generation: the row of results.json."""
    if overrides is None:
        sample = run_hf(loaded, prompt_ids, new_tokens)
        full_kv = len(prompt_ids) * sample.kv_cache_bytes // (len(prompt_ids) + new_tokens - 1)
        return dict(
            decode_ms_per_token=sample.decode_ms_per_token, ttft_s=sample.ttft_s, peak_bytes=sample.peak_memory_bytes,
            kv=dict(gpu_prompt_kv_bytes=full_kv, full_prompt_kv_bytes=full_kv),
        )
    config = loaded.default_config.with_overrides(overrides)
    reset_peak_memory(loaded.device)
    sampling = SamplingParams(max_new_tokens=new_tokens, ignore_eos=True)
    _, result = timed(lambda: generate(loaded, prompt_ids, config=config, sampling=sampling), loaded.device)
    return dict(
        decode_ms_per_token=result.decode_ms_per_token, ttft_s=result.ttft_s,
        peak_bytes=peak_memory_bytes(loaded.device), kv=result.kv.to_dict(), config=config.to_dict(),
    )


def table_row(row: dict[str, Any]) -> list[Any]:
    kv = row["kv"]
    decode_ms = row["decode_ms_per_token"] * (row["new_tokens"] - 1)
    stall, steps = kv.get("stall_ms", 0.0), max(kv.get("decode_steps", 0), 1)
    overlap, transfers, hit = kv.get("mean_overlap"), kv.get("transfers", 0), kv.get("top_block_hit_rate")
    copied = kv.get("copied_bytes", 0) + kv.get("initial_fill_bytes", 0)
    return [
        row["tokens"], row["variant"], row["decode_ms_per_token"], row["ttft_s"],
        row["peak_bytes"] / GIB if row["peak_bytes"] else "-", kv["gpu_prompt_kv_bytes"] / GIB,
        100 * kv["gpu_prompt_kv_bytes"] / kv["full_prompt_kv_bytes"], kv.get("cpu_kv_bytes", 0) / GIB,
        kv.get("swaps", 0), "-" if overlap is None else overlap, kv.get("copied_bytes_per_step", 0) / 1e6,
        copied / transfers / 1e6 if transfers else "-", kv.get("copy_ms", 0.0), stall,
        100 * stall / decode_ms if decode_ms else 0.0, kv.get("submit_host_ms", 0.0) / steps,
        kv.get("deferred_blocks", 0) / steps, "-" if hit is None else hit,
    ]


def capacity(rows: list[dict[str, Any]], card_bytes: int) -> list[list[Any]]:
    """Per variant: peak = a + b * tokens through its two longest runs, solved for `card_bytes`."""
    out = []
    for name in dict.fromkeys(row["variant"] for row in rows):
        points = sorted((r["tokens"], r["peak_bytes"]) for r in rows if r["variant"] == name and r["peak_bytes"])
        if len(points) < 2:
            continue
        (n0, p0), (n1, p1) = points[-2:]
        per_token = (p1 - p0) / (n1 - n0)
        fixed = p0 - per_token * n0
        out.append([name, per_token / 1024, fixed / GIB, int((card_bytes - fixed) / per_token)])
    return out


def save(out: str, data: dict[str, Any]) -> None:
    write_json(os.path.join(out, "results.json"), data)
    text = [f"# KV offload bench\n\n{data['model']}, {data['env']['device']}, {data['env']['date']}, "
            f"torch {data['env']['torch']}, transformers {data['env']['transformers']}\n\n"
            f"Command: `{data['command']}`\n\n", markdown_table(HEADERS, [table_row(r) for r in data["rows"]])]
    if data["capacity"]:
        text += ["\nLargest context (linear memory model through the two longest runs):\n\n",
                 markdown_table(["variant", "KiB/token", "fixed GiB", "max tokens"], data["capacity"])]
    for extra in data["long_runs"]:
        text.append(f"\nMeasured at {extra['tokens']} tokens: {extra['variant']} -> {extra['outcome']}\n")
    with open(os.path.join(out, "table.md"), "w", encoding="utf-8") as handle:
        handle.write("".join(text))


def largest_context(loaded, lengths: list[int], generator: torch.Generator) -> list[dict[str, Any]]:
    """Per variant of `LONG_VARIANTS`, the longest of `lengths` (tried longest first) that runs."""
    overrides = dict(variants())
    outcomes = []
    for name in LONG_VARIANTS:
        for tokens in sorted(lengths, reverse=True):
            prompt_ids = torch.randint(0, loaded.model.config.vocab_size, (tokens,), generator=generator).tolist()
            try:
                row = run_one(loaded, prompt_ids, 16, overrides[name])
                outcome = f"ran: peak {row['peak_bytes'] / GIB:.1f} GiB, TTFT {row['ttft_s']:.1f} s"
            except torch.OutOfMemoryError:
                row, outcome = None, "out of memory"
            gc.collect()
            torch.cuda.empty_cache()
            outcomes.append(dict(tokens=tokens, variant=name, outcome=outcome))
            print(f"{tokens:>7} {name:<32} {outcome}", flush=True)
            if row is not None:
                break
    return outcomes


def parse_lengths(text: str) -> list[int]:
    return [int(n) for n in text.split(",") if n]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--out", required=True)
    parser.add_argument("--tiny", action="store_true", help="4-layer model on CPU with short prompts (a smoke run)")
    parser.add_argument(
        "--lengths", help="comma-separated prompt lengths (default 131072,65536,32768; tiny 3072,1536; '' none)"
    )
    parser.add_argument(
        "--long-lengths", default="262144,393216,524288", help="largest-context candidates, CUDA only ('' none)"
    )
    parser.add_argument("--budget-s", type=float, default=470.0, help="stop starting new runs after this")
    args = parser.parse_args()
    started = time.perf_counter()
    os.makedirs(args.out, exist_ok=True)
    arch, lengths, new_tokens = ("tiny-llama", [3072, 1536], 8) if args.tiny else ("llama-3.1-8b", [131072, 65536, 32768], 128)
    lengths = parse_lengths(args.lengths) if args.lengths is not None else lengths
    loaded = build_random_model(arch, device="cpu" if args.tiny else "auto", dtype="float32" if args.tiny else "bfloat16")
    loaded = dataclasses.replace(loaded, max_context=1 << 21)  # speed-only: RoPE computes any position
    data: dict[str, Any] = dict(
        model=loaded.name, env=environment(loaded.device), command="PYTHONPATH=src python3 benchmarks/offload_gpu.py "
        + ("--tiny " if args.tiny else "") + "--out OUT", rows=[], capacity=[], long_runs=[],
    )
    generator = torch.Generator().manual_seed(0)
    vocab = loaded.model.config.vocab_size
    warm = torch.randint(0, vocab, (min(lengths, default=16384) // 2,), generator=generator).tolist()
    for _, overrides in variants()[:4]:  # allocator, cuDNN plans, CUDA graphs, pinned pool
        run_one(loaded, warm, 8, overrides)
    for tokens in lengths:
        prompt_ids = torch.randint(0, vocab, (tokens,), generator=generator).tolist()
        for name, overrides in variants():
            if time.perf_counter() - started > args.budget_s:
                break
            row = run_one(loaded, prompt_ids, new_tokens, overrides)
            data["rows"].append(dict(tokens=tokens, variant=name, new_tokens=new_tokens, **row))
            print(f"{tokens:>7} {name:<32} {row['decode_ms_per_token']:7.2f} ms/tok", flush=True)
            save(args.out, data)
    if loaded.device.type == "cuda":
        data["capacity"] = capacity(data["rows"], torch.cuda.mem_get_info(loaded.device)[1])
        save(args.out, data)
        long_lengths = parse_lengths(args.long_lengths)
        if long_lengths and time.perf_counter() - started < args.budget_s:
            data["long_runs"] = largest_context(loaded, long_lengths, generator)
            save(args.out, data)
    print(open(os.path.join(args.out, "table.md"), encoding="utf-8").read())


if __name__ == "__main__":
    main()
