"""The manager inside real decoding (tiny models): exact without selection, restricted with it."""

import pytest
import torch

from sliminfer.attention import use_sliminfer_attention
from sliminfer.decode import decode_step
from sliminfer.errors import ConfigError
from sliminfer.generate import SamplingParams, generate
from sliminfer.models import model_parts
from sliminfer.offload import HostMemoryError
from sliminfer.offload import store as store_module
from tiny import OFFLOAD_PRESERVE, STEPS, N, prefill_with_manager, prompt, reference_step


@torch.inference_mode()
@pytest.mark.parametrize(
    ("overrides", "managed_layers"),
    [(("kv_offload=none",), 2), (("kv_offload=cpu",), 2), (OFFLOAD_PRESERVE, 3)],
    ids=["none", "cpu", "cpu-preserve"],
)
def test_full_budget_with_gamma_0_equals_decoding_without_manager(tiny, overrides, managed_layers):
    config = tiny.default_config.with_overrides([*overrides, "decode_budget=1.0", "gamma=0"])
    (plain, managed), logits, manager = prefill_with_manager(tiny, config, prompt())
    parts = model_parts(tiny.model)
    token = logits.argmax(-1, keepdim=True)
    with use_sliminfer_attention(tiny.model):
        for step in range(STEPS):
            want = decode_step(parts, token, N + step, plain)
            got = decode_step(parts, token, N + step, managed, manager)
            assert torch.equal(got, want)
            token = want.argmax(-1, keepdim=True)
    stats = manager.finish()
    assert stats.managed_layers == managed_layers and stats.initial_fill_bytes > 0 and stats.swaps == 0


TWO_CUTS = ["preserve_layers=1", "keep_schedule=1:0.5,3:0.25"]


@torch.inference_mode()
@pytest.mark.parametrize("schedule", [[], [*TWO_CUTS, "pin_scores=cut"], [*TWO_CUTS, "pin_scores=deepest"]])
def test_fully_pinned_selection_is_static_on_the_questions_blocks(tiny_llama, schedule):
    """decode_pin=1: every free slot holds one of the blocks prefill's window ranked highest at
    the cut (or, with `pin_scores=deepest`, at the deepest cut that kept them), whatever the
    decode tokens attend to, so even gamma 1.0 never swaps."""
    config = tiny_llama.default_config.with_overrides(
        [*schedule, "kv_offload=cpu", "decode_budget=0.75", "decode_pin=1", "gamma=1.0"]
    )
    (_, managed), logits, manager = prefill_with_manager(tiny_llama, config, prompt(seed=6))
    parts = model_parts(tiny_llama.model)
    token = logits.argmax(-1, keepdim=True)
    with use_sliminfer_attention(tiny_llama.model):
        for step in range(STEPS):
            token = decode_step(parts, token, N + step, managed, manager).argmax(-1, keepdim=True)
    for group in manager.plan.groups:
        assert group.pinned.any()
        want = (group.forced | group.pinned).nonzero().flatten().tolist()
        for layer in group.layers:
            assert manager.resident_blocks(layer) == want
    assert manager.finish().swaps == 0


def test_generate_with_cpu_offload_and_full_budget_matches_plain_slim(tiny_llama):
    ids = prompt(seed=4)[0].tolist()
    sampling = SamplingParams(max_new_tokens=8, ignore_eos=True)
    plain = generate(tiny_llama, ids, sampling=sampling)
    offloaded = generate(tiny_llama, ids, config=tiny_llama.default_config.with_overrides(["kv_offload=cpu"]), sampling=sampling)
    assert offloaded.token_ids == plain.token_ids
    kv, plain_kv = offloaded.kv, plain.kv
    assert kv.cpu_kv_bytes > 0 and kv.managed_layers == 2 and plain_kv.cpu_kv_bytes == plain_kv.managed_layers == 0
    assert kv.gpu_prompt_kv_bytes == plain_kv.gpu_prompt_kv_bytes < kv.full_prompt_kv_bytes  # all blocks resident
    assert kv.gpu_generated_kv_bytes == plain_kv.gpu_generated_kv_bytes > 0
    assert offloaded.to_dict()["kv"]["cpu_kv_bytes"] == kv.cpu_kv_bytes


def test_cpu_offload_with_a_budget_keeps_less_prompt_kv_on_the_device(tiny_llama):
    ids = prompt(seed=4)[0].tolist()
    sampling = SamplingParams(max_new_tokens=4, ignore_eos=True)
    config = tiny_llama.default_config.with_overrides(["kv_offload=cpu", "decode_budget=0.5", "gamma=0.5"])
    plain, budgeted = (generate(tiny_llama, ids, config=c, sampling=sampling) for c in (tiny_llama.default_config, config))
    assert budgeted.kv.gpu_prompt_kv_bytes < plain.kv.gpu_prompt_kv_bytes
    assert budgeted.kv.decode_steps == 3 and budgeted.kv.swap_decisions > 0


def allowed_tokens(manager, layer, prompt_tokens, block_size):
    allowed = torch.zeros(prompt_tokens, dtype=torch.bool)
    for block in manager.resident_blocks(layer):
        allowed[block * block_size : (block + 1) * block_size] = True
    return allowed


