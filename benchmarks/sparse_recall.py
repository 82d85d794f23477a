"""How much of the real attention does a block-sparse pattern keep? (issue 12, CPU or GPU)

The adaptive mode lost RULER answers on real models (EVAL.md section 0.6). This script asks
where: on one real prompt it records each layer's queries and keys (unpruned forward), computes
the *true* attention mass of sampled query blocks per key block, and reports the share of that
mass kept by patterns built from different estimates, at the same density:
- `last64`: the library's estimate, the last 64 queries' attention per key block, one profile
  per head for every row (`sparse.key_block_profile`);
- `pooled`: per query block, the mean query of the block against each key block's mean key
  (a per-row estimate, as MInference / FlexPrefill pool; the library's
  `sparse.block_mean_scores`, `sparse_estimate=block_means`);
- `oracle`: the true mass itself (the best any estimate can do at that density).
Forced blocks (sink, band, diagonal) are kept in every pattern.

With `--masses`, also the adaptive mode itself (`sparse_estimate=block_means`): per
`sparse_mass`, the density it picks on the sampled rows and the true attention it keeps. Models
whose block-mean estimates are flatter pick denser patterns at the same mass, so the mass that
keeps a given share of the *true* attention differs per model.

Usage: python3 benchmarks/sparse_recall.py --model Q.gguf [--task niah_multivalue] [--length 8k]
       [--layers 0-7] [--densities 0.15,0.3,0.5] [--masses 0.8,0.9,0.95] [--out recall.json]
"""

from __future__ import annotations

import argparse
import json
import math

import torch
from transformers import AttentionInterface

from sliminfer.attention.sparse import (
    LOCAL_BAND,
    SPARSE_BLOCK,
    block_mean_scores,
    causal_and_forced,
    key_block_profile,
    row_block_pattern,
)
from sliminfer.cli.options import parse_lengths
from sliminfer.eval.backend import ModelBackend
from sliminfer.eval.ruler import ruler_source
from sliminfer.loading import load_model

ROWS = 8
"""Query blocks sampled per layer, evenly over the prompt (the last one excluded: it is dense)."""


def record_qk(model, ids: torch.Tensor, layers: set[int]) -> dict[int, tuple[torch.Tensor, torch.Tensor]]:
    """Run the stock model once; each layer in `layers` -> its (query, key) `[1, heads, n, d]`."""
    seen: dict[int, tuple[torch.Tensor, torch.Tensor]] = {}

    def recording(module, query, key, value, attention_mask, scaling=None, **kwargs):
        if module.layer_idx in layers:
            seen[module.layer_idx] = (query.detach(), key.detach())
        out = torch.nn.functional.scaled_dot_product_attention(
            query, key, value, is_causal=True, scale=scaling, enable_gqa=True
        )
        return out.transpose(1, 2).contiguous(), None

    AttentionInterface.register("sliminfer_record", recording)
    previous = model.config._attn_implementation
    model.set_attn_implementation("sliminfer_record")
    try:
        with torch.inference_mode():
            model(ids)
    finally:
        model.set_attn_implementation(previous)
    return seen


def true_mass(query: torch.Tensor, key: torch.Tensor, row: int, scaling: float) -> torch.Tensor:
    """`[heads, n_blocks]`: query block `row`'s causal attention, summed per key block, normalized."""
    n, group = key.shape[2], query.shape[1] // key.shape[1]
    start, end = row * SPARSE_BLOCK, min((row + 1) * SPARSE_BLOCK, n)
    q = query[0, :, start:end].float()
    k = key[0].float().repeat_interleave(group, 0)
    scores = (q @ k.transpose(-1, -2)) * scaling
    causal = torch.arange(n)[None, :] <= torch.arange(start, end)[:, None]
    probs = scores.masked_fill(~causal, float("-inf")).softmax(-1).sum(1)
    n_blocks = math.ceil(n / SPARSE_BLOCK)
    padded = torch.zeros(probs.shape[0], n_blocks * SPARSE_BLOCK).index_copy_(1, torch.arange(n), probs)
    mass = padded.view(probs.shape[0], n_blocks, SPARSE_BLOCK).sum(-1)
    return mass / mass.sum(-1, keepdim=True)


