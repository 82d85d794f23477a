"""Decode-time block selection: which prompt blocks each managed layer attends to per step.

Prefill leaves every layer from cut `c_g` up to the next cut holding the same retained blocks
(whole blocks of `block_size` tokens in ascending order; only the prompt's last block may be
partial). At each decode step the cut's decode score layer (`LayerPlan`: the deepest of the
layers that scored cut `c_g` in prefill, by default `c_g - 1`) lets the current token's query
score the token units of its stored prompt keys with the prefill scoring functions (a window of
one query); the group's candidates are the blocks it retained, and the active set is their top
`decode_budget` blocks, always including the forced ones (the sink block and the block(s) of the
final window, as in prefill) and the *pinned* ones: a share `decode_pin` of the other active
slots holds, for the whole decode, the blocks prefill's window (the question) ranked highest at
the cut (`PrefillResult.cut_scores`), or with `pin_scores="deepest"` the blocks the deepest cut
kept, ranked by that cut's (usually better) score layers (`pin_priors`). A single decode query
is a noisier finder than the question's window, and the blocks an answer needs are mostly the
question's. A score layer stores a superset of the group's blocks, since it runs before the cut.

Decode score layers keep all their retained prompt KV on the device and attend to all of it:
their keys are what the selection needs, and with one cut the score layer is a preserve layer
anyway. Every other slim layer is *managed*: it attends to a resident set of
exactly `active_blocks` blocks (see `manager.py`).

With `offload_preserve_layers`, the layers before the first cut's decode score layer `s1` (the
*lagged* group) are managed too. They computed every prompt token, so their candidates are
all prompt blocks and their active set is `decode_budget` x all blocks, chosen by the same score
layer `s1` from the same unit scores (preserve layers between `s1` and the first cut stay
resident). But that layer runs after them: the set it chooses at
step t is what they read at step t + 1. That is the whole approximation ("one step late"): no
predictor, the preserve layers read the blocks the previous token ranked highest, and gamma
gates the swap exactly as for the other managed layers. Before the first step they hold the
top `active_blocks` blocks by `lagged_prior`: the blocks prefill kept (scored by the window
queries), then the recent ones; every slot is filled, so no step reads an empty slot.

Block ids here are local: index i is the layer group's i-th retained block, which is also
where the block sits in each of its layers' stored prompt KV (for the lagged group, block i).
"""

from __future__ import annotations

import dataclasses
import logging
import math
from dataclasses import dataclass

import torch

from ..config import SlimConfig
from ..schedule import LayerPlan
from ..scoring import block_ids_of, forced_blocks, rank_blocks, select_blocks
from ..state import ForwardState

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class SelectionGroup:
    """The layers one score layer chooses for, and what it chooses among.

    Attributes:
        score_layer: the layer whose attention records the decode query's unit scores.
        layers: the managed layers of the group (its slim layers minus the next score layer).
        candidates: `[n_retained]` int64, for each block the group retained (ascending), its
            index among the score layer's stored blocks.
        forced: `[n_retained]` bool, the sink and window blocks: always active, in fixed slots.
        pinned: `[n_retained]` bool, the question's best blocks: always active too (disjoint
            from `forced`).
        active_blocks: blocks each managed layer attends to per step (>= forced + pinned).
        retained_tokens: prompt tokens each layer of the group stores after prefill.
        initial: `[n_initial]` int64 local block ids, ascending, resident before the first
            step: the forced ones (the first step fills the other slots), or for the lagged
            group a full set (its layers run before the first selection).
        lagged: the group runs before its score layer, so a choice applies one step later.
    """

    score_layer: int
    layers: tuple[int, ...]
    candidates: torch.Tensor
    forced: torch.Tensor
    pinned: torch.Tensor
    active_blocks: int
    retained_tokens: int
    initial: torch.Tensor
    lagged: bool = False

    @property
    def retained_blocks(self) -> int:
        return int(self.candidates.numel())


