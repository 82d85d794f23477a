import dataclasses
import logging

import pytest
import torch

from sliminfer.attention import use_sliminfer_attention
from sliminfer.cache import SlimCache
from sliminfer.config import SlimConfig
from sliminfer.offload.manager import forced_slots
from sliminfer.offload.selection import (
    DecodePlan,
    active_block_count,
    expected_block_counts,
    pin_count,
)
from sliminfer.prefill import slim_prefill
from sliminfer.scoring import block_ids_of
from tiny import HAND, KEPT_BLOCKS, hand_positions, unit_scores_favoring


@pytest.mark.parametrize(
    ("budget", "retained", "forced", "want"),
    [(0.5, 10, 2, (5, False)), (0.05, 10, 2, (2, False)), (1.0, 10, 2, (10, False)), (3, 10, 2, (3, False)), (20, 10, 2, (10, True))],
)
def test_active_block_count(budget, retained, forced, want):
    assert active_block_count(budget, retained, forced) == want


def test_a_fractional_budget_keeps_the_floor_and_an_absolute_one_is_exact():
    assert active_block_count(0.25, 16, 2, floor=16) == (16, False)  # an 8k prompt's cut keeps 1024 tokens
    assert active_block_count(0.25, 64, 2, floor=16) == (16, False)
    assert active_block_count(0.25, 512, 2, floor=16) == (128, False)
    assert active_block_count(4, 64, 2, floor=16) == (4, False)


def test_plan_chooses_the_top_blocks_among_the_group_plus_forced():
    plan = DecodePlan.from_prefill(hand_positions(), HAND)
    (group,) = plan.groups
    assert group.score_layer == 0 and group.layers == (1, 2, 3) and group.active_blocks == 3
    assert group.candidates.tolist() == KEPT_BLOCKS and group.forced.tolist() == [True, False, False, True]
    # Block 2 outranks block 5; blocks 1 and 3 score higher still but were not retained by the group.
    assert plan.choose(group, unit_scores_favoring(1, 2, 3))[1].tolist() == [0, 1, 3]
    assert plan.choose(group, unit_scores_favoring(5))[1].tolist() == [0, 2, 3]
    state = plan.forward_state()
    assert state.window == 1 and state.score_layers == {0} and state.score_keys == {0: 32}


@pytest.mark.parametrize(("pin", "want"), [(0.0, [0, 1, 3]), (0.5, [0, 2, 3]), (1.0, [0, 2, 3])])
def test_pinned_blocks_are_the_questions_best_and_stay_active(pin, want):
    """Prefill's window ranked block 5 (local 2) highest at the cut: pinned, it stays active
    though the decode query favours block 2 (local 1) for the one free slot."""
    config = dataclasses.replace(HAND, decode_pin=pin)
    cut_scores = torch.full((1, 8), 0.1)
    cut_scores[0, 5] = 0.5
    plan = DecodePlan.from_prefill(hand_positions(), config, {1: cut_scores})
    (group,) = plan.groups
    assert group.pinned.tolist() == [False, False, pin > 0, False]
    assert group.initial.tolist() == [0, 3]  # the first step's fill brings the pinned block in order
    scores, active = plan.choose(group, unit_scores_favoring(2))
    assert active.tolist() == want and scores[1] > scores[2]  # the scores stay the query's own
    (unpinned,) = DecodePlan.from_prefill(hand_positions(), config).groups
    assert not unpinned.pinned.any()


@pytest.mark.parametrize(("pin_scores", "pinned_block"), [("cut", 2), ("deepest", 3)])
def test_deepest_pin_scores_pin_what_the_deepest_cut_kept(pin_scores, pinned_block):
    """Two cuts: layer 1 keeps blocks 0, 2, 3, 5, 7 of 8 and ranks block 2 first; layer 3 keeps
    0, 3, 7. The first cut's group pins its own best (block 2) or the deeper cut's (block 3)."""
    config = dataclasses.replace(HAND, keep_schedule=((1, 0.5), (3, 0.25)), pin_scores=pin_scores)
    first, second = ([b * 4 + t for b in blocks for t in range(4)] for blocks in ([0, 2, 3, 5, 7], [0, 3, 7]))
    kept_positions = [torch.arange(32)[None]] + [torch.tensor([first])] * 2 + [torch.tensor([second])] * 3
    first_scores, second_scores = torch.full((1, 8), 0.1), torch.full((1, 8), 0.1)
    first_scores[0, 2], second_scores[0, 3] = 0.9, 0.5
    plan = DecodePlan.from_prefill(kept_positions, config, {1: first_scores, 3: second_scores})
    group = next(g for g in plan.groups if g.layers == (1,))
    assert group.active_blocks == 4
    assert group.candidates.tolist() == [0, 2, 3, 5, 7]  # the score layer (0) stores every block
    assert torch.tensor([0, 2, 3, 5, 7])[group.pinned].tolist() == [pinned_block]


def test_pin_count_rounds_halves_up():
    assert [pin_count(0.5, active, 2) for active in (2, 3, 4, 5)] == [0, 1, 1, 2]
    assert pin_count(0.0, 40, 2) == 0 and pin_count(1.0, 40, 2) == 38


def test_budget_above_the_retained_blocks_is_clamped_with_a_warning(caplog):
    config = SlimConfig(**{**HAND.to_dict(), "keep_schedule": ((1, 0.5),), "decode_budget": 50})
    with caplog.at_level(logging.WARNING):
        plan = DecodePlan.from_prefill(hand_positions(), config)
    assert plan.groups[0].active_blocks == 4 and "decode_budget=50 exceeds" in caplog.text


def test_forced_blocks_take_the_first_and_last_slots():
    assert forced_slots(torch.tensor([True, False, False, True]), 3) == {0: 0, 3: 2}
    assert forced_slots(torch.tensor([True, True, False, False, True, True]), 5) == {0: 0, 1: 1, 4: 3, 5: 4}
    assert forced_slots(torch.tensor([True, True, True]), 3) == {0: 0, 1: 1, 2: 2}


def test_block_ids_read_whole_blocks():
    assert block_ids_of(hand_positions()[1], 4)[0].tolist() == KEPT_BLOCKS


@pytest.mark.parametrize("n", [200, 203, 333])
@pytest.mark.parametrize("min_keep", [0, 96])
def test_expected_block_counts_match_prefill(tiny_llama, n, min_keep):
    config = tiny_llama.default_config.with_overrides(["decode_budget=0.5", f"min_keep_tokens={min_keep}"])
    cache = SlimCache(4)
    ids = torch.randint(0, 256, (1, n), generator=torch.Generator().manual_seed(n))
    with torch.inference_mode(), use_sliminfer_attention(tiny_llama.model):
        result = slim_prefill(tiny_llama.model, ids, cache, config)
    plan = DecodePlan.from_prefill(result.kept_positions, config)
    actual = {layer: (g.retained_blocks, g.active_blocks) for g in plan.groups for layer in g.layers}
    assert expected_block_counts(config, n, 4) == actual
    assert sorted(actual) == [1, 3]  # layer 2 scores the cut at 3, so it keeps its KV
