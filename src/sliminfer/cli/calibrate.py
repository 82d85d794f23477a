"""`sliminfer calibrate`: choose score layers, cuts and keeps for a model, verified against full."""

from __future__ import annotations

import argparse
import sys

from .options import add_config_options, add_model_options, resolve_config, spelled_command

EPILOG = """\
Probes the model on synthetic needle prompts (its own seed and haystack, not an evaluation's
data): every layer's window attention ranks the prompt's blocks, and each candidate schedule
(cut layer x keep fraction x score layers before the cut; also two cuts) is scored by the share
of answer needles it keeps, by its margin (the share it still keeps when every cut keeps half as
much) and by its prefill FLOPs at --reference-length. Among those within --max-flops that reach
--target-recall, the one with the largest margin (then the cheapest) is checked on --verify fresh
prompts, spread over the lengths, against full; if it answers fewer, the next one that keeps more
tokens somewhere is tried (up to --tries). Writes --out (read it back with `--config FILE` in
generate, bench, eval and serve) and prints the recall-vs-FLOPs front.
"""


COMMAND_FLAGS = (
    "model", "device", "dtype", "out", "lengths", "prompts", "verify", "target_recall", "max_flops",
    "reference_length", "tries",
)


def add_parser(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        "calibrate",
        help="choose a pruning schedule for a model (probe, search, verify) and save it",
        description=__doc__.split(":", 1)[1].strip(),
        epilog=EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    add_model_options(parser)
    parser.add_argument("--out", default="preset.json", metavar="FILE.json", help="where to write the preset (default preset.json)")
    parser.add_argument("--lengths", default=None, help="probe prompt lengths (default 8k,16k,32k within the model's context)")
    parser.add_argument("--prompts", type=int, default=15, help="probe prompts per length, cycling the probe tasks (default 15)")
    parser.add_argument("--verify", type=int, default=15, help="verification prompts, spread over the lengths and tasks (default 15)")
    parser.add_argument("--target-recall", type=float, default=0.97, help="needle recall to reach (default 0.97)")
    parser.add_argument(
        "--max-flops", type=float, default=0.5,
        help="FLOP budget: largest prefill FLOP share of full at --reference-length (default 0.5, a 2x FLOP-ideal speedup)",
    )
    parser.add_argument("--reference-length", default="32k", help="length whose FLOPs rank candidates (default 32k, capped at the context)")
    parser.add_argument("--tries", type=int, default=3, help="candidates to verify before giving up (default 3)")
    add_config_options(parser)
    parser.set_defaults(run=run)


def run(args: argparse.Namespace) -> int:
    from tqdm import tqdm

    from ..calibration import CalibrationSpec, calibrate, write_preset
    from ..calibration.run import check_output_path
    from ..errors import UserError
    from ..loading import load_model
    from .options import parse_lengths

    if min(args.prompts, args.verify, args.tries) < 1:
        raise UserError(f"--prompts {args.prompts}, --verify {args.verify}, --tries {args.tries}: each must be >= 1")
    for flag, value in (("--target-recall", args.target_recall), ("--max-flops", args.max_flops)):
        if not 0.0 < value <= 1.0:
            raise UserError(f"{flag} {value}: must be in (0, 1]")
    check_output_path(args.out)
    loaded = load_model(args.model, device=args.device, dtype=args.dtype)
    base = resolve_config(args, loaded.default_config)
    lengths = parse_lengths(args.lengths) if args.lengths else [n for n in (8192, 16384, 32768) if n <= loaded.max_context]
    spec = CalibrationSpec(
        lengths=tuple(lengths or [loaded.max_context]),
        per_length=args.prompts,
        verify_prompts=args.verify,
        target_recall=args.target_recall,
        max_flop_fraction=args.max_flops,
        reference_tokens=parse_lengths(args.reference_length)[0],
        max_tries=args.tries,
        command=spelled_command("calibrate", args, COMMAND_FLAGS),
    )
    bars = []

    def progress(total: int, phase: str):
        bar = tqdm(total=total, desc=phase, file=sys.stderr, dynamic_ncols=True)
        bars.append(bar)
        return lambda: bar.update(1)

    try:
        result = calibrate(loaded, base, spec, progress)
    finally:
        for bar in bars:
            bar.close()
    write_preset(args.out, result)
    print(render_front(result))
    print(f"\nwrote {args.out}: use it with --config {args.out}")
    return 0


def render_front(result) -> str:
    """The recall-vs-FLOPs front as a markdown table, the chosen schedule marked (and added
    when it is not on the front: a larger margin can cost FLOPs the front would not spend)."""
    chosen = result.chosen

    def row(candidate, mark: str) -> str:
        schedule = ",".join(f"{layer}:{keep}" for layer, keep in candidate.keep_schedule)
        scorers = ",".join("+".join(map(str, layers)) for layers in candidate.score_layers)
        return f"| {schedule} | {scorers} | {candidate.recall:.3f} | {candidate.flop_fraction:.3f} | {mark} |"

    def same(candidate) -> bool:
        return (candidate.keep_schedule, candidate.score_layers) == (chosen.keep_schedule, chosen.score_layers)

    mark = f"chosen (margin {chosen.margin:.3f})"
    lines = ["| keep schedule | score layers | needle recall | prefill FLOPs of full | |", "|---|---|---|---|---|"]
    lines += [row(candidate, mark if same(candidate) else "") for candidate in result.front]
    if not any(same(candidate) for candidate in result.front):
        lines.append(row(chosen, mark))
    checks = "; ".join(f"{v['schedule']}: slim {v['slim']:g} vs full {v['full']:g}" for v in result.verification)
    pins = f"decode pins (with a decode budget): pin_scores={result.config.pin_scores}"
    return "\n".join(lines) + f"\n\nverification ({len(result.verification[0]['prompts'])} prompts): {checks}\n{pins}"
