"""From probe evidence to a schedule: needle recall per candidate, FLOPs per candidate, the front.

A candidate is a keep schedule with its score layers. Its *recall* is the share of answer
needles whose block survives every cut when each cut ranks blocks by its score layers' combined
scores from the unpruned pass (a deeper cut ranks only what the earlier cuts kept). Its *margin*
is the same share when every cut keeps half as many blocks: synthetic probes are easier than real
tasks, so many schedules reach full recall on them, and the margin tells the ones that find the
needles with room to spare from the ones that barely do. Its cost is the analytic prefill FLOPs
of its `LayerPlan` at a reference length. The scores of one layer do
not depend on where the cut is, so a cut at `c` may use any layers before `c`: the best are
found once per keep fraction and reused for every cut.
"""

from __future__ import annotations

import dataclasses
import itertools
from dataclasses import dataclass

import torch

from ..bench.flops import ModelShape, full_prefill_flops, prefill_flops
from ..config import SlimConfig
from ..schedule import LayerPlan
from ..scoring import blocks_to_keep, combine_layers, select_blocks
from .probe import ProbedPrompt

KEEP_FRACTIONS = (0.1, 0.15, 0.2, 0.25, 0.33, 0.5)
MARGIN_SHRINK = 0.5
FIRST_OF_TWO_KEEPS = (0.5, 0.33)
TOP_LAYERS_FOR_PAIRS = 6


@dataclass(frozen=True)
class Candidate:
    """A schedule, what it keeps of the needles and what it costs.

    Attributes:
        keep_schedule, score_layers: as in `SlimConfig`.
        recall: share of the probe's answer needles that survive every cut.
        flop_fraction: prefill FLOPs over full's at the reference length.
        margin: recall when every cut keeps `MARGIN_SHRINK` as much (None: not computed).
    """

    keep_schedule: tuple[tuple[int, float], ...]
    score_layers: tuple[tuple[int, ...], ...]
    recall: float
    flop_fraction: float
    margin: float | None = None

    @property
    def cuts(self) -> list[tuple[float, tuple[int, ...]]]:
        """`(keep, score layers)` per cut, the form `recall` takes."""
        return [(keep, layers) for (_, keep), layers in zip(self.keep_schedule, self.score_layers, strict=True)]

    def config(self, base: SlimConfig) -> SlimConfig:
        """`base` with this schedule (the layers before the first cut preserved)."""
        return dataclasses.replace(
            base, preserve_layers=self.keep_schedule[0][0], keep_schedule=self.keep_schedule, score_layers=self.score_layers
        )

    def to_dict(self) -> dict:
        return {
            "keep_schedule": [list(cut) for cut in self.keep_schedule],
            "score_layers": [list(layers) for layers in self.score_layers],
            "recall": round(self.recall, 4),
            "flop_fraction": round(self.flop_fraction, 4),
            **({} if self.margin is None else {"margin": round(self.margin, 4)}),
        }


def kept_after(prompt: ProbedPrompt, cuts: list[tuple[float, tuple[int, ...]]], config: SlimConfig) -> set[int]:
    """Blocks of `prompt` that survive `cuts` (`(keep, score layers)` in order)."""
    n_blocks = prompt.layer_scores.shape[1]
    alive = torch.arange(n_blocks)
    for keep, layers in cuts:
        scores = combine_layers([prompt.layer_scores[layer][None] for layer in layers], config.score_combine)
        n_keep = blocks_to_keep(keep, prompt.prompt_tokens, config.block_size, config.min_keep_tokens)
        chosen = select_blocks(scores[:, alive], n_keep, prompt.forced[alive])[0]
        alive = alive[chosen]
    return set(alive.tolist())


def recall(probed: list[ProbedPrompt], cuts: list[tuple[float, tuple[int, ...]]], config: SlimConfig) -> float:
    """Share of all answer needles (over `probed`) that survive `cuts`."""
    found = total = 0
    for prompt in probed:
        kept = kept_after(prompt, cuts, config)
        found += sum(any(block in kept for block in needle) for needle in prompt.needle_blocks)
        total += len(prompt.needle_blocks)
    return found / max(total, 1)


def layer_recall(probed: list[ProbedPrompt], config: SlimConfig, keeps: tuple[float, ...] = KEEP_FRACTIONS) -> dict[float, list[float]]:
    """keep fraction -> per layer, the recall of one cut scored by that layer alone."""
    num_layers = probed[0].layer_scores.shape[0]
    return {keep: [recall(probed, [(keep, (layer,))], config) for layer in range(num_layers)] for keep in keeps}


def best_scorers(
    probed: list[ProbedPrompt], config: SlimConfig, keep: float, singles: list[float]
) -> list[tuple[float, tuple[int, ...]]]:
    """`(recall, score layers)` options at `keep`: every single layer and pairs of the best ones."""
    options = [(value, (layer,)) for layer, value in enumerate(singles)]
    top = sorted(range(len(singles)), key=lambda layer: -singles[layer])[:TOP_LAYERS_FOR_PAIRS]
    for pair in itertools.combinations(sorted(top), 2):
        options.append((recall(probed, [(keep, pair)], config), pair))
    return options


