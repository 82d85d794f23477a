"""`offload_preserve_layers`: the lagged group (layers 0 .. c1-2) offloaded, one step late.

Tiny 4-layer models with one cut at layer 3: layers 0 and 1 are lagged, layer 2 scores the
cut (and keeps all its KV), layer 3 is a managed slim layer. The 203-token prompt has 13
blocks of 16 (the last holds 11 tokens); the cut keeps 7 of them.
"""

import math

import pytest
import torch

from sliminfer.attention import use_sliminfer_attention
from sliminfer.cache import SlimCache
from sliminfer.decode import decode_step
from sliminfer.generate import SamplingParams, generate
from sliminfer.models import model_parts
from sliminfer.offload import HostMemoryError, OffloadManager
from sliminfer.offload import store as store_module
from sliminfer.offload.selection import DecodePlan, expected_block_counts
from sliminfer.prefill import slim_prefill
from tiny import OFFLOAD_PRESERVE, STEPS, N, prefill_with_manager, prompt, reference_step

BLOCK, N_BLOCKS, KEPT = 16, 13, 7
BLOCK_SHAPE = (2, BLOCK, 16)


def lagged_config(loaded, *overrides):
    return loaded.default_config.with_overrides([*OFFLOAD_PRESERVE, *overrides])


def block_tokens(blocks, prompt_tokens=N):
    """Token indices `[n]` of `blocks` (ascending) in a prompt of `prompt_tokens` tokens."""
    return torch.cat([torch.arange(b * BLOCK, min((b + 1) * BLOCK, prompt_tokens)) for b in blocks])


def record_reads(manager, cache, layers):
    """layer -> the resident blocks at each of its cache updates (what its attention reads)."""
    reads = {layer: [] for layer in layers}
    for layer in layers:
        wait = cache.layers[layer].before_update

        def recording(layer=layer, wait=wait):
            wait()
            reads[layer].append(manager.resident_blocks(layer))

        cache.layers[layer].before_update = recording
    return reads


def record_lagged_choices(monkeypatch):
    """The lagged group's active set at each step, as `DecodePlan.choose` returns it."""
    choices, choose = [], DecodePlan.choose

    def recording(plan, group, unit_scores):
        scores, active = choose(plan, group, unit_scores)
        if group.lagged:
            choices.append(active.tolist())
        return scores, active

    monkeypatch.setattr(DecodePlan, "choose", recording)
    return choices


def test_block_counts_and_host_memory_cover_the_lagged_layers(tiny_llama, monkeypatch):
    config = lagged_config(tiny_llama, "decode_budget=0.3")
    assert expected_block_counts(config, N, 4) == {0: (13, 4), 1: (13, 4), 3: (7, 3)}
    plain = config.with_overrides(["offload_preserve_layers=false"])
    assert expected_block_counts(plain, N, 4) == {3: (7, 3)}
    store_bytes = 2 * 2 * BLOCK * 16 * 4  # K and V of one block, float32
    monkeypatch.setattr(store_module, "available_host_bytes", lambda: 20 * store_bytes)  # 16 usable
    OffloadManager.prepare(plain, N, 4, BLOCK_SHAPE, torch.float32, torch.device("cpu"), STEPS)
    with pytest.raises(HostMemoryError, match="kv_offload='cpu' needs"):
        OffloadManager.prepare(config, N, 4, BLOCK_SHAPE, torch.float32, torch.device("cpu"), STEPS)


