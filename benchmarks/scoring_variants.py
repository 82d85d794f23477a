"""Which way of scoring finds the question's blocks best? One probe per scoring variant.

For each variant (head aggregation, neighbour pooling, unit pooling, window, and how several
score layers combine) this runs `sliminfer.calibration`'s probe on the same needle prompts and
reports: per layer, the needle recall of one cut keeping 25%; the recall of the old default
schedule (cut at a quarter of the depth, scored by the layer before it); and the cheapest
schedule at the target recall with its prefill FLOP share at the reference length. The winner
is what `calibrate` should use (its `--set` overrides are printed).

    python benchmarks/scoring_variants.py --model PATH --device cuda --dtype bfloat16 \
        --lengths 8k,16k,32k --prompts 9 --out variants.json
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import sys
import time

from sliminfer.calibration.probe import build_probe_prompts, probe
from sliminfer.calibration.search import candidates, recall
from sliminfer.cli.options import parse_lengths
from sliminfer.envinfo import environment
from sliminfer.loading import load_model
from sliminfer.models import ModelShape

VARIANTS: dict[str, list[str]] = {
    "base (mean heads, score_max, window 32)": [],
    "heads max": ["head_aggregation=max"],
    "heads top-2": ["head_aggregation=topk", "head_topk=2"],
    "neighbour pool 3": ["unit_pool_kernel=3"],
    "key_mean units (paper)": ["unit_pooling=key_mean"],
    "window 64": ["window=64"],
}
COMBINES = ("max", "sum")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--model", required=True)
    parser.add_argument("--device", default="auto")
    parser.add_argument("--dtype", default="auto")
    parser.add_argument("--lengths", default="8k,16k,32k")
    parser.add_argument("--prompts", type=int, default=9)
    parser.add_argument("--target-recall", type=float, default=0.97)
    parser.add_argument("--reference-length", default="32k")
    parser.add_argument("--out", required=True)
    args = parser.parse_args()
    loaded = load_model(args.model, device=args.device, dtype=args.dtype)
    lengths = [n for n in parse_lengths(args.lengths) if n <= loaded.max_context]
    shape = ModelShape.from_hf_config(loaded.model.config)
    reference = min(parse_lengths(args.reference_length)[0], loaded.max_context)
    old_cut = max(1, round(shape.layers / 4))
    prompts = build_probe_prompts(loaded, lengths, args.prompts)
    rows = []
    for name, overrides in VARIANTS.items():
        base = loaded.default_config.with_overrides(overrides)
        start = time.perf_counter()
        probed = probe(loaded, base, prompts)
        probe_s = time.perf_counter() - start
        for combine in COMBINES:
            config = dataclasses.replace(base, score_combine=combine)
            found, singles = candidates(probed, config, shape, reference)
            reaching = [c for c in found if c.recall >= args.target_recall]
            cheapest = min(reaching, key=lambda c: c.flop_fraction, default=None)
            row = {
                "variant": name,
                "overrides": overrides + [f"score_combine={combine}"],
                "probe_s": round(probe_s, 1),
                "layer_recall_at_0.25": [round(v, 3) for v in singles[0.25]],
                "old_default_recall": round(recall(probed, [(0.25, (old_cut - 1,))], config), 4),
                "cheapest_at_target": cheapest.to_dict() if cheapest else None,
                "best_recall": round(max(c.recall for c in found), 4),
            }
            rows.append(row)
            cheapest = row["cheapest_at_target"]
            print(
                f"{name:42s} combine={combine:3s} old-default recall {row['old_default_recall']:.3f}  "
                f"cheapest@{args.target_recall}: {cheapest}",
                file=sys.stderr,
            )
    record = {
        "model": loaded.name,
        "lengths": lengths,
        "prompts_per_length": args.prompts,
        "target_recall": args.target_recall,
        "reference_tokens": reference,
        "old_default": f"keep_schedule={old_cut}:0.25 scored by layer {old_cut - 1}",
        "environment": environment(loaded.device),
        "rows": rows,
    }
    with open(args.out, "w", encoding="utf-8") as handle:
        json.dump(record, handle, indent=1)
    print(render(record))
    return 0


def render(record: dict) -> str:
    lines = [
        f"Scoring variants on {record['model']} ({record['prompts_per_length']} probe prompts x {record['lengths']}; "
        f"FLOPs at {record['reference_tokens']} tokens; old default {record['old_default']})",
        "",
        "| variant | combine | old-default recall | best recall | cheapest schedule at target | score layers | FLOP share |",
        "|---|---|---|---|---|---|---|",
    ]
    for row in record["rows"]:
        cheapest = row["cheapest_at_target"] or {}
        lines.append(
            f"| {row['variant']} | {row['overrides'][-1].split('=')[1]} | {row['old_default_recall']:.3f} | "
            f"{row['best_recall']:.3f} | {cheapest.get('keep_schedule', '-')} | {cheapest.get('score_layers', '-')} | "
            f"{cheapest.get('flop_fraction', '-')} |"
        )
    return "\n".join(lines) + "\n"


if __name__ == "__main__":
    sys.exit(main())