def best_before(options: list[tuple[float, tuple[int, ...]]], cut: int) -> tuple[float, tuple[int, ...]] | None:
    """The highest-recall option whose layers all ran before `cut` (fewer layers on ties)."""
    usable = [option for option in options if max(option[1]) < cut]
    return max(usable, key=lambda option: (option[0], -len(option[1]))) if usable else None


def flop_fraction(shape: ModelShape, config: SlimConfig, tokens: int, sparse_density: float | None = None) -> float:
    """Prefill FLOPs of `config`'s plan over full's for a prompt of `tokens` tokens; with
    `sparse_density`, the plan's block-sparse layers compute that share of their attention."""
    slim = dataclasses.replace(config, min_prompt_tokens=0)
    plan = LayerPlan.build(slim, tokens, shape.layers)
    sparse = plan.sparse_layers(slim) if sparse_density is not None else frozenset()
    density = [sparse_density if layer in sparse else 1.0 for layer in range(shape.layers)]
    return prefill_flops(shape, plan.kept_tokens, density) / full_prefill_flops(shape, tokens)


def candidates(
    probed: list[ProbedPrompt], config: SlimConfig, shape: ModelShape, reference_tokens: int
) -> tuple[list[Candidate], dict[float, list[float]]]:
    """Every one-cut schedule (cut x keep, best scorers before the cut) and the two-cut ones
    that start with a generous keep; plus the per-layer recall table they came from."""
    singles = layer_recall(probed, config)
    options = {keep: best_scorers(probed, config, keep, singles[keep]) for keep in singles}
    found: list[Candidate] = []

    def add(schedule: tuple[tuple[int, float], ...], scorers: tuple[tuple[int, ...], ...], value: float) -> None:
        trial = Candidate(schedule, scorers, value, 0.0).config(config)
        found.append(Candidate(schedule, scorers, value, flop_fraction(shape, trial, reference_tokens)))

    for keep, cut in itertools.product(singles, range(1, shape.layers)):
        best = best_before(options[keep], cut)
        if best is not None:
            add(((cut, keep),), (best[1],), best[0])
    for first_keep, second_keep in itertools.product(FIRST_OF_TWO_KEEPS, singles):
        if second_keep >= first_keep:
            continue
        for first, second in itertools.combinations(range(1, shape.layers), 2):
            one, two = best_before(options[first_keep], first), best_before(options[second_keep], second)
            if one is None or two is None or one[0] < 1.0:
                continue
            value = recall(probed, [(first_keep, one[1]), (second_keep, two[1])], config)
            add(((first, first_keep), (second, second_keep)), (one[1], two[1]), value)
    return found, singles


def pin_source(candidate: Candidate, singles: dict[float, list[float]]) -> str:
    """The `pin_scores` for `candidate`'s decode plan: `deepest` when its deepest cut's score
    layers find more of the probe's needles at the smallest keep fraction than its first cut's,
    else `cut` (with one cut the two are the same).

    With a decode budget the first cut's group pins a few percent of the prompt (budget x pin
    share x its keep), so what matters is which finder holds the needles at small keeps; the
    deeper cut's scores are known after prefill (no predictor). On Qwen2.5-Coder-1.5B (layer
    17 over layer 9) this rule's choice kept 0.970 of budget 1.0 where the cut's own pins kept
    0.954 (EVAL.md section 0.10).

    Args:
        singles: keep fraction -> per layer, the recall of one cut scored by that layer alone.
    """
    if len(candidate.score_layers) < 2:
        return "cut"
    smallest = singles[min(singles)]
    first, deepest = (max(smallest[layer] for layer in layers) for layers in (candidate.score_layers[0], candidate.score_layers[-1]))
    return "deepest" if deepest > first else "cut"


def pareto_front(found: list[Candidate]) -> list[Candidate]:
    """Candidates no other beats on both recall (higher) and FLOPs (lower), cheapest first."""
    front: list[Candidate] = []
    for candidate in sorted(found, key=lambda c: (c.flop_fraction, -c.recall)):
        if not front or candidate.recall > front[-1].recall:
            front.append(candidate)
    return front


def with_margin(candidate: Candidate, probed: list[ProbedPrompt], config: SlimConfig) -> Candidate:
    """`candidate` with its margin: its recall when every cut keeps `MARGIN_SHRINK` as much."""
    shrunk = [(keep * MARGIN_SHRINK, layers) for keep, layers in candidate.cuts]
    return dataclasses.replace(candidate, margin=recall(probed, shrunk, config))


def ranked_choices(
    found: list[Candidate],
    probed: list[ProbedPrompt],
    config: SlimConfig,
    target_recall: float,
    max_flop_fraction: float,
) -> list[Candidate]:
    """Candidates at or above `target_recall` within `max_flop_fraction`, best first.

    Best means highest recall, then highest margin, then cheapest: the FLOP budget is the
    user's speed requirement, and within it the schedule that finds the needles with the most
    room to spare is the one most likely to hold on harder prompts than the probe's.
    """
    good = [
        with_margin(c, probed, config)
        for c in found
        if c.recall >= target_recall and c.flop_fraction <= max_flop_fraction
    ]
    return sorted(good, key=lambda c: (-round(c.recall, 3), -round(c.margin, 3), round(c.flop_fraction, 3), len(c.keep_schedule)))
