"""`sliminfer` entry point: parses the subcommand, runs it, maps user errors to exit code 2.

Each subcommand module exposes `add_parser(subparsers)` and `run(args) -> int`. Modules are
imported lazily so `sliminfer info` does not pay for the server's or the plotter's imports.
"""

from __future__ import annotations

import argparse
import importlib
import logging
import os
import sys

from transformers.utils import logging as hf_logging

from ..errors import UserError
from ..parallel import is_main, relaunch_with_torchrun, tp_size

SUBCOMMANDS = ("generate", "demo", "info", "bench", "eval", "calibrate", "serve")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="sliminfer", description="Long-context LLM inference with dynamic token pruning."
    )
    parser.add_argument("-v", "--verbose", action="store_true", help="debug logging on stderr")
    subparsers = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)
    for name in SUBCOMMANDS:
        importlib.import_module(f"{__package__}.{name}").add_parser(subparsers)
    return parser


TP_COMMANDS = ("generate",)
"""Subcommands that run on a tensor-parallel model (rank 0 does the I/O, the others follow)."""


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    argv = sys.argv[1:] if argv is None else argv
    args = parser.parse_args(argv)
    hf_logging.disable_progress_bar()
    logging.basicConfig(
        level=logging.DEBUG if args.verbose else logging.WARNING,
        format="%(levelname)s %(name)s: %(message)s",
        stream=sys.stderr,
    )
    try:
        if getattr(args, "tp", 1) != 1 or tp_size() > 1:
            return run_parallel(args, argv)
        return args.run(args)
    except UserError as exc:
        print(f"sliminfer {args.command}: error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        return 130


def run_parallel(args: argparse.Namespace, argv: list[str]) -> int:
    """`--tp N` relaunches under torchrun; under torchrun, rank 0 alone writes to stdout."""
    if args.command not in TP_COMMANDS:
        raise UserError(f"--tp / torchrun: only {list(TP_COMMANDS)} run tensor-parallel so far")
    if tp_size() == 1:
        return relaunch_with_torchrun(args.tp, args.device, [a for a in _without_tp(argv)])
    if args.tp not in (1, tp_size()):
        raise UserError(f"--tp {args.tp}: torchrun started {tp_size()} ranks")
    if not is_main():
        sys.stdout = open(os.devnull, "w")  # noqa: SIM115 (for the life of the process)
    return args.run(args)


def _without_tp(argv: list[str]) -> list[str]:
    """`argv` without `--tp N` / `--tp=N`."""
    out, skip = [], False
    for item in argv:
        if skip:
            skip = False
        elif item == "--tp":
            skip = True
        elif not item.startswith("--tp="):
            out.append(item)
    return out


if __name__ == "__main__":
    sys.exit(main())
