"""`sliminfer` entry point: parses the subcommand, runs it, maps user errors to exit code 2.

Each subcommand module exposes `add_parser(subparsers)` and `run(args) -> int`. Modules are
imported lazily so `sliminfer info` does not pay for the server's or the plotter's imports.
`--tp N` (generate, bench, serve) relaunches the same command under torchrun on N
tensor-parallel ranks.
"""

from __future__ import annotations

import argparse
import importlib
import logging
import subprocess
import sys

import torch
from transformers.utils import logging as hf_logging

from .. import parallel
from ..errors import UserError

SUBCOMMANDS = ("generate", "demo", "info", "bench", "eval", "calibrate", "serve")
TENSOR_PARALLEL_SUBCOMMANDS = ("generate", "bench", "serve")
"""The subcommands that run under torchrun, one tensor-parallel rank per process."""


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="sliminfer", description="Long-context LLM inference with dynamic token pruning."
    )
    parser.add_argument("-v", "--verbose", action="store_true", help="debug logging on stderr")
    subparsers = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)
    for name in SUBCOMMANDS:
        importlib.import_module(f"{__package__}.{name}").add_parser(subparsers)
    return parser


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    parser = build_parser()
    args = parser.parse_args(argv)
    hf_logging.disable_progress_bar()
    logging.basicConfig(
        level=logging.DEBUG if args.verbose else logging.WARNING,
        format="%(levelname)s %(name)s: %(message)s",
        stream=sys.stderr,
    )
    try:
        tp = getattr(args, "tp", None)
        if (parallel.launched() or tp not in (None, 1)) and args.command not in TENSOR_PARALLEL_SUBCOMMANDS:
            raise UserError(
                f"{args.command} does not run tensor-parallel yet: only "
                f"{' and '.join(TENSOR_PARALLEL_SUBCOMMANDS)} take --tp or run under torchrun"
            )
        if tp is not None and not parallel.launched():
            return launch_tensor_parallel(args, argv)
        if parallel.launched():
            parallel.init_process_group()
        return args.run(args)
    except UserError as exc:
        if parallel.is_main():
            print(f"sliminfer {args.command}: error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        return 130
    finally:
        if parallel.is_distributed():
            torch.distributed.destroy_process_group()


def launch_tensor_parallel(args: argparse.Namespace, argv: list[str]) -> int:
    """`--tp N` outside torchrun: check N against this host's GPUs and the model's heads, then run
    the same command without `--tp` under torchrun on N ranks; returns torchrun's exit code."""
    from ..bench.random_models import is_random_architecture, random_config
    from ..loading import load_config
    from ..models import ModelShape

    config = random_config(args.model) if is_random_architecture(args.model) else load_config(args.model)
    shape = ModelShape.from_hf_config(config)
    gpus = torch.cuda.device_count() if torch.cuda.is_available() else None
    parallel.check_tp(args.tp, shape.heads, shape.kv_heads, gpus)
    if args.tp == 1:
        return args.run(args)
    return subprocess.run(parallel.launch_command(args.tp, without_tp(argv))).returncode


def without_tp(argv: list[str]) -> list[str]:
    """`argv` without its `--tp N` / `--tp=N`."""
    kept, skip = [], False
    for item in argv:
        if skip:
            skip = False
        elif item == "--tp":
            skip = True
        elif not item.startswith("--tp="):
            kept.append(item)
    return kept


if __name__ == "__main__":
    sys.exit(main())
