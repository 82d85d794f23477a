"""TTFT of several keep schedules against plain HF, in one process: the speed side of the Pareto plot.

Run on the GPU machine as `PYTHONPATH=src python3 benchmarks/pareto_gpu.py --out $OUT/pareto`.
Llama-3.1-8B architecture with random bf16 weights: speed only (the accuracy side of each
schedule is measured on the embedded model by `sliminfer eval`, see EVAL.md).
"""

from __future__ import annotations

import argparse
import os
import statistics

import torch

from sliminfer.bench.flops import ideal_speedup
from sliminfer.bench.harness import alternate, timed, warm_up
from sliminfer.bench.prompts import TextPrompts
from sliminfer.bench.random_models import RANDOM_WEIGHTS_NOTE, build_random_model
from sliminfer.envinfo import environment
from sliminfer.generate import SamplingParams, generate
from sliminfer.models import ModelShape
from sliminfer.report import markdown_table, write_json

SCHEDULES = {
    "P8 keep .25 (default)": [],
    "P8 keep .25 then .1 at 16": ["keep_schedule=8:0.25,16:0.1"],
    "P8 keep .1": ["keep_schedule=8:0.1"],
    "P6 keep .25": ["preserve_layers=6", "keep_schedule=6:0.25"],
    "P4 keep .25": ["preserve_layers=4", "keep_schedule=4:0.25"],
}


def measure(loaded, ids: list[int], repeats: int) -> list[dict]:
    """hf TTFT and each schedule's TTFT on `ids`, alternating after one warm-up round."""
    input_ids = torch.tensor([ids], device=loaded.device)
    one_token = SamplingParams(max_new_tokens=1, ignore_eos=True)
    kept: dict[str, list[int]] = {}

    def hf() -> float:
        with torch.inference_mode():
            return timed(lambda: loaded.model(input_ids=input_ids, logits_to_keep=1), loaded.device)[0]

    def slim(overrides: list[str], name: str) -> float:
        result = generate(loaded, ids, config=loaded.default_config.with_overrides(overrides), sampling=one_token)
        kept[name] = result.kept_tokens_per_layer
        return result.ttft_s

    calls = {"hf": hf} | {name: (lambda o=o, n=name: slim(o, n)) for name, o in SCHEDULES.items()}
    warm_up(calls, 1)
    samples = alternate(calls, {name: repeats for name in calls})
    hf_s = statistics.median(samples["hf"])
    return [
        {"length": len(ids), "schedule": name, "overrides": SCHEDULES[name], "ttft_s": statistics.median(samples[name]),
         "hf_ttft_s": hf_s, "speedup": hf_s / statistics.median(samples[name]), "samples": samples[name],
         "kept_tokens_per_layer": kept[name]}
        for name in SCHEDULES
    ]


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--out", default=os.environ.get("OUT", "."))
    parser.add_argument("--lengths", default="32768,131072")
    parser.add_argument("--repeats", type=int, default=2)
    args = parser.parse_args()
    os.makedirs(args.out, exist_ok=True)
    loaded = build_random_model("llama-3.1-8b")
    shape = ModelShape.from_hf_config(loaded.model.config)
    prompts = TextPrompts(vocab_size=loaded.model.config.vocab_size)
    rows, results = [], {"environment": environment(loaded.device), "note": RANDOM_WEIGHTS_NOTE, "cells": []}
    for length in (int(n) for n in args.lengths.split(",")):
        cells = measure(loaded, prompts.ids(length), args.repeats)
        for cell in cells:
            cell["ideal_speedup"] = ideal_speedup(shape, length, cell["kept_tokens_per_layer"])
            rows.append([length, cell["schedule"], f"{cell['hf_ttft_s']:.3f}", f"{cell['ttft_s']:.3f}",
                         f"{cell['speedup']:.2f}x", f"{cell['ideal_speedup']:.2f}x"])
            print(rows[-1], flush=True)
        results["cells"] += cells
        write_json(os.path.join(args.out, "results.json"), results)
    table = markdown_table(["prompt tokens", "schedule", "hf TTFT s", "slim TTFT s", "speedup", "FLOP-ideal"], rows)
    with open(os.path.join(args.out, "table.md"), "w", encoding="utf-8") as handle:
        handle.write(f"{RANDOM_WEIGHTS_NOTE}; {results['environment']['device']}\n\n{table}")
    print(table)


if __name__ == "__main__":
    main()
