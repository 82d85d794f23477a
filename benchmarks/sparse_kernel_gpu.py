"""Block-sparse causal attention: does PyTorch FlexAttention beat dense cuDNN SDPA on the H200?

Issue 12 asks for the sparse-prefill kernel to be chosen by measurement before it is wired into
the prefill. This script answers the first question at Llama-3.1-8B's attention shape (32 query
heads, 8 KV heads, head dim 128, bf16, batch 1):

1. correctness: the library's `BlockMask` from block indices (`sliminfer.attention.sparse`)
   against SDPA with the same pattern as a dense boolean mask (a torch bug once ignored sparse
   masks), and at density 1.0 against dense causal SDPA;
2. speed: the attention op alone at 32k and 128k, dense cuDNN SDPA vs flex at block densities
   1.0 / 0.5 / 0.15 (share of the causal blocks computed, per head), plus `--densities`;
3. with `--components`: what a sparse layer spends besides the kernel, per part: the key-block
   profile, the pattern (fixed 0.15 and adaptive 0.95), the `BlockMask`, and the per-row
   estimate (`block_mean_scores`) with its sorted pattern;
4. with `--sweep`: flex's kernel options (`KERNEL_CANDIDATES`, tile sizes, TMA) at density 0.15
   on the last length, each checked against the masked reference first; the fastest goes to
   DIR/best_kernel_options.json (what `SLIMINFER_FLEX_KERNEL_OPTIONS` takes).

The pattern per query block i and head: the sink block 0, the diagonal block i (causal inside,
the only partial block) and block i-1 always; the other blocks below the diagonal drawn at
random up to the density (speed does not depend on which blocks are chosen, only on how many).

Usage: python3 benchmarks/sparse_kernel_gpu.py --out DIR [--tiny] [--components] [--sweep] [--densities 0.3,0.4]
(--tiny: CPU, small shapes)
Writes DIR/results.json and DIR/table.md after every measurement.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import time

import torch
import torch.nn.functional as F
from torch.nn.attention import SDPBackend, sdpa_kernel
from torch.nn.attention.flex_attention import flex_attention

from sliminfer.attention.sparse import SPARSE_BLOCK as BLOCK
from sliminfer.attention.sparse import (
    block_mean_scores,
    block_pattern,
    compiled_flex_attention,
    flex_kernel_options,
    key_block_profile,
    pattern_share,
    row_block_pattern,
    to_block_mask,
    token_mask,
)

HEADS, KV_HEADS, HEAD_DIM = 32, 8, 128
KERNEL_CANDIDATES: list[dict] = [
    {},
    {"BLOCK_M": 128, "BLOCK_N": 128, "num_warps": 8, "num_stages": 2},
    {"USE_TMA": True},
    {"BLOCK_M": 128, "BLOCK_N": 128, "num_warps": 8, "num_stages": 2, "USE_TMA": True},
    {"BLOCK_M": 64, "BLOCK_N": 128, "num_warps": 4, "num_stages": 3},
    {"PRESCALE_QK": True},
]
"""Options tried by --sweep, each on top of the library's own (`flex_kernel_options`: flex's
default tiles for the GPU, plus ROWS_GUARANTEED_SAFE)."""


def random_pattern(n_blocks: int, heads: int, density: float, device: torch.device, seed: int = 0) -> torch.Tensor:
    """`[1, heads, n_blocks, n_blocks]` bool: which (query block, key block) pairs are computed.

    Causal (key block <= query block); per row the sink, the diagonal and its left neighbour,
    then random blocks below the diagonal until `density` of the row's causal blocks are on.
    """
    generator = torch.Generator(device="cpu").manual_seed(seed)
    rows = torch.arange(n_blocks)[:, None]
    cols = torch.arange(n_blocks)[None, :]
    causal = cols <= rows
    forced = (cols == 0) | (cols == rows) | (cols == rows - 1)
    scores = torch.rand(heads, n_blocks, n_blocks, generator=generator)
    scores = torch.where(forced, 2.0, scores).masked_fill(~causal, -1.0)
    wanted = torch.clamp((density * (rows + 1).float()).round().long(), min=1)
    wanted = torch.maximum(wanted, forced.sum(1, keepdim=True)).clamp(max=rows + 1)
    rank = scores.argsort(-1, descending=True).argsort(-1)
    return ((rank < wanted[None]) & causal).to(device)[None]


def timed_ms(fn, reps: int, cuda: bool) -> float:
    for _ in range(2):
        fn()
    samples = []
    for _ in range(reps):
        if cuda:
            start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
            start.record()
            fn()
            end.record()
            torch.cuda.synchronize()
            samples.append(start.elapsed_time(end))
        else:
            t = time.perf_counter()
            fn()
            samples.append((time.perf_counter() - t) * 1e3)
    return statistics.median(samples)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--out", required=True)
    parser.add_argument("--tiny", action="store_true", help="CPU, small shapes, no compile: checks the script")
    parser.add_argument("--reps", type=int, default=5)
    parser.add_argument("--lengths", default="32768,131072", help="comma-separated token counts (CUDA)")
    parser.add_argument("--densities", default="", help="more block densities to time, comma-separated")
    parser.add_argument("--components", action="store_true", help="also time the profile, the pattern and the BlockMask")
    parser.add_argument("--sweep", action="store_true", help="time flex's kernel options (KERNEL_CANDIDATES) at density 0.15")
    args = parser.parse_args()
    os.makedirs(args.out, exist_ok=True)
    cuda = not args.tiny
    device = torch.device("cuda" if cuda else "cpu")
    dtype = torch.bfloat16 if cuda else torch.float32
    heads, kv_heads, head_dim = (HEADS, KV_HEADS, HEAD_DIM) if cuda else (4, 2, 16)
    check_len, lengths = (4096, tuple(int(n) for n in args.lengths.split(","))) if cuda else (512, (1024,))
    flex = compiled_flex_attention() if cuda else flex_attention
    dense_backends = [SDPBackend.CUDNN_ATTENTION, SDPBackend.FLASH_ATTENTION] if cuda else [SDPBackend.MATH]
    options = flex_kernel_options(torch.cuda.get_device_capability()) if cuda else {}
    results: dict = {"device": torch.cuda.get_device_name() if cuda else "cpu", "torch": torch.__version__,
                     "shape": {"heads": heads, "kv_heads": kv_heads, "head_dim": head_dim, "block": BLOCK}, "kernel_options": options,
                     "checks": [], "timings": [], "components": [], "sweep": []}

    def save() -> None:
        with open(os.path.join(args.out, "results.json"), "w") as handle:
            json.dump(results, handle, indent=1)
        lines = ["| tokens | kernel | density | ms | vs dense cuDNN |", "|---|---|---|---|---|"]
        for row in results["timings"]:
            lines.append(f"| {row['tokens']} | {row['kernel']} | {row['density']} | {row['ms']:.3f} | {row['speedup']:.2f}x |")
        checks = "\n".join(f"- {c}" for c in results["checks"])
        parts = ["| tokens | part | ms |", "|---|---|---|"]
        parts += [f"| {row['tokens']} | {row['part']} | {row['ms']:.3f} |" for row in results["components"]]
        sweep = ["| tokens | kernel options | density | max abs error vs masked SDPA | ms |", "|---|---|---|---|---|"]
        sweep += [f"| {r['tokens']} | `{json.dumps(r['options'])}` | {r['density']} | {r['error']} | {r['ms']} |" for r in results["sweep"]]
        with open(os.path.join(args.out, "table.md"), "w") as handle:
            handle.write(f"{results['device']}, torch {results['torch']}, kernel options {json.dumps(options)}\n\n{checks}\n\n"
                         + "\n".join(lines) + "\n\n" + "\n".join(parts) + "\n\n" + "\n".join(sweep) + "\n")

    def qkv(n: int) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        g = torch.Generator(device=device).manual_seed(n)
        q = torch.randn(1, heads, n, head_dim, device=device, dtype=dtype, generator=g)
        k = torch.randn(1, kv_heads, n, head_dim, device=device, dtype=dtype, generator=g)
        v = torch.randn(1, kv_heads, n, head_dim, device=device, dtype=dtype, generator=g)
        return q, k, v

    def dense(q, k, v):
        with sdpa_kernel(dense_backends, set_priority=True):
            return F.scaled_dot_product_attention(q, k, v, is_causal=True, enable_gqa=True)

    q, k, v = qkv(check_len)
    for density in (1.0, 0.3):
        pattern = random_pattern(-(-check_len // BLOCK), heads, density, device)
        sparse = flex(q, k, v, block_mask=to_block_mask(pattern, check_len), enable_gqa=True, kernel_options=options)
        reference = F.scaled_dot_product_attention(q, k, v, attn_mask=token_mask(pattern, check_len), enable_gqa=True)
        error = (sparse.float() - reference.float()).abs().max().item()
        vs_dense = (sparse.float() - dense(q, k, v).float()).abs().max().item()
        results["checks"].append(
            f"{check_len} tokens, density {density}: max |flex - masked SDPA| = {error:.2e}; max |flex - dense causal| = {vs_dense:.2e}"
            + (" (must be ~0: same pattern)" if density == 1.0 else " (must be large: the mask is honoured)")
        )
        save()
    del q, k, v

    def time_length(n: int) -> None:
        q, k, v = qkv(n)
        base = timed_ms(lambda: dense(q, k, v), args.reps, cuda)
        results["timings"].append({"tokens": n, "kernel": "sdpa cudnn (dense causal)", "density": 1.0, "ms": base, "speedup": 1.0})
        save()
        extra = [float(d) for d in args.densities.split(",") if d.strip()]
        for density in (1.0, 0.5, 0.15, *extra):
            pattern = random_pattern(-(-n // BLOCK), heads, density, device)
            mask = to_block_mask(pattern, n)
            actual = pattern_share(pattern).item()
            ms = timed_ms(lambda: flex(q, k, v, block_mask=mask, enable_gqa=True, kernel_options=options), args.reps, cuda)  # noqa: B023
            results["timings"].append({"tokens": n, "kernel": "flex (triton)", "density": round(actual, 3), "ms": ms, "speedup": base / ms})
            save()
        if args.components:
            time_components(n, q, k)

    def time_components(n: int, q: torch.Tensor, k: torch.Tensor) -> None:
        """The per-layer work of a sparse layer besides the kernel, on this length's q and k."""
        profile = key_block_profile(q, k, head_dim**-0.5)
        pattern = block_pattern(profile, "fixed", 0.15, 0.95)
        row_scores = block_mean_scores(q, k, head_dim**-0.5)
        parts = {
            "key_block_profile": lambda: key_block_profile(q, k, head_dim**-0.5),
            "block_pattern fixed 0.15": lambda: block_pattern(profile, "fixed", 0.15, 0.95),
            "block_pattern adaptive 0.95": lambda: block_pattern(profile, "adaptive", 0.15, 0.95),
            "to_block_mask": lambda: to_block_mask(pattern, n),
            "block_mean_scores": lambda: block_mean_scores(q, k, head_dim**-0.5),
            "row_block_pattern fixed 0.15": lambda: row_block_pattern(row_scores, "fixed", 0.15, 0.95),
        }
        for part, fn in parts.items():
            results["components"].append({"tokens": n, "part": part, "ms": timed_ms(fn, args.reps, cuda)})
            save()

    def sweep_kernel_options(n: int) -> None:
        """Each candidate checked at `check_len`, then timed at `n` (a fresh compile each)."""
        small, large = qkv(check_len), qkv(n)
        small_pattern = random_pattern(-(-check_len // BLOCK), heads, 0.3, device)
        reference = F.scaled_dot_product_attention(*small, attn_mask=token_mask(small_pattern, check_len), enable_gqa=True)
        pattern = random_pattern(-(-n // BLOCK), heads, 0.15, device)
        mask = to_block_mask(pattern, n)
        for candidate in KERNEL_CANDIDATES:
            tried = {**options, **candidate}
            row = {"tokens": n, "options": tried, "density": round(pattern_share(pattern).item(), 3), "error": None, "ms": None}
            torch._dynamo.reset()
            run = torch.compile(flex_attention) if cuda else flex_attention
            try:
                got = run(*small, block_mask=to_block_mask(small_pattern, check_len), enable_gqa=True, kernel_options=tried)
                row["error"] = f"{(got.float() - reference.float()).abs().max().item():.2e}"
                row["ms"] = round(timed_ms(lambda: run(*large, block_mask=mask, enable_gqa=True, kernel_options=tried), args.reps, cuda), 3)  # noqa: B023
            except Exception as error:  # noqa: BLE001 (a candidate the compiler rejects is a result)
                row["error"] = f"{type(error).__name__}: {str(error).splitlines()[0][:160] if str(error) else ''}"
            results["sweep"].append(row)
            save()
        timed = [row for row in results["sweep"] if row["ms"] is not None and float(row["error"]) < 0.05]
        if timed:
            best = min(timed, key=lambda row: row["ms"])
            with open(os.path.join(args.out, "best_kernel_options.json"), "w") as handle:
                json.dump(best["options"], handle)
            print(f"fastest kernel options: {json.dumps(best['options'])} ({best['ms']} ms)")

    for n in lengths:
        time_length(n)
        if cuda:
            torch.cuda.empty_cache()
    if args.sweep:
        sweep_kernel_options(lengths[-1])
    print(open(os.path.join(args.out, "table.md")).read())
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
