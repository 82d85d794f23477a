"""Algorithm 1 on hand-made layers and scores (no model): fill, keep, swap, slot contents."""

import dataclasses

import pytest
import torch

from sliminfer.cache import SlimLayer
from sliminfer.offload.manager import OffloadManager, uses_manager
from tiny import HAND, hand_positions, unit_scores_favoring

SHAPE = (2, 4, 3)  # kv heads, block size, head dim


def make_layers(num_layers=4):
    """Layer 0 stores the whole 32-token prompt, the others the 16 tokens of the retained blocks."""
    torch.manual_seed(0)
    layers = []
    for index in range(num_layers):
        layer = SlimLayer(reserve_tokens=4)
        tokens = 32 if index == 0 else 16
        layer.update(torch.randn(1, 2, tokens, 3), torch.randn(1, 2, tokens, 3))
        layer.end_prefill(32)
        layers.append(layer)
    return layers


def attach(config, layers):
    manager = OffloadManager.prepare(config, 32, len(layers), SHAPE, torch.float32, torch.device("cpu"), 4)
    originals = {i: (layer.keys.clone(), layer.values.clone()) for i, layer in enumerate(layers)}
    manager.attach(layers, hand_positions(len(layers)))
    return manager, originals


def step(manager, scores):
    state = manager.forward_state()
    state.unit_scores[0] = scores
    for index in range(4):
        manager.after_layer(index, state)


def assert_slots_hold(layer, original, blocks):
    for slot, block in enumerate(blocks):
        for got, want in zip(layer.buffers, original, strict=True):
            assert torch.equal(got[:, :, slot * 4 : slot * 4 + 4], want[:, :, block * 4 : block * 4 + 4])


@pytest.mark.parametrize("offload", ["none", "cpu"])
def test_fill_then_swap_below_gamma(offload):
    config = dataclasses.replace(HAND, gamma=0.9, kv_offload=offload)
    layers = make_layers()
    manager, originals = attach(config, layers)
    assert [layers[i].length for i in range(4)] == [32, 12, 12, 12]  # 3 of 4 blocks resident
    assert manager.resident_blocks(1) == [0, None, 3]  # forced sink and last block placed
    step(manager, unit_scores_favoring(5))  # local block 2 -> the free slot
    for index in (1, 2, 3):
        assert manager.resident_blocks(index) == [0, 2, 3]
        assert_slots_hold(layers[index], originals[index], [0, 2, 3])
    step(manager, unit_scores_favoring(2))  # overlap 2/3 < 0.9: block 1 replaces block 2
    for index in (1, 2, 3):
        assert manager.resident_blocks(index) == [0, 1, 3]
        assert_slots_hold(layers[index], originals[index], [0, 1, 3])
    stats = manager.finish()
    assert stats.swaps == 3 and stats.swap_decisions == 3 and stats.mean_overlap == pytest.approx(2 / 3)
    assert stats.initial_fill_bytes == stats.copied_bytes == 3 * 2 * 2 * 4 * 3 * 4
    assert stats.decode_steps == 2 and stats.copied_bytes_per_step == stats.copied_bytes / 2
    assert (stats.cpu_kv_bytes > 0) == (offload == "cpu")


def test_overlap_at_or_above_gamma_keeps_the_resident_set():
    layers = make_layers()
    manager, originals = attach(dataclasses.replace(HAND, gamma=0.5), layers)
    step(manager, unit_scores_favoring(5))
    step(manager, unit_scores_favoring(2))  # overlap 2/3 >= 0.5: nothing moves
    assert manager.resident_blocks(2) == [0, 2, 3]
    assert_slots_hold(layers[2], originals[2], [0, 2, 3])
    stats = manager.finish()
    assert stats.swaps == 0 and stats.copied_bytes == 0 and stats.swap_decisions == 3


def test_generated_tokens_follow_the_resident_prompt_and_wait_for_copies():
    layers = make_layers()
    manager, _ = attach(HAND, layers)
    waited = []
    manager.engine.wait = waited.append
    step(manager, unit_scores_favoring(5))
    new_key, new_value = torch.ones(1, 2, 1, 3), torch.ones(1, 2, 1, 3)
    keys, values = layers[1].update(new_key, new_value)
    assert keys.shape[2] == 13 and torch.equal(keys[:, :, 12:], new_key) and torch.equal(values[:, :, 12:], new_value)
    assert [ticket.layer for ticket in waited] == [1]
    assert layers[1].get_seq_length() == 33 and layers[1].resident_prompt_tokens == 12


def test_manager_is_used_only_for_a_budget_or_offload():
    assert not uses_manager(dataclasses.replace(HAND, decode_budget=1.0))
    assert uses_manager(dataclasses.replace(HAND, decode_budget=1.0, kv_offload="cpu"))
    assert uses_manager(dataclasses.replace(HAND, decode_budget=0.5))
