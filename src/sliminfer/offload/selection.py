"""Decode-time block selection: which retained prompt blocks each slim layer attends to per step.

Prefill leaves every layer from cut `c_g` up to the next cut holding the same retained blocks
(whole blocks of `block_size` tokens in ascending order; only the prompt's last block may be
partial). At each decode step the score layer `c_g - 1` (the layer that scored cut `c_g` in
prefill) lets the current token's query score the token units of its stored prompt keys with
the prefill scoring functions (a window of one query); the group's candidates are the blocks it
retained, and the active set is their top `decode_budget` blocks, always including the forced
ones (the sink block and the block(s) of the final window, as in prefill).

Score layers keep all their retained prompt KV on the device and attend to all of it: their
keys are what the selection needs, and with one cut (the presets) the score layer is a
preserve layer anyway. Every other slim layer is *managed*: it attends to a resident set of
exactly `active_blocks` blocks (see `manager.py`).

Block ids here are local: index i is the layer group's i-th retained block, which is also
where the block sits in each of its layers' stored prompt KV.
"""

from __future__ import annotations

import logging
import math
from dataclasses import dataclass

import torch

from ..config import SlimConfig
from ..scoring import block_scores, blocks_to_keep, forced_blocks, select_blocks
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
        forced: `[n_retained]` bool, blocks that are always active.
        active_blocks: blocks each managed layer attends to per step (>= forced count).
        retained_tokens: prompt tokens each layer of the group stores after prefill.
    """

    score_layer: int
    layers: tuple[int, ...]
    candidates: torch.Tensor
    forced: torch.Tensor
    active_blocks: int
    retained_tokens: int

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
    def from_prefill(cls, kept_positions: list[torch.Tensor], config: SlimConfig) -> DecodePlan:
        """Plan from `PrefillResult.kept_positions` (per layer `[1, n_layer]` original positions)."""
        block = config.block_size
        groups, clamped = [], []
        for cut, layers in group_layers(config.cut_layers, len(kept_positions)):
            score_ids = stored_block_ids(kept_positions[cut - 1], block)
            group_ids = stored_block_ids(kept_positions[cut], block)
            retained_tokens = int(kept_positions[cut].shape[-1])
            forced = forced_blocks(retained_tokens, block, config.sink_tokens, config.window)
            active, was_clamped = active_block_count(config.decode_budget, len(group_ids), int(forced.sum()))
            if was_clamped:
                clamped.append(cut)
            candidates = torch.searchsorted(score_ids, group_ids)
            groups.append(SelectionGroup(cut - 1, layers, candidates, forced, active, retained_tokens))
        if clamped:
            logger.warning(
                "decode_budget=%s exceeds the blocks retained after cut(s) %s: using all retained blocks",
                config.decode_budget,
                clamped,
            )
        score_tokens = {cut - 1: int(kept_positions[cut - 1].shape[-1]) for cut in config.cut_layers}
        return cls(tuple(groups), score_tokens, config)

    @property
    def managed_layers(self) -> list[int]:
        return [layer for group in self.groups for layer in group.layers]

    def group_of_score_layer(self, layer: int) -> SelectionGroup | None:
        return next((group for group in self.groups if group.score_layer == layer), None)

    def forward_state(self) -> ForwardState:
        """The decode `ForwardState`: score layers record the one query's unit scores over their prompt keys."""
        return ForwardState(
            score_layers=frozenset(self.score_tokens),
            window=1,
            unit_size=self.config.unit_size,
            unit_pooling=self.config.unit_pooling,
            score_keys=dict(self.score_tokens),
        )

    def choose(self, group: SelectionGroup, unit_scores: torch.Tensor) -> torch.Tensor:
        """The group's active set, `[active_blocks]` int64 local block ids, ascending.

        Args:
            unit_scores: `[1, n_units]` scores of the score layer's stored prompt units.
        """
        units_per_block = self.config.block_size // self.config.unit_size
        scores = block_scores(unit_scores, units_per_block, self.config.block_scoring)
        candidate_scores = scores[:, group.candidates]
        return select_blocks(candidate_scores, group.active_blocks, group.forced)[0]


def group_layers(cut_layers: tuple[int, ...], num_layers: int) -> list[tuple[int, tuple[int, ...]]]:
    """`(cut, managed layers)` per cut: the layers from the cut up to the next one, minus score layers."""
    score_layers = {cut - 1 for cut in cut_layers}
    ends = [*cut_layers[1:], num_layers]
    return [
        (cut, tuple(layer for layer in range(cut, end) if layer not in score_layers))
        for cut, end in zip(cut_layers, ends, strict=True)
    ]


def stored_block_ids(positions: torch.Tensor, block_size: int) -> torch.Tensor:
    """Original block ids `[n_blocks]` of a layer's stored prompt, from its `[1, n]` positions.

    Stored blocks are whole original blocks (prefill keeps whole blocks), so the i-th one starts
    at stored token `i * block_size`.
    """
    return positions[0, ::block_size] // block_size


def active_block_count(decode_budget: float, retained: int, forced: int) -> tuple[int, bool]:
    """Blocks active per step: a fraction (<= 1) or a count (> 1) of `retained`, at least `forced`.

    Returns:
        `(count, clamped)`; `clamped` says an absolute budget exceeded the retained blocks.
    """
    if decode_budget <= 1:
        wanted, clamped = math.ceil(decode_budget * retained), False
    else:
        wanted, clamped = int(decode_budget), int(decode_budget) > retained
    return min(max(wanted, forced, 1), retained), clamped


def expected_block_counts(config: SlimConfig, prompt_tokens: int, num_layers: int) -> dict[int, tuple[int, int]]:
    """Managed layer -> `(retained, active)` blocks for a prompt of `prompt_tokens` tokens.

    Prefill's counts depend only on the schedule, never on the scores, so the store can be
    sized (and host memory checked) before any work starts.
    """
    block = config.block_size
    missing = math.ceil(prompt_tokens / block) * block - prompt_tokens
    current_tokens, counts = prompt_tokens, {}
    groups = dict(group_layers(config.cut_layers, num_layers))
    for cut, keep in config.keep_schedule:
        forced = int(forced_blocks(current_tokens, block, config.sink_tokens, config.window).sum())
        retained = min(max(blocks_to_keep(keep, prompt_tokens, block), forced), math.ceil(current_tokens / block))
        current_tokens = retained * block - missing
        forced = int(forced_blocks(current_tokens, block, config.sink_tokens, config.window).sum())
        active, _ = active_block_count(config.decode_budget, retained, forced)
        counts.update({layer: (retained, active) for layer in groups[cut]})
    return counts
