"""Flags that several subcommands share, defined once."""

from __future__ import annotations

import argparse
import re

from ..config import SlimConfig, load_config_file
from ..errors import UserError

_LENGTH = re.compile(r"^\s*(\d+)\s*([kK]?)\s*$")


def add_model_options(parser: argparse.ArgumentParser) -> None:
    """`--model`, `--device`, `--dtype`."""
    parser.add_argument(
        "--model",
        default="default",
        help="'default' (embedded SmolLM2-135M), a local HF folder, or a .gguf file",
    )
    parser.add_argument("--device", default="auto", help="auto | cpu | cuda | cuda:N")
    parser.add_argument("--dtype", default="auto", help="auto (bf16 on CUDA, fp32 on CPU) | float32 | bfloat16 | float16")


def add_parallel_options(parser: argparse.ArgumentParser) -> None:
    """`--tp N`: run under torchrun on N tensor-parallel ranks (one per GPU)."""
    parser.add_argument(
        "--tp",
        type=int,
        metavar="N",
        help="tensor parallelism over N GPUs of this host: relaunches the command under "
        "`torchrun --nproc-per-node N -m sliminfer` (gloo ranks when there is no GPU)",
    )


def add_config_options(parser: argparse.ArgumentParser) -> None:
    """`--config FILE.json` and repeatable `--set key=value`."""
    parser.add_argument("--config", metavar="FILE.json", help="SlimConfig keys as a JSON object")
    parser.add_argument(
        "--set",
        dest="overrides",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="override one config key, e.g. --set keep_schedule=8:0.25,16:0.15 (repeatable)",
    )


def resolve_config(args: argparse.Namespace, base: SlimConfig) -> SlimConfig:
    """The model's preset, then `--config`, then `--set`, each validated."""
    config = load_config_file(args.config, base=base) if args.config else base
    return config.with_overrides(args.overrides)


def spelled_command(subcommand: str, args: argparse.Namespace, flags: tuple[str, ...]) -> list[str]:
    """The effective command, for result files: `sliminfer SUBCOMMAND`, each of `flags` that
    has a value spelled out (`new_tokens` -> `--new-tokens`), then `--config` and the `--set`s.
    Rebuilt from the parsed arguments, so it is right however the CLI was invoked."""
    command = ["sliminfer", subcommand]
    for flag in (*flags, "config"):
        value = getattr(args, flag)
        if value not in (None, ""):
            command += [f"--{flag.replace('_', '-')}", str(value)]
    return command + [item for override in args.overrides for item in ("--set", override)]


def parse_lengths(text: str) -> list[int]:
    """'8k,16k,1000' -> [8192, 16384, 1000] (k = 1024), ascending and without duplicates."""
    lengths = set()
    for item in text.split(","):
        match = _LENGTH.match(item)
        if not match or int(match.group(1)) == 0:
            raise UserError(f"--lengths item {item!r}: expected a positive token count like 8192 or 8k")
        lengths.add(int(match.group(1)) * (1024 if match.group(2) else 1))
    return sorted(lengths)
