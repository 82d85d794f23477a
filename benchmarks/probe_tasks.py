"""Per task and layer: which layers' window attention finds each probe task's needles?

`calibrate` ranks schedules by needle recall over all probe tasks together; this breaks the same
evidence down by task, to see which kinds of needle an early layer finds (numbers matched by
their key) and which need depth (the names along a variable chain). Runs the probe unpruned on
`--prompts` prompts per length (cycling `PROBE_TASKS`) and writes, per task and keep fraction,
each layer's recall as one cut's only score layer.

Usage: python3 benchmarks/probe_tasks.py --model PATH [--lengths 8k] [--prompts 5]
       [--device cpu] [--dtype float32] [--set unit_pool_kernel=3] --out FILE.json
"""

from __future__ import annotations

import argparse
import json
import time

from sliminfer.calibration.probe import build_probe_prompts, probe
from sliminfer.calibration.search import layer_recall
from sliminfer.cli.options import parse_lengths
from sliminfer.loading import load_model

KEEPS = (0.1, 0.25)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--model", required=True)
    parser.add_argument("--lengths", default="8k")
    parser.add_argument("--prompts", type=int, default=5)
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--dtype", default="float32")
    parser.add_argument("--set", action="append", default=[], metavar="KEY=VALUE")
    parser.add_argument("--out", required=True)
    args = parser.parse_args()
    loaded = load_model(args.model, device=args.device, dtype=args.dtype)
    base = loaded.default_config.with_overrides(args.set)
    start = time.perf_counter()
    probed = probe(loaded, base, build_probe_prompts(loaded, parse_lengths(args.lengths), args.prompts))
    result = {"model": loaded.name, "lengths": args.lengths, "prompts": args.prompts, "overrides": args.set,
              "probe_s": round(time.perf_counter() - start, 1), "recall": {}}
    for task in sorted({p.task for p in probed}):
        for keep, values in layer_recall([p for p in probed if p.task == task], base, KEEPS).items():
            result["recall"][f"{task}@{keep}"] = [round(value, 2) for value in values]
            print(task, keep, result["recall"][f"{task}@{keep}"], flush=True)
    with open(args.out, "w", encoding="utf-8") as handle:
        json.dump(result, handle, indent=1)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