def kept_mass(truth: torch.Tensor, estimate: torch.Tensor, forced: torch.Tensor, row: int, density: float) -> float:
    """Mean over heads of the true mass in the forced blocks (`[n_blocks, n_blocks]` bool, from
    `sparse.causal_and_forced`) plus the `density` share of the row's causal blocks the estimate
    ranks highest."""
    visible = row + 1
    forced = forced[row, :visible]
    count = math.ceil(density * visible)
    ranked = estimate[:, :visible].masked_fill(forced, float("inf")).argsort(-1, descending=True)
    keep = torch.zeros(truth.shape[0], visible, dtype=torch.bool).scatter_(1, ranked[:, : max(count, int(forced.sum()))], True)
    return float((truth[:, :visible] * keep).sum(-1).mean())


def adaptive_row(truth: torch.Tensor, pattern: torch.Tensor, row: int) -> tuple[float, float]:
    """`(density, kept)` of query block `row` under an adaptive `pattern` `[heads, n_blocks,
    n_blocks]` bool: the share of its causal key blocks computed and the true mass (`truth`
    `[heads, n_blocks]`) in them, each a mean over heads."""
    chosen = pattern[:, row, : row + 1]
    return float(chosen.float().mean()), float((truth[:, : row + 1] * chosen).sum(-1).mean())


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--model", required=True)
    parser.add_argument("--task", default="niah_multivalue")
    parser.add_argument("--length", default="8k")
    parser.add_argument("--layers", default="0-7")
    parser.add_argument("--densities", default="0.15,0.3,0.5")
    parser.add_argument("--masses", default="", help="sparse_mass values of the adaptive mode to report")
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--dtype", default="float32")
    parser.add_argument("--out")
    args = parser.parse_args()
    first, last = (int(x) for x in args.layers.split("-"))
    densities = [float(d) for d in args.densities.split(",")]
    masses = [float(m) for m in args.masses.split(",") if m]
    loaded = load_model(args.model, device=args.device, dtype=args.dtype)
    backend = ModelBackend(loaded, chat=True)
    sample = ruler_source(backend.count_tokens, seed=0).sample(args.task, parse_lengths(args.length)[0], 0)
    ids = loaded.tokenizer(backend.render(sample), return_tensors="pt", add_special_tokens=False)["input_ids"]
    seen = record_qk(loaded.model, ids.to(loaded.device), set(range(first, last + 1)))
    n_blocks = math.ceil(ids.shape[1] / SPARSE_BLOCK)
    rows = [int(r) for r in torch.linspace(LOCAL_BAND + 2, n_blocks - 2, ROWS).round().tolist()]
    report = {"model": args.model, "task": args.task, "tokens": ids.shape[1], "rows": rows, "layers": {}}
    print(f"{ids.shape[1]} tokens, query blocks {rows}\n")
    print("| layer | density | last64 | pooled | oracle |\n|---|---|---|---|---|")
    for layer, (query, key) in sorted(seen.items()):
        query, key = query.cpu(), key.cpu()
        scaling = query.shape[-1] ** -0.5
        profile = key_block_profile(query, key, scaling)[0].float()
        pooled = block_mean_scores(query, key, scaling)[0]
        _, forced = causal_and_forced(n_blocks, query.device)
        truths = {row: true_mass(query, key, row, scaling) for row in rows}  # the costly part: once per layer
        per_density = {}
        for density in densities:
            sums = {"last64": 0.0, "pooled": 0.0, "oracle": 0.0}
            for row, truth in truths.items():
                estimates = {"last64": profile, "pooled": pooled[:, row], "oracle": truth}
                for name, estimate in estimates.items():
                    sums[name] += kept_mass(truth, estimate, forced, row, density) / len(rows)
            per_density[density] = sums
            print(f"| {layer} | {density} | {sums['last64']:.3f} | {sums['pooled']:.3f} | {sums['oracle']:.3f} |", flush=True)
        report["layers"][layer] = per_density
        for mass in masses:
            pattern = row_block_pattern(pooled[None], "adaptive", 0.0, mass)[0]
            pairs = [adaptive_row(truth, pattern, row) for row, truth in truths.items()]
            density, kept = (sum(values) / len(rows) for values in zip(*pairs, strict=True))
            report.setdefault("adaptive", {}).setdefault(str(mass), {})[layer] = {"density": density, "kept": kept}
            print(f"| {layer} | adaptive mass {mass}: density {density:.3f} | | kept {kept:.3f} | |", flush=True)
    if args.out:
        with open(args.out, "w", encoding="utf-8") as handle:
            json.dump(report, handle, indent=1)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
