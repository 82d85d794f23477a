"""Graphed swapping on the GPU machine (issue 15): decode speed when the active sets change.

Run there as `PYTHONPATH=src python3 benchmarks/swap_gpu.py --out $OUT/swap` (about 3-4 min on
one H200: model build, warm-up, 7 generations at 128k); check it anywhere with `--tiny` (a
4-layer model on CPU, seconds). Llama-3.1-8B architecture, random bf16 weights, one 128k
prompt, 128 new tokens, EOS ignored. Random weights make attention near uniform, so with
gamma > 0 the active set changes at almost every step (the worst case for swapping).

Variants (`b` = decode_budget, `g` = gamma, `cap` = max_swap_blocks, default 8):
  slim                  slim prefill + CUDA-graph decode, KV on the GPU (the reference)
  offload b=0.25 g=0    kv_offload=cpu, stable sets (no copy after the first step's fill)
  offload b=0.25 g=0.5  sets change: swaps run inside the graphs, staged by the host
  offload b=0.25 g=0.9  the issue's target case
  offload+P g=0.9       offload_preserve_layers=true: preserve layers' KV on the host too
  offload g=0.9 cap=32  a larger per-step cap: the speed / freshness trade
  offload g=0.9 eager   cuda_graph_decode=false: the eager manager, for comparison
Per row: decode ms/token and its ratio to slim's, stall share of decode, layer-swaps and
deferred blocks per step, bytes per staged copy, host staging ms per step, resident prompt KV
share of full, the top-block hit rate (share of managed layer-steps whose resident set held the
block their score layer ranked highest). Results go to --out as results.json and table.md
after every run.
"""

from __future__ import annotations

import argparse
import dataclasses
import os
import time
import traceback
from collections.abc import Callable
from typing import Any

import torch
from offload_gpu import GIB, run_one

from sliminfer.bench.random_models import build_random_model
from sliminfer.envinfo import environment
from sliminfer.report import markdown_table, write_json

OFFLOAD = ["kv_offload=cpu", "decode_budget=0.25"]
VARIANTS: list[tuple[str, list[str]]] = [
    ("slim", []),
    ("offload b=0.25 g=0 (stable)", [*OFFLOAD, "gamma=0"]),
    ("offload b=0.25 g=0.5", [*OFFLOAD, "gamma=0.5"]),
    ("offload b=0.25 g=0.9", [*OFFLOAD, "gamma=0.9"]),
    ("offload+P b=0.25 g=0.9", [*OFFLOAD, "offload_preserve_layers=true", "gamma=0.9"]),
    ("offload b=0.25 g=0.9 cap=32", [*OFFLOAD, "gamma=0.9", "max_swap_blocks=32"]),
    ("offload b=0.25 g=0.9 eager", [*OFFLOAD, "gamma=0.9", "cuda_graph_decode=false"]),
]
HEADERS = [
    "variant", "decode ms/tok", "x slim", "TTFT s", "stall % decode", "layer-swaps/step", "deferred blocks/step",
    "MB/copy", "copies/step", "host ms/step", "GPU prompt KV % of full", "top-block hit", "mean overlap",
    "graphed steps", "peak GiB",
]


def table_row(row: dict[str, Any], reference_ms: float | None) -> list[Any]:
    kv, ms = row["kv"], row["decode_ms_per_token"]
    steps = max(kv.get("decode_steps", 0), 1)
    decode_ms = ms * (row["new_tokens"] - 1)
    copies = kv.get("swap_transfers", 0)
    hit, overlap = kv.get("top_block_hit_rate"), kv.get("mean_overlap")
    return [
        row["variant"], ms, ms / reference_ms if reference_ms else "-", row["ttft_s"],
        100 * kv.get("stall_ms", 0.0) / decode_ms, kv.get("swaps", 0) / steps, kv.get("deferred_blocks", 0) / steps,
        kv["copied_bytes"] / copies / 1e6 if copies else "-", copies / steps, kv.get("submit_host_ms", 0.0) / steps,
        100 * kv["gpu_prompt_kv_bytes"] / kv["full_prompt_kv_bytes"], "-" if hit is None else hit,
        "-" if overlap is None else overlap, kv.get("graphed_steps", 0),
        row["peak_bytes"] / GIB if row["peak_bytes"] else "-",
    ]


