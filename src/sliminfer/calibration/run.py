"""`calibrate`: probe a model, choose score layers, cuts and keeps, verify against full, save.

The choice is, among candidates within the FLOP budget (prefill FLOPs of full at the reference
length) whose probe recall reaches the target, the one with the largest margin (see `search`);
it must then answer at least as many verification prompts as full does (other seed, spread over
every probe length), or the next candidate that keeps more tokens somewhere is tried. Its
decode plan pins the blocks of the better finder among its first and deepest cuts' score layers
(`search.pin_source`). The preset file holds the
config under "config" (what `--config` reads) and the evidence under "calibration".
"""

from __future__ import annotations

import dataclasses
import datetime
import json
import os
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from ..config import SlimConfig
from ..envinfo import environment
from ..errors import UserError
from ..eval.backend import ModelBackend
from ..eval.scorers import score
from ..eval.synthetic import make_sample
from ..loading import LoadedModel
from ..methods import Method
from ..models import ModelShape
from ..schedule import LayerPlan
from .probe import PROBE_SEED, PROBE_TASKS, build_probe_prompts, probe
from .search import Candidate, candidates, pareto_front, pin_source, ranked_choices

MIN_CONTEXT = 4096
VERIFY_SEED = PROBE_SEED + 1


@dataclass(frozen=True)
class CalibrationSpec:
    """What to measure. `lengths` in tokens; `per_length` probe prompts at each."""

    lengths: tuple[int, ...]
    per_length: int = 15
    verify_prompts: int = 15
    target_recall: float = 0.97
    max_flop_fraction: float = 0.5
    reference_tokens: int = 32768
    max_tries: int = 3
    command: list[str] = field(default_factory=list)


@dataclass
class CalibrationResult:
    config: SlimConfig
    chosen: Candidate
    front: list[Candidate]
    layer_recall: dict[float, list[float]]
    verification: list[dict[str, Any]]
    record: dict[str, Any]


def check_output_path(path: str) -> None:
    """Fail before any work if `path` cannot be written (one line, not a late traceback)."""
    folder = os.path.dirname(os.path.abspath(path))
    if not os.path.isdir(folder):
        raise UserError(f"--out {path!r}: folder {folder!r} does not exist")
    if not os.access(folder, os.W_OK) or (os.path.exists(path) and not os.access(path, os.W_OK)):
        raise UserError(f"--out {path!r}: not writable")


def check_lengths(loaded: LoadedModel, lengths: tuple[int, ...]) -> None:
    if loaded.max_context < MIN_CONTEXT:
        raise UserError(
            f"model {loaded.name!r} has a context of {loaded.max_context} tokens: calibration needs >= {MIN_CONTEXT} "
            "(pruning pays off on long prompts only)"
        )
    too_long = [n for n in lengths if n > loaded.max_context]
    if too_long:
        raise UserError(f"--lengths {too_long}: longer than the model's context of {loaded.max_context} tokens")