@torch.inference_mode()
@pytest.mark.parametrize(("budget", "active"), [(0.3, 4), (0.75, 10)])
def test_lagged_layers_start_with_prefills_choice_then_recent_blocks(tiny_llama, budget, active):
    config = lagged_config(tiny_llama, f"decode_budget={budget}", "decode_pin=0")
    ids = prompt(seed=7)
    (plain, managed), _, manager = prefill_with_manager(tiny_llama, config, ids)
    with use_sliminfer_attention(tiny_llama.model):
        kept_positions = slim_prefill(tiny_llama.model, ids, SlimCache(4, STEPS), config).kept_positions
    kept = sorted(set((kept_positions[3][0] // BLOCK).tolist()))
    forced = {0, N_BLOCKS - 1}
    assert len(kept) == KEPT and forced <= set(kept)
    others = [b for b in range(N_BLOCKS) if b not in kept]
    by_rank = [*sorted(set(kept) - forced, reverse=True), *sorted(others, reverse=True)]
    want = sorted(forced | set(by_rank[: active - len(forced)]))
    missing = N_BLOCKS * BLOCK - N
    for layer in (0, 1):
        assert manager.resident_blocks(layer) == want
        assert managed.layers[layer].length == active * BLOCK - missing
        assert managed.layers[layer].get_seq_length() == N
        tokens = block_tokens(want)
        for got, full in zip(managed.layers[layer].buffers, (plain.layers[layer].keys, plain.layers[layer].values), strict=True):
            assert torch.equal(got[:, :, : tokens.numel()], full[:, :, tokens])
    assert managed.layers[2].length == N  # the score layer keeps every key
    assert managed.prompt_kv_bytes() < plain.prompt_kv_bytes()


@torch.inference_mode()
def test_lagged_layers_read_the_previous_steps_choice(tiny, monkeypatch):
    config = lagged_config(tiny, "decode_budget=0.4", "gamma=1.0")
    (plain, managed), logits, manager = prefill_with_manager(tiny, config, prompt(seed=5))
    choices = record_lagged_choices(monkeypatch)
    reads = record_reads(manager, managed, (0, 1, 3))
    initial = manager.resident_blocks(0)
    parts = model_parts(tiny.model)
    token = logits.argmax(-1, keepdim=True)
    for step in range(STEPS):
        with use_sliminfer_attention(tiny.model):
            got = decode_step(parts, token, N + step, managed, manager)
        allowed = {}
        for layer, prompt_tokens in ((0, N), (1, N), (3, plain.layers[3].prompt_tokens)):
            allowed[layer] = torch.zeros(prompt_tokens, dtype=torch.bool)
            allowed[layer][block_tokens(reads[layer][step], prompt_tokens)] = True
        want = reference_step(tiny.model, token, N + step, plain, allowed)
        torch.testing.assert_close(got, want, rtol=1e-4, atol=1e-4)
        token = got.argmax(-1, keepdim=True)
    read_sets = [[sorted(blocks) for blocks in reads[layer]] for layer in (0, 1)]
    assert read_sets[0] == read_sets[1] == [initial, *choices[:-1]]  # gamma = 1: step t reads choice t - 1
    assert len({tuple(blocks) for blocks in read_sets[0]}) > 1
    stats = manager.finish()
    assert stats.managed_layers == 3 and stats.swaps > 0 and stats.copied_bytes > 0


def test_generate_offloads_the_preserve_layers(tiny_llama):
    ids = prompt(seed=4)[0].tolist()
    sampling = SamplingParams(max_new_tokens=6, ignore_eos=True)
    base = lagged_config(tiny_llama, "offload_preserve_layers=false")
    kept_all, lagged = (generate(tiny_llama, ids, config=c, sampling=sampling) for c in (base, lagged_config(tiny_llama)))
    assert lagged.token_ids == kept_all.token_ids  # budget 1.0, gamma 0: every block resident, exact
    assert lagged.kv.managed_layers == 3 and kept_all.kv.managed_layers == 1
    budget = 0.3
    small = generate(tiny_llama, ids, config=lagged_config(tiny_llama, f"decode_budget={budget}"), sampling=sampling)
    small_base = generate(tiny_llama, ids, config=base.with_overrides([f"decode_budget={budget}"]), sampling=sampling)
    token_bytes = 2 * 2 * 16 * 4  # K and V of one token, float32
    resident = math.ceil(budget * N_BLOCKS) * BLOCK - (N_BLOCKS * BLOCK - N)
    assert small_base.kv.gpu_prompt_kv_bytes - small.kv.gpu_prompt_kv_bytes == 2 * (N - resident) * token_bytes
    assert small.kv.cpu_kv_bytes - small_base.kv.cpu_kv_bytes >= 2 * N_BLOCKS * BLOCK * token_bytes
