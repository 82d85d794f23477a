"""`sliminfer demo`: the main job on the embedded model, full vs slim, side by side.

A pass key is hidden in a long filler text; both methods must find it, and the table shows
what pruning bought: TTFT, total time, tokens each layer computed, KV cache bytes.
"""

from __future__ import annotations

import argparse
import sys

from ..eval.sample import render
from ..eval.scorers import score
from ..eval.synthetic import make_sample
from ..generate import SamplingParams, encode_prompt, generate
from ..loading import load_model
from ..methods import GENERATE_KINDS
from ..report import markdown_table
from .options import add_config_options, add_model_options, resolve_config

DEMO_SAMPLE_INDEX = 1  # needle at half depth


def add_parser(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser("demo", help="find a pass key in ~4k tokens with full and slim prefill")
    add_model_options(parser)
    parser.add_argument("--length", type=int, default=4096, help="prompt length in tokens")
    add_config_options(parser)
    parser.set_defaults(run=run)


def kept_summary(kept: list[int]) -> str:
    """Runs of equal counts, e.g. 'L0-7: 4071, L8-29: 832'."""
    runs: list[tuple[int, int, int]] = []
    for layer, count in enumerate(kept):
        if runs and runs[-1][2] == count:
            runs[-1] = (runs[-1][0], layer, count)
        else:
            runs.append((layer, layer, count))
    return ", ".join(f"L{a}-{b}: {c}" if a != b else f"L{a}: {c}" for a, b, c in runs)


def run(args: argparse.Namespace) -> int:
    loaded = load_model(args.model, device=args.device, dtype=args.dtype)
    config = resolve_config(args, loaded.default_config)
    sample = make_sample(
        "passkey", args.length, DEMO_SAMPLE_INDEX, lambda s: len(encode_prompt(loaded, render(s)))
    )
    prompt = render(sample)
    sampling = SamplingParams(max_new_tokens=sample.max_new_tokens)
    rows, found_by_all = [], True
    for method in GENERATE_KINDS[::-1]:
        print(f"running {method} ...", file=sys.stderr)
        result = generate(loaded, prompt, method=method, config=config, sampling=sampling)
        found = score(sample.metric, result.text, sample.expected) == 1.0
        found_by_all &= found
        rows.append(
            [
                method,
                result.prompt_tokens,
                f"{result.ttft_s:.2f}",
                f"{result.total_s:.2f}",
                kept_summary(result.kept_tokens_per_layer),
                f"{result.kv_cache_bytes / 2**20:.1f}",
                repr(result.text.strip()[:24]),
                "yes" if found else "NO",
            ]
        )
    print(f"pass key {sample.expected[0]} hidden at depth {sample.depth} of a {args.length}-token prompt; "
          f"slim config: {config.to_dict()}\n")
    print(markdown_table(
        ["method", "prompt tokens", "TTFT s", "total s", "tokens computed per layer", "KV MiB", "answer", "found"],
        rows,
    ))
    ttft = {row[0]: float(row[2]) for row in rows}
    print(f"slim TTFT speedup: {ttft['full'] / ttft['slim']:.2f}x")
    return 0 if found_by_all else 1