def save(out: str, data: dict[str, Any]) -> None:
    write_json(os.path.join(out, "results.json"), data)
    rows = data["rows"]
    reference = next((r["decode_ms_per_token"] for r in rows if r["variant"] == "slim"), None)
    text = (
        f"# Graphed swapping bench\n\n{data['model']}, {data['tokens']} tokens, {data['new_tokens']} new, "
        f"{data['env']['device']}, {data['env']['date']}, torch {data['env']['torch']}, "
        f"transformers {data['env']['transformers']}\n\nCommand: `{data['command']}`\n\n"
        + markdown_table(HEADERS, [table_row(r, reference) for r in rows])
        + "".join(f"\nFailed: {e['variant']}: {e['error']}\n" for e in data["errors"])
    )
    with open(os.path.join(out, "table.md"), "w", encoding="utf-8") as handle:
        handle.write(text)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--out", required=True)
    parser.add_argument("--tiny", action="store_true", help="4-layer model on CPU, 3072 tokens (a smoke run)")
    parser.add_argument("--tokens", type=int, help="prompt length (default 131072; tiny 3072)")
    parser.add_argument("--new-tokens", type=int, help="tokens to generate (default 128; tiny 8)")
    parser.add_argument("--budget-s", type=float, default=270.0, help="stop starting new runs after this")
    args = parser.parse_args()
    started = time.perf_counter()
    os.makedirs(args.out, exist_ok=True)
    arch, tokens, new_tokens = ("tiny-llama", 3072, 8) if args.tiny else ("llama-3.1-8b", 131072, 128)
    tokens, new_tokens = args.tokens or tokens, args.new_tokens or new_tokens
    loaded = build_random_model(arch, device="cpu" if args.tiny else "auto", dtype="float32" if args.tiny else "bfloat16")
    loaded = dataclasses.replace(loaded, max_context=1 << 21)  # speed-only: RoPE computes any position
    command = "PYTHONPATH=src python3 benchmarks/swap_gpu.py " + ("--tiny " if args.tiny else "") + "--out OUT"
    data: dict[str, Any] = dict(
        model=loaded.name, env=environment(loaded.device), command=command, tokens=tokens, new_tokens=new_tokens,
        rows=[], errors=[],
    )
    generator = torch.Generator().manual_seed(0)
    vocab = loaded.model.config.vocab_size
    warm = torch.randint(0, vocab, (min(tokens, 8192),), generator=generator).tolist()
    for name, overrides in VARIANTS[:5]:  # allocator, CUDA graphs, pinned pool, the staging paths
        attempt(lambda overrides=overrides: run_one(loaded, warm, 8, overrides), f"warm-up {name}", data)
    prompt_ids = torch.randint(0, vocab, (tokens,), generator=generator).tolist()
    for name, overrides in VARIANTS:
        if time.perf_counter() - started > args.budget_s:
            print(f"time budget spent: {name} not run", flush=True)
            break
        row = attempt(lambda overrides=overrides: run_one(loaded, prompt_ids, new_tokens, overrides), name, data)
        if row is not None:
            data["rows"].append(dict(tokens=tokens, variant=name, new_tokens=new_tokens, **row))
            print(f"{tokens:>7} {name:<30} {row['decode_ms_per_token']:7.2f} ms/tok", flush=True)
        save(args.out, data)
    print(open(os.path.join(args.out, "table.md"), encoding="utf-8").read())


def attempt(run: Callable[[], dict[str, Any]], name: str, data: dict[str, Any]) -> dict[str, Any] | None:
    """`run()`, or None after recording its error: one failing variant must not cost the others."""
    try:
        return run()
    except Exception as exc:  # noqa: BLE001 - reported in results.json and on stderr
        traceback.print_exc()
        data["errors"].append(dict(variant=name, error=f"{type(exc).__name__}: {exc}"))
        if torch.cuda.is_available():
            torch.cuda.empty_cache()
        return None


if __name__ == "__main__":
    main()