@dataclass(frozen=True)
class DecodePlan:
    """Built once after prefill from the kept positions; `choose` runs per step and group."""

    groups: tuple[SelectionGroup, ...]
    score_tokens: dict[int, int]
    """score layer -> its stored prompt tokens (the keys the decode query scores)."""
    config: SlimConfig

    @classmethod
    def from_prefill(
        cls, kept_positions: list[torch.Tensor], config: SlimConfig, cut_scores: dict[int, torch.Tensor] | None = None
    ) -> DecodePlan:
        """Plan from `PrefillResult.kept_positions` (per layer `[1, n_layer]` original positions)
        and `PrefillResult.cut_scores` (without them, nothing is pinned)."""
        layer_plan = LayerPlan.build(config, int(kept_positions[0].shape[-1]), len(kept_positions))
        priors = pin_priors(cut_scores or {}, kept_positions, layer_plan, config)
        groups, clamped = [], []
        for cut, layers in layer_plan.decode_groups():
            score_layer = cut.decode_score_layer
            group, was_clamped = _group(
                score_layer, layers, kept_positions[score_layer], kept_positions[cut.layer], priors.get(cut.layer), config
            )
            groups.append(group)
            if was_clamped:
                clamped.append(cut.layer)
        if clamped:
            logger.warning(
                "decode_budget=%s exceeds the blocks retained after cut(s) %s: using all retained blocks",
                config.decode_budget,
                clamped,
            )
        lagged = layer_plan.lagged_layers(config)
        if lagged:
            first = layer_plan.cuts[0]
            group, _ = _group(
                first.decode_score_layer, lagged, kept_positions[first.decode_score_layer], kept_positions[0],
                priors.get(first.layer), config,
            )
            prior = lagged_prior(kept_positions, layer_plan, config.block_size)
            initial = select_blocks(prior[None], group.active_blocks, group.forced | group.pinned)[0]
            groups.append(dataclasses.replace(group, initial=initial, lagged=True))
        score_tokens = {layer: int(kept_positions[layer].shape[-1]) for layer in layer_plan.decode_score_layers}
        return cls(tuple(groups), score_tokens, config)

    @property
    def managed_layers(self) -> list[int]:
        return [layer for group in self.groups for layer in group.layers]

    def groups_of_score_layer(self, layer: int) -> list[SelectionGroup]:
        """The groups `layer` chooses for: none, its cut's group, and (first cut) the lagged group."""
        return [group for group in self.groups if group.score_layer == layer]

    def forward_state(self) -> ForwardState:
        """The decode `ForwardState`: score layers record the one query's unit scores over their prompt keys."""
        state = ForwardState.for_config(self.config, frozenset(self.score_tokens), window=1)
        state.score_keys = dict(self.score_tokens)
        return state

    def choose(self, group: SelectionGroup, unit_scores: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """The group's block scores `[n_retained]` (forced ones +inf) and active set
        `[active_blocks]` (int64 local ids, ascending: the forced, the pinned, then the current
        token's best), on the scores' device without a host sync (a CUDA graph may capture it).

        Args:
            unit_scores: `[1, n_units]` scores of the score layer's stored prompt units.
        """
        scores = rank_blocks(unit_scores, self.config)[0, group.candidates].float()
        scores = scores.masked_fill(group.forced.to(scores.device), float("inf"))
        wanted = scores.masked_fill(group.pinned.to(scores.device), float("inf"))
        return scores, wanted.topk(group.active_blocks).indices.sort().values


def _group(
    score_layer: int,
    layers: tuple[int, ...],
    score_positions: torch.Tensor,
    group_positions: torch.Tensor,
    pin_prior: torch.Tensor | None,
    config: SlimConfig,
) -> tuple[SelectionGroup, bool]:
    """The group of `layers`, which store `group_positions` `[1, n]`, scored by `score_layer`.

    Args:
        pin_prior: `[1, n_prompt_blocks]` the rank the group pins by (`pin_priors`), or None (no pins).

    Returns:
        `(group, clamped)`; `clamped` says an absolute budget exceeded the retained blocks.
        The group's initial set is its forced blocks (the first step's fill brings the pinned
        ones with the others, so a full set is stored in ascending order).
    """
    block = config.block_size
    group_ids = block_ids_of(group_positions, block)[0]
    retained_tokens = int(group_positions.shape[-1])
    forced = forced_blocks(retained_tokens, block, config.sink_tokens, config.window)
    n_forced = int(forced.sum())
    active, clamped = active_block_count(config.decode_budget, len(group_ids), n_forced, floor_blocks(config))
    prior = None if pin_prior is None else pin_prior[0, group_ids.to(pin_prior.device)].float().cpu()
    pinned = pinned_blocks(prior, forced, pin_count(config.decode_pin, active, n_forced))
    candidates = torch.searchsorted(block_ids_of(score_positions, block)[0], group_ids)
    initial = forced.nonzero().flatten()
    return SelectionGroup(score_layer, layers, candidates, forced, pinned, active, retained_tokens, initial), clamped


def pin_priors(
    cut_scores: dict[int, torch.Tensor], kept_positions: list[torch.Tensor], plan: LayerPlan, config: SlimConfig
) -> dict[int, torch.Tensor]:
    """Per cut layer, `[1, n_prompt_blocks]` the rank by which its group pins blocks.

    `pin_scores="cut"`: the cut's own window scores. `"deepest"`: a block the cut `d` cuts
    deeper kept ranks `d + s`, with `s` in [0, 1) its score at that cut scaled by the cut's
    best; for the deepest such cut (deeper cuts keep subsets of shallower ones). So a group pins
    the final cut's choice first, in the final score layers' order, then the next cut's, and so
    on.

    Args:
        cut_scores: per cut layer, `[1, n_prompt_blocks]` non-negative window scores (empty:
            nothing is pinned).
        kept_positions: per layer `[1, n_layer]` original positions prefill kept.
    """
    if config.pin_scores == "cut" or not cut_scores:
        return cut_scores
    scaled = {layer: scores.float() / scores.float().amax().clamp_min(1e-30) * 0.999 for layer, scores in cut_scores.items()}
    kept = cut_kept_blocks(kept_positions, plan, config.block_size)
    priors = {}
    for index, cut in enumerate(plan.cuts):
        prior = scaled[cut.layer].clone()
        for depth, deeper in enumerate(plan.cuts[index + 1 :], 1):
            ids = kept[deeper.layer].to(prior.device)
            prior[0, ids] = depth + scaled[deeper.layer][0, ids]
        priors[cut.layer] = prior
    return priors


def cut_kept_blocks(kept_positions: list[torch.Tensor], plan: LayerPlan, block_size: int) -> dict[int, torch.Tensor]:
    """Per cut layer, the `[n_kept]` ascending prompt block ids it kept (from its layer's positions)."""
    return {cut.layer: block_ids_of(kept_positions[cut.layer], block_size)[0] for cut in plan.cuts}


def pin_count(decode_pin: float, active: int, forced: int) -> int:
    """Active slots pinned to the question's blocks: `decode_pin` of those beyond the forced ones
    (halves round up: one free slot at 0.5 is pinned)."""
    return math.floor(decode_pin * (active - forced) + 0.5)


def pinned_blocks(prior: torch.Tensor | None, forced: torch.Tensor, count: int) -> torch.Tensor:
    """`[n_blocks]` bool: the `count` unforced blocks `prior` `[n_blocks]` ranks highest (none
    without a prior)."""
    pinned = torch.zeros_like(forced)
    if prior is not None and count > 0:
        pinned[prior.masked_fill(forced, float("-inf")).topk(count).indices] = True
    return pinned


def lagged_prior(kept_positions: list[torch.Tensor], plan: LayerPlan, block_size: int) -> torch.Tensor:
    """`[n_blocks]` float rank of every prompt block before any decode query has scored them.

    The rank is the number of cuts that kept the block (the top blocks by the window queries;
    deeper cuts keep the best of them), ties broken towards later blocks (recency, the usual
    prior of decode attention); the pinned blocks, the first cut's best by its scores, join the
    initial set whatever their rank.
    When `active_blocks` equals the blocks the first cut kept (a budget equal to its keep
    fraction, up to rounding), the top of this rank is exactly prefill's choice.
    """
    n_blocks = math.ceil(kept_positions[0].shape[-1] / block_size)
    ids = torch.arange(n_blocks)
    kept_by_cut = [torch.isin(ids, kept.cpu()) for kept in cut_kept_blocks(kept_positions, plan, block_size).values()]
    return torch.stack(kept_by_cut).sum(0) + ids / n_blocks


def floor_blocks(config: SlimConfig) -> int:
    """Blocks a fractional decode budget never goes below: `min_keep_tokens` worth, the same
    floor the cuts keep (what a question needs does not shrink with the prompt, and at 8k-16k a
    quarter of a cut's blocks is only a few hundred tokens)."""
    return math.ceil(config.min_keep_tokens / config.block_size)


def active_block_count(decode_budget: float, retained: int, forced: int, floor: int = 0) -> tuple[int, bool]:
    """Blocks active per step: a fraction (<= 1, at least `floor` blocks) or a count (> 1) of
    `retained`, at least `forced`.

    Returns:
        `(count, clamped)`; `clamped` says an absolute budget exceeded the retained blocks.
    """
    if decode_budget <= 1:
        wanted, clamped = max(math.ceil(decode_budget * retained), floor), False
    else:
        wanted, clamped = int(decode_budget), int(decode_budget) > retained
    return min(max(wanted, forced, 1), retained), clamped


def expected_block_counts(config: SlimConfig, prompt_tokens: int, num_layers: int) -> dict[int, tuple[int, int]]:
    """Managed layer -> `(retained, active)` blocks for a prompt of `prompt_tokens` tokens.

    Prefill's counts depend only on the schedule, never on the scores, so the store can be
    sized (and host memory checked) before any work starts. Lagged layers retain every block.
    """
    plan = LayerPlan.build(config, prompt_tokens, num_layers)
    counts = {layer: block_counts(config, prompt_tokens) for layer in plan.lagged_layers(config)}
    for cut, layers in plan.decode_groups():
        counts.update({layer: block_counts(config, plan.kept_tokens[cut.layer]) for layer in layers})
    return counts


def block_counts(config: SlimConfig, stored_tokens: int) -> tuple[int, int]:
    """`(blocks, active blocks)` of a layer storing `stored_tokens` prompt tokens in whole blocks."""
    n_blocks = math.ceil(stored_tokens / config.block_size)
    forced = int(forced_blocks(stored_tokens, config.block_size, config.sink_tokens, config.window).sum())
    return n_blocks, active_block_count(config.decode_budget, n_blocks, forced, floor_blocks(config))[0]
