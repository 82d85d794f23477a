"""`sliminfer` entry point: parses the subcommand, runs it, maps user errors to exit code 2.

Each subcommand module exposes `add_parser(subparsers)` and `run(args) -> int`. Modules are
imported lazily so `sliminfer info` does not pay for the server's or the plotter's imports.
"""

from __future__ import annotations

import argparse
import importlib
import logging
import sys

from transformers.utils import logging as hf_logging

from ..errors import UserError

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


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    hf_logging.disable_progress_bar()
    logging.basicConfig(
        level=logging.DEBUG if args.verbose else logging.WARNING,
        format="%(levelname)s %(name)s: %(message)s",
        stream=sys.stderr,
    )
    try:
        return args.run(args)
    except UserError as exc:
        print(f"sliminfer {args.command}: error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        return 130


if __name__ == "__main__":
    sys.exit(main())