def verify(
    loaded: LoadedModel,
    config: SlimConfig,
    lengths: list[int],
    prompts: int,
    on_step: Callable[[], None] | None = None,
) -> dict[str, Any]:
    """Full and `config` on `prompts` fresh needle prompts, cycling through `lengths` and then
    the probe tasks (so each length sees every task): each one's scores and the totals."""
    backend = ModelBackend(loaded, chat=bool(loaded.tokenizer.chat_template))
    methods = (Method("full", "full", None), Method("slim", "slim", config))
    rows = []
    for index in range(prompts):
        length = lengths[index % len(lengths)]
        task = PROBE_TASKS[(index // len(lengths)) % len(PROBE_TASKS)]
        sample = make_sample(task, length, index, backend.count_tokens, seed=VERIFY_SEED)
        row = {"task": sample.task, "length": length, "index": index}
        for method in methods:
            answer = backend.answer(sample, method)
            row[method.label] = score(sample.metric, answer.text, sample.expected)
            if on_step is not None:
                on_step()
        rows.append(row)
    full, slim = sum(r["full"] for r in rows), sum(r["slim"] for r in rows)
    described = config.to_dict()
    return {"schedule": described["keep_schedule"], "score_layers": described["score_layers"],
            "full": full, "slim": slim, "passed": slim >= full, "prompts": rows}


def no_more_generous(candidate: Candidate, loser: Candidate, base: SlimConfig, num_layers: int, tokens: int) -> bool:
    """Whether `candidate` keeps no more tokens than `loser` in any layer: after `loser` failed
    verification, such a schedule is not worth a try (the next try must keep more somewhere)."""
    base = dataclasses.replace(base, min_prompt_tokens=0)
    kept = [LayerPlan.build(c.config(base), tokens, num_layers).kept_tokens for c in (candidate, loser)]
    return all(a <= b for a, b in zip(*kept, strict=True))


def calibrate(
    loaded: LoadedModel,
    base: SlimConfig,
    spec: CalibrationSpec,
    progress: Callable[[int, str], Callable[[], None]] | None = None,
) -> CalibrationResult:
    """Probe, search and verify (see the module docstring).

    Args:
        progress: called with a step count and a phase name; returns the per-step callback.
    """
    if loaded.tokenizer is None:
        raise UserError(f"model {loaded.name!r} has no tokenizer: calibration builds text prompts")
    check_lengths(loaded, spec.lengths)
    lengths = list(spec.lengths)
    tick = progress(len(lengths) * spec.per_length, "build probe prompts") if progress else None
    prompts = build_probe_prompts(loaded, lengths, spec.per_length, tick)
    tick = progress(len(prompts), "probe") if progress else None
    probed = probe(loaded, base, prompts, tick)
    shape = ModelShape.from_hf_config(loaded.model.config)
    reference = min(spec.reference_tokens, loaded.max_context)
    found, singles = candidates(probed, base, shape, reference)
    choices = ranked_choices(found, probed, base, spec.target_recall, spec.max_flop_fraction)
    if not choices:
        best = max(found, key=lambda c: c.recall)
        raise UserError(
            f"no schedule reaches recall {spec.target_recall} within {spec.max_flop_fraction} of full's FLOPs "
            f"(best recall {best.recall:.3f}): lower --target-recall or raise --max-flops"
        )
    tried: list[dict[str, Any]] = []
    failed: list[Candidate] = []
    for candidate in choices:
        if len(tried) == spec.max_tries:
            break
        if any(no_more_generous(candidate, loser, base, shape.layers, reference) for loser in failed):
            continue
        tick = progress(2 * spec.verify_prompts, f"verify {candidate.keep_schedule}") if progress else None
        result = verify(loaded, candidate.config(base), lengths, spec.verify_prompts, tick)
        tried.append(result)
        if result["passed"]:
            break
        failed.append(candidate)
    if not tried or not tried[-1]["passed"]:
        raise UserError(
            f"the {len(tried)} best schedules at recall >= {spec.target_recall} within {spec.max_flop_fraction} of "
            "full's FLOPs answered fewer verification prompts than full: raise --max-flops or --tries"
        )
    config = dataclasses.replace(candidate.config(base), pin_scores=pin_source(candidate, singles))
    front = pareto_front(found)
    record = {
        "model": loaded.name,
        "date": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
        "command": spec.command,
        "environment": environment(loaded.device),
        "probe": {"tasks": list(PROBE_TASKS), "seed": PROBE_SEED, "lengths": lengths, "per_length": spec.per_length,
                  "haystack": "docs", "window": base.window, "block_size": base.block_size},
        "target_recall": spec.target_recall,
        "max_flop_fraction": spec.max_flop_fraction,
        "reference_tokens": reference,
        "chosen": candidate.to_dict(),
        "pin_scores": config.pin_scores,
        "front": [c.to_dict() for c in front],
        "layer_recall": {str(keep): [round(v, 4) for v in values] for keep, values in singles.items()},
        "verification": tried,
    }
    return CalibrationResult(config, candidate, front, singles, tried, record)


def write_preset(path: str, result: CalibrationResult) -> None:
    """The preset file: {"config": every knob, "calibration": the evidence}."""
    with open(path, "w", encoding="utf-8") as handle:
        json.dump({"config": result.config.to_dict(), "calibration": result.record}, handle, indent=1)
        handle.write("\n")
