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
    config = tiny.default_config.with_overrides([*overrides, "decode_budget=0.4", "decode_pin=0", "gamma=1.0", "max_swap_blocks=2"])
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


HOST_READS = ("item", "tolist", "__int__", "__float__", "__bool__", "__index__", "numpy", "nonzero")


def refuse(what):
    def refused(*args, **kwargs):
        raise AssertionError(f"{what} inside the step: a CUDA graph cannot capture it")

    return refused


@torch.inference_mode()
@pytest.mark.parametrize("host_copies", [False, True], ids=["device-store", "host-store"])
def test_a_swapping_step_never_reads_device_values_on_the_host(tiny, monkeypatch, host_copies):
    """What a CUDA graph cannot capture (a host read of a device value, a tensor built from
    Python data) must not happen inside the step; checked on CPU by refusing those calls."""
    config = tiny.default_config.with_overrides([*OFFLOAD_PRESERVE, "decode_budget=0.4", "decode_pin=0", "gamma=1.0", "max_swap_blocks=2"])
    (_, managed), logits, manager = prefill_with_manager(tiny, config, prompt(seed=5))
    parts = model_parts(tiny.model)
    with use_sliminfer_attention(tiny.model):
        logits = decode_step(parts, logits.argmax(-1, keepdim=True), N, managed, manager)
        manager.graph_swapper()
        decoder = GraphedDecoder(parts, managed, N + 1, use_graph=False, swapper=GraphSwapper(manager, host_copies))
        for _ in range(3):
            decoder.token.copy_(logits.argmax(-1, keepdim=True))
            with monkeypatch.context() as refusing:
                for name in HOST_READS:
                    refusing.setattr(torch.Tensor, name, refuse(f"Tensor.{name}"))
                refusing.setattr(torch, "tensor", refuse("torch.tensor"))
                for start, end in decoder.segments:
                    logits = decoder._segment(start, end)
            decoder.swapper.after_segment(0)
            decoder.swapper.after_segment(1)
    assert float(decoder.swapper.counters[1]) > 0  # the steps did swap
