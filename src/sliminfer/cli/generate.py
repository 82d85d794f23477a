"""`sliminfer generate`: one prompt in, text streamed out (or one JSON object with --json)."""

from __future__ import annotations

import argparse
import json
import sys

from .. import parallel
from ..errors import UserError
from ..generate import SamplingParams, generate
from ..loading import load_model
from ..methods import GENERATE_KINDS
from ..schedule import UNPRUNED_NOTE
from .options import add_config_options, add_model_options, add_parallel_options, resolve_config


def add_parser(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        "generate", help="generate text for one prompt", formatter_class=argparse.ArgumentDefaultsHelpFormatter
    )
    add_model_options(parser)
    add_parallel_options(parser)
    source = parser.add_mutually_exclusive_group()
    source.add_argument("--prompt", help="prompt text (default: read stdin)")
    source.add_argument("--prompt-file", metavar="FILE", help="read the prompt from FILE")
    parser.add_argument("--max-new-tokens", type=int, default=128, help="tokens to generate at most")
    parser.add_argument("--method", choices=GENERATE_KINDS, default="slim", help="slim prunes; full is the plain model")
    parser.add_argument("--chat", action="store_true", help="wrap the prompt in the model's chat template")
    parser.add_argument("--temperature", type=float, default=0.0, help="0 = greedy")
    parser.add_argument("--top-p", type=float, default=1.0, help="nucleus sampling mass")
    parser.add_argument("--top-k", type=int, default=0, help="0 = no limit")
    parser.add_argument("--seed", type=int, help="sampling seed")
    parser.add_argument("--stop", action="append", default=[], help="stop string (repeatable)")
    parser.add_argument("--json", action="store_true", help="print one JSON object instead of streaming")
    add_config_options(parser)
    parser.set_defaults(run=run)


def read_prompt(args: argparse.Namespace) -> str:
    """The prompt from --prompt, --prompt-file or stdin."""
    if args.prompt is not None:
        return args.prompt
    if args.prompt_file is not None:
        try:
            with open(args.prompt_file, encoding="utf-8") as handle:
                return handle.read()
        except FileNotFoundError:
            raise UserError(f"prompt file {args.prompt_file!r} does not exist") from None
        except UnicodeDecodeError:
            raise UserError(f"prompt file {args.prompt_file!r} is not UTF-8 text") from None
    if sys.stdin is None or sys.stdin.isatty():
        raise UserError("no prompt: give --prompt, --prompt-file or text on stdin")
    return sys.stdin.read()


def run(args: argparse.Namespace) -> int:
    """Generate; under tensor parallelism rank 0 reads the prompt and prints, the others follow."""
    prompt = parallel.broadcast(read_prompt(args) if parallel.is_main() else None)
    sampling = SamplingParams(
        max_new_tokens=args.max_new_tokens,
        temperature=args.temperature,
        top_p=args.top_p,
        top_k=args.top_k,
        seed=args.seed,
        stop=tuple(args.stop),
    )
    loaded = load_model(args.model, device=args.device, dtype=args.dtype)
    config = resolve_config(args, loaded.default_config)
    on_text = None if args.json or not parallel.is_main() else _print_now
    result = generate(loaded, prompt, method=args.method, config=config, sampling=sampling, chat=args.chat, on_text=on_text)
    if not parallel.is_main():
        return 0
    if args.json:
        print(json.dumps(result.to_dict()))
    else:
        print()
        for note in (result.finish_detail, result.sparse_prefill_note):
            if note:
                print(f"note: {note}", file=sys.stderr)
        label = result.method if result.pruned or result.method == "full" else f"{result.method}, {UNPRUNED_NOTE}"
        print(
            f"[{label}] prompt {result.prompt_tokens} tok, {result.new_tokens} new, "
            f"TTFT {result.ttft_s:.3f} s, total {result.total_s:.3f} s, "
            f"kept in last layer {result.kept_tokens_per_layer[-1]}, KV {result.kv_cache_bytes / 2**20:.1f} MiB",
            file=sys.stderr,
        )
    return 0


def _print_now(text: str) -> None:
    sys.stdout.write(text)
    sys.stdout.flush()
