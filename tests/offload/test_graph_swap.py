"""`GraphSwapper` with a host store: the step split in two, blocks staged by the host between
the parts and read one step after their score layer chose them (run without CUDA: the copies
are synchronous, the graphs' fixed-shape steps run eagerly)."""

import pytest
import torch

from sliminfer.attention import use_sliminfer_attention
from sliminfer.decode import decode_step
from sliminfer.decode_graph import GraphedDecoder
from sliminfer.models import model_parts
from sliminfer.offload import GraphSwapper
from tiny import OFFLOAD_PRESERVE, STEPS, N, prefill_with_manager, prompt, reference_step


def allowed_tokens(reads, cache, block_size):
    """layer -> `[prompt tokens]` bool mask of the blocks it read."""
    allowed = {}
    for layer, blocks in reads.items():
        allowed[layer] = torch.zeros(cache.layers[layer].prompt_tokens, dtype=torch.bool)
        for block in blocks:
            allowed[layer][block * block_size : (block + 1) * block_size] = True
    return allowed


@torch.inference_mode()
@pytest.mark.parametrize("overrides", [("kv_offload=cpu",), OFFLOAD_PRESERVE], ids=["cpu", "cpu-preserve"])
def test_staged_swaps_land_before_the_layers_read_them(tiny, overrides):
    config = tiny.default_config.with_overrides([*overrides, "decode_budget=0.4", "gamma=1.0", "max_swap_blocks=2"])
    (plain, managed), logits, manager = prefill_with_manager(tiny, config, prompt(seed=5))
    parts, block = model_parts(tiny.model), config.block_size
    lagged = {layer for group in manager.plan.groups if group.lagged for layer in group.layers}
    token = logits.argmax(-1, keepdim=True)
    with use_sliminfer_attention(tiny.model):
        before = {layer: manager.resident_blocks(layer) for layer in manager.layers}
        got = decode_step(parts, token, N, managed, manager)  # the eager first step fills the slots
        reads = {layer: before[layer] if layer in lagged else manager.resident_blocks(layer) for layer in manager.layers}
        want = reference_step(tiny.model, token, N, plain, allowed_tokens(reads, plain, block))
        torch.testing.assert_close(got, want, rtol=1e-4, atol=1e-4)
        manager.graph_swapper()  # settles the first step's copies
        eager_transfers = manager.engine.totals.transfers
        swapper = GraphSwapper(manager, host_copies=True)
        assert swapper.segment_starts == (max(group.score_layer for group in manager.plan.groups) + 1,)
        decoder = GraphedDecoder(parts, managed, N + 1, use_graph=False, swapper=swapper)
        read_sets = []
        for step in range(1, STEPS):
            token = got.argmax(-1, keepdim=True)
            reads = {layer: swapper.resident_blocks(layer) for layer in manager.layers}
            read_sets.append(reads)
            got = decoder.step(token)
            want = reference_step(tiny.model, token, N + step, plain, allowed_tokens(reads, plain, block))
            torch.testing.assert_close(got, want, rtol=1e-4, atol=1e-4)
        decoder.finish()
    assert any(reads != read_sets[0] for reads in read_sets[1:])  # the sets changed
    stats = manager.finish()
    copies_per_step = sum(end > start for start, end in swapper.segment_rows)  # one per graph with managed layers
    assert copies_per_step == 2  # tiny: a managed layer runs before the last score layer
    assert stats.transfers == eager_transfers + (STEPS - 1) * copies_per_step
    assert stats.swaps > 0 and stats.cpu_kv_bytes > manager.store.nbytes
