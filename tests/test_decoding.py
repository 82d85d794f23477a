"""`decode.Decoding`: eager steps, then the fixed-shape (CUDA-graph) step from the handover on.

On CPU the graph's step runs eagerly (`capture=False`): the same fixed-shape code path the
graph replays, so the handover's numerics are checked without CUDA.
"""

import pytest
import torch

from sliminfer.attention import use_sliminfer_attention
from sliminfer.cache import SlimCache
from sliminfer.decode import Decoding, EagerDecoder, graph_may_take_over, prepare_manager
from sliminfer.decode_graph import WARMUP_STEPS
from sliminfer.models import model_parts
from sliminfer.prefill import slim_prefill
from tiny import STEPS, TINY_SLIM, N, prompt, random_ids


class Unfilled:
    def filled(self):
        return False


def test_the_handover_rule():
    assert graph_may_take_over(True, WARMUP_STEPS + 1, None)
    assert not graph_may_take_over(False, 100, None)  # CPU, or cuda_graph_decode=false
    assert not graph_may_take_over(True, WARMUP_STEPS, None)  # capturing would run past the last step
    assert not graph_may_take_over(True, 100, Unfilled())  # the first step's fill has not run yet


@torch.inference_mode()
def test_without_a_manager_the_graph_step_takes_over_at_once_and_decodes_as_eager(tiny):
    steps = 6
    ids = random_ids(203, seed=8)
    caches = [SlimCache(4, reserve_tokens=steps + 1) for _ in range(2)]
    parts = model_parts(tiny.model)
    with use_sliminfer_attention(tiny.model):
        prefills = [slim_prefill(tiny.model, ids, cache, TINY_SLIM) for cache in caches]
        eager = EagerDecoder(parts, caches[0], 203, prefills[0])
        handed = Decoding(EagerDecoder(parts, caches[1], 203, prefills[1]), steps, True, capture=False)
        token = prefills[0].logits.argmax(-1, keepdim=True)
        for _ in range(steps):
            want = eager.step(token)
            torch.testing.assert_close(handed.step(token), want, rtol=1e-5, atol=1e-5)
            assert handed.graphed is not None
            token = want.argmax(-1, keepdim=True)
        stats, want_stats = handed.finish(), eager.finish()
    assert [layer.length for layer in caches[1].layers] == [layer.length for layer in caches[0].layers]
    assert stats.graphed_steps == steps and want_stats.graphed_steps == 0
    stats.graphed_steps = 0
    assert stats == want_stats and stats.gpu_generated_kv_bytes > 0


def managed_decoder(loaded, config, ids):
    """A prefilled cache and its manager, attached by the `EagerDecoder`; and the prefill's logits."""
    cache = SlimCache(4, reserve_tokens=STEPS)
    with use_sliminfer_attention(loaded.model):
        prefill = slim_prefill(loaded.model, ids, cache, config)
    manager = prepare_manager(loaded, config, N, STEPS)
    return EagerDecoder(model_parts(loaded.model), cache, N, prefill, manager), prefill.logits


@torch.inference_mode()
@pytest.mark.parametrize("gamma", ["0", "1.0"])
def test_with_a_manager_the_handover_waits_for_filled_slots(tiny_llama, gamma):
    config = tiny_llama.default_config.with_overrides(["kv_offload=cpu", "decode_budget=0.5", f"gamma={gamma}"])
    eager, logits = managed_decoder(tiny_llama, config, prompt(seed=6))
    handed = Decoding(managed_decoder(tiny_llama, config, prompt(seed=6))[0], STEPS, True, capture=False)
    token = logits.argmax(-1, keepdim=True)
    with use_sliminfer_attention(tiny_llama.model):
        for step in range(STEPS):
            want = eager.step(token)
            torch.testing.assert_close(handed.step(token), want, rtol=1e-5, atol=1e-5)
            # The first step fills the free slots; from the second on the graph's step runs
            # (swapping inside it when gamma > 0).
            assert (handed.graphed is not None) == (step >= 1)
            token = want.argmax(-1, keepdim=True)
    stats, want_stats = handed.finish(), eager.finish()
    assert stats.initial_fill_bytes == want_stats.initial_fill_bytes > 0 and stats.swaps == want_stats.swaps
    assert stats.graphed_steps == STEPS - 1 and stats.decode_steps == want_stats.decode_steps == STEPS
    if gamma != "0":  # a static graphed step runs no selection, so only swapping steps count
        assert stats.top_block_hit_rate == pytest.approx(want_stats.top_block_hit_rate)
    assert stats.gpu_prompt_kv_bytes == want_stats.gpu_prompt_kv_bytes < stats.full_prompt_kv_bytes
