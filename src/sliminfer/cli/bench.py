"""`sliminfer bench`: TTFT, decode and end-to-end time, memory and FLOPs vs prompt length."""

from __future__ import annotations

import argparse
import os
import sys

from .. import parallel
from .options import (
    add_config_options,
    add_model_options,
    add_parallel_options,
    parse_lengths,
    resolve_config,
    spelled_command,
)

EPILOG = """\
--model also takes llama-3.1-8b, llama-3.1-70b or qwen2.5-7b: the public architecture with random weights,
built on the device (speed figures only; every row says so).

Methods: hf = plain transformers model.generate with SDPA (no sliminfer code), full = sliminfer
without pruning, slim = sliminfer with the config's pruning, slim[key=value;...] = slim with
overrides on top (as in `sliminfer eval --methods`), e.g. --methods "hf,slim,slim[keep_schedule=8:0.1]".
They alternate call by call.

Results go to OUT/results.json (raw samples, config, versions, device), OUT/table.md and
OUT/ttft.png, OUT/speedup.png. With --tp N (or under torchrun) the model is sharded over N GPUs,
rank 0 writes the results and the device column reads "N x GPU". Every call is saved at once; rerunning the same command skips
what is measured, so a long matrix can be split over several invocations (e.g. one per length).
"""


def add_parser(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        "bench",
        help="benchmark hf / full / slim over prompt lengths",
        description=__doc__.split(":", 1)[1].strip(),
        epilog=EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    add_model_options(parser)
    add_parallel_options(parser)
    parser.add_argument(
        "--lengths", default="1k,2k,4k", help="prompt lengths in tokens, k = 1024 (default 1k,2k,4k)"
    )
    parser.add_argument(
        "--methods", default="hf,full,slim", help="comma-separated: hf, full, slim, slim[key=value;...] (default hf,full,slim)"
    )
    parser.add_argument("--new-tokens", type=int, default=128, help="tokens generated per call (default 128)")
    parser.add_argument("--repeats", type=int, default=5, help="timed calls per (length, method) (default 5)")
    parser.add_argument(
        "--warmup",
        type=int,
        default=1,
        help="untimed calls per method per length, each the full measured call (default 1)",
    )
    parser.add_argument("--seed", type=int, default=0, help="picks the prompt text (default 0)")
    parser.add_argument(
        "--out", required=True, metavar="DIR", help="output folder (created; reused to resume)"
    )
    add_config_options(parser)
    parser.set_defaults(run=run)


def run(args: argparse.Namespace) -> int:
    from tqdm import tqdm

    from ..bench.runner import BenchSpec, load_bench_model, run_bench
    from ..methods import KINDS, parse_methods

    lengths = parse_lengths(args.lengths)
    loaded = load_bench_model(args.model, args.device, args.dtype)
    config = resolve_config(args, loaded.default_config)
    spec = BenchSpec(
        lengths=lengths,
        methods=parse_methods(args.methods, config, tuple(KINDS)),
        new_tokens=args.new_tokens,
        repeats=args.repeats,
        warmup=args.warmup,
        seed=args.seed,
    )
    os.makedirs(args.out, exist_ok=True)
    results = run_bench(
        loaded,
        config,
        spec,
        args.out,
        command=command_line(args),
        progress=lambda total: tqdm(
            total=total, file=sys.stderr, unit="call", dynamic_ncols=True, disable=not parallel.is_main()
        ),
    )
    if not parallel.is_main():
        return 0
    with open(os.path.join(args.out, "table.md"), encoding="utf-8") as handle:
        print(handle.read(), end="")
    print(f"\nresults: {results.path}")
    return 0


def command_line(args: argparse.Namespace) -> list[str]:
    """The effective command, every option spelled out, for results.json and table.md."""
    flags = ("model", "device", "dtype", "lengths", "methods", "new_tokens", "repeats", "warmup", "seed", "out")
    return spelled_command("bench", args, flags)