@torch.inference_mode()
@pytest.mark.parametrize("offload", ["none", "cpu"])
def test_small_budget_attends_only_to_the_active_blocks(tiny, offload):
    config = tiny.default_config.with_overrides([f"kv_offload={offload}", "decode_budget=0.5", "gamma=1.0"])
    (plain, managed), logits, manager = prefill_with_manager(tiny, config, prompt(seed=5))
    parts = model_parts(tiny.model)
    token = logits.argmax(-1, keepdim=True)
    for step in range(STEPS):
        with use_sliminfer_attention(tiny.model):
            got = decode_step(parts, token, N + step, managed, manager)
        allowed = {
            layer: allowed_tokens(manager, layer, plain.layers[layer].prompt_tokens, config.block_size)
            for layer in manager.layers
        }
        assert all(0 < mask.sum() < mask.numel() for mask in allowed.values())
        want = reference_step(tiny.model, token, N + step, plain, allowed)
        torch.testing.assert_close(got, want, rtol=1e-4, atol=1e-4)
        token = got.argmax(-1, keepdim=True)
    stats = manager.finish()
    assert stats.swaps > 0 and stats.mean_overlap < 1.0


def test_offload_without_enough_host_memory_fails_before_any_work(tiny_llama, monkeypatch):
    monkeypatch.setattr(store_module, "available_host_bytes", lambda: 1000)
    monkeypatch.setattr("sliminfer.generate.slim_prefill", lambda *a, **k: pytest.fail("prefill ran"))
    config = tiny_llama.default_config.with_overrides(["kv_offload=cpu"])
    with pytest.raises(HostMemoryError, match="kv_offload='cpu' needs .* GiB of host memory"):
        generate(tiny_llama, prompt()[0].tolist(), config=config)


@pytest.mark.parametrize(
    ("override", "message"),
    [("gamma=1.5", "gamma=1.5"), ("decode_budget=-1", "decode_budget=-1"), ("max_swap_blocks=-2", "max_swap_blocks=-2")],
)
def test_bad_offload_settings_raise_config_errors(tiny_llama, override, message):
    with pytest.raises(ConfigError, match=message):
        tiny_llama.default_config.with_overrides([override])


@torch.inference_mode()
@pytest.mark.parametrize("overrides", [("kv_offload=cpu",), OFFLOAD_PRESERVE], ids=["cpu", "cpu-preserve"])
@pytest.mark.parametrize(
    "swap", [("gamma=0",), ("gamma=1.0",), ("gamma=0.95", "max_swap_blocks=1", "decode_budget=0.4")], ids=["static", "swap", "capped"]
)
def test_fixed_shape_decoder_continues_the_eager_manager_exactly(tiny_llama, overrides, swap):
    """After the first (filling) step the CUDA-graph decoder takes over; its fixed-shape step
    (run eagerly here), which swaps blocks inside the step when gamma > 0, must give the eager
    manager's logits and resident sets, step after step, also when the cap defers blocks."""
    from sliminfer.decode_graph import GraphedDecoder

    config = tiny_llama.default_config.with_overrides([*overrides, "decode_budget=0.5", "decode_pin=0", *swap])
    capped = "max_swap_blocks=1" in swap
    ids = prompt(seed=6)
    caches = [prefill_with_manager(tiny_llama, config, ids) for _ in range(2)]
    parts = model_parts(tiny_llama.model)
    token = caches[0][1].argmax(-1, keepdim=True)
    with use_sliminfer_attention(tiny_llama.model):
        (_, eager_cache), _, eager_manager = caches[0]
        (_, fixed_cache), _, fixed_manager = caches[1]
        assert not fixed_manager.filled()  # free slots wait for the first step's fill
        first = decode_step(parts, token, N, eager_cache, eager_manager)
        assert torch.equal(decode_step(parts, token, N, fixed_cache, fixed_manager), first)
        assert fixed_manager.filled()
        swapper = fixed_manager.graph_swapper()
        assert (swapper is None) == (swap == ("gamma=0",))
        fixed = GraphedDecoder(parts, fixed_cache, N + 1, use_graph=False, swapper=swapper)
        token = first.argmax(-1, keepdim=True)
        for step in range(1, STEPS - 1):
            want = decode_step(parts, token, N + step, eager_cache, eager_manager)
            torch.testing.assert_close(fixed.step(token), want, rtol=1e-5, atol=1e-5)
            if swapper is not None:
                for layer in eager_manager.layers:
                    queued = eager_manager.queued.get(layer)
                    resident = eager_manager.resident_blocks(layer)
                    for slot, block in zip(*((queued.slots, queued.block_ids) if queued else ((), ())), strict=True):
                        resident[slot] = block  # a lagged layer's copy waits for the next step
                    assert swapper.resident_blocks(layer) == resident
            token = want.argmax(-1, keepdim=True)
        fixed.finish()
    want_stats, stats = eager_manager.finish(), fixed_manager.finish()
    assert (want_stats.swaps > 0) == (swapper is not None)
    assert (want_stats.deferred_blocks > 0) == (capped and overrides == OFFLOAD_PRESERVE)  # 13 blocks: room to defer
    if swapper is not None:  # the graphed steps' counts reach the manager's stats
        for field in ("swaps", "deferred_blocks", "swap_decisions", "decode_steps"):
            assert getattr(stats, field) == getattr(want_stats, field), field
        assert stats.mean_overlap == pytest.approx(want_stats.mean_overlap)
        assert stats.top_block_hit_rate == pytest.approx(want_stats.top_block_hit_rate)
