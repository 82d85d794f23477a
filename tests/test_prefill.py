import dataclasses
import math

import pytest
import torch
from transformers.models.llama.modeling_llama import apply_rotary_pos_emb

from sliminfer.attention import use_sliminfer_attention
from sliminfer.cache import SlimCache
from sliminfer.models import model_parts
from sliminfer.prefill import slim_prefill
from sliminfer.schedule import LayerPlan
from sliminfer.scoring import block_scores, forced_blocks, pool_units, select_blocks, window_unit_scores
from sliminfer.state import ForwardState
from tiny import TINY_SLIM, random_ids, reference_logits


def run_prefill(loaded, ids, config):
    cache = SlimCache(loaded.model.config.num_hidden_layers)
    with torch.inference_mode(), use_sliminfer_attention(loaded.model):
        result = slim_prefill(loaded.model, ids, cache, config)
    return result, cache


@pytest.mark.parametrize("n", [1, 37, 200])
def test_full_prefill_equals_hf(tiny, n):
    ids = random_ids(n, seed=n)
    result, _ = run_prefill(tiny, ids, None)
    with torch.inference_mode():
        want = tiny.model(ids).logits[:, -1].float()
    torch.testing.assert_close(result.logits, want, rtol=1e-5, atol=1e-5)
    assert result.kept_tokens_per_layer == [n] * 4 and not result.pruned


@pytest.mark.parametrize("n", [200, 203, 333])
def test_slim_prefill_equals_reference_on_kept_tokens(tiny, n):
    ids = random_ids(n, seed=n)
    result, _ = run_prefill(tiny, ids, TINY_SLIM)
    assert result.pruned
    torch.testing.assert_close(result.logits, reference_logits(tiny.model, ids, result.kept_positions), rtol=1e-4, atol=1e-4)


@pytest.mark.parametrize("n", [200, 203])
def test_schedule_is_honoured(tiny, n):
    ids = random_ids(n, seed=1)
    result, cache = run_prefill(tiny, ids, TINY_SLIM)
    block = TINY_SLIM.block_size
    missing = math.ceil(n / block) * block - n
    counts = result.kept_tokens_per_layer
    assert counts[0] == n
    for layer, keep in TINY_SLIM.keep_schedule:
        assert counts[layer] == math.ceil(keep * n / block) * block - missing
    for shallow, deep in zip(result.kept_positions, result.kept_positions[1:], strict=False):
        assert set(deep[0].tolist()) <= set(shallow[0].tolist())
        assert torch.equal(deep[0], deep[0].sort().values)
    last = result.kept_positions[-1][0].tolist()
    assert {0, 1} <= set(last) and set(range(n - TINY_SLIM.window, n)) <= set(last)
    assert all(len({p // block for p in positions[0].tolist()}) * block - missing == len(positions[0])
               for positions in result.kept_positions)


def test_cache_holds_what_each_layer_computed(tiny_llama):
    ids = random_ids(200, seed=2)
    result, cache = run_prefill(tiny_llama, ids, TINY_SLIM)
    config = tiny_llama.model.config
    head_dim = config.hidden_size // config.num_attention_heads
    for layer, kept in zip(cache.layers, result.kept_tokens_per_layer, strict=True):
        assert layer.keys.shape == (1, config.num_key_value_heads, kept, head_dim)
        assert layer.get_seq_length() == 200
        assert layer.get_mask_sizes(1) == (kept + 1, 0)
    assert cache.get_seq_length() == 200
    assert cache.kept_tokens_per_layer() == result.kept_tokens_per_layer
    assert cache.kv_bytes() == sum(2 * k * config.num_key_value_heads * head_dim * 4 for k in result.kept_tokens_per_layer)


@torch.inference_mode()
def test_first_cut_keeps_exactly_the_blocks_the_scores_imply(tiny_llama):
    """Recompute layer 0's window scores from its weights and check the kept blocks at layer 1."""
    n, config = 203, TINY_SLIM
    ids = random_ids(n, seed=3)
    result, _ = run_prefill(tiny_llama, ids, config)
    inner = tiny_llama.model.model
    attention, heads = inner.layers[0].self_attn, tiny_llama.model.config.num_attention_heads
    head_dim = attention.head_dim
    normed = inner.layers[0].input_layernorm(inner.embed_tokens(ids))
    q = attention.q_proj(normed).view(1, n, heads, head_dim).transpose(1, 2)
    k = attention.k_proj(normed).view(1, n, -1, head_dim).transpose(1, 2)
    cos, sin = inner.rotary_emb(normed, torch.arange(n)[None])
    q, k = apply_rotary_pos_emb(q, k, cos, sin)
    units = window_unit_scores(q[:, :, -config.window :], k, unit_size=config.unit_size, pooling=config.unit_pooling, scaling=head_dim**-0.5)
    scores = block_scores(units, config.block_size // config.unit_size, config.block_scoring)
    n_keep = math.ceil(config.keep_schedule[0][1] * n / config.block_size)
    expected = select_blocks(scores, n_keep, forced_blocks(n, config.block_size, config.sink_tokens, config.window))
    kept_blocks = sorted({p // config.block_size for p in result.kept_positions[1][0].tolist()})
    assert kept_blocks == expected[0].tolist()


@pytest.mark.parametrize("n", [100, 200, 203, 333])
@pytest.mark.parametrize(
    "overrides",
    [
        [],
        ["min_keep_tokens=96"],
        ["min_keep_tokens=400"],
        ["keep_schedule=1:0.5,3:0.1", "window=40"],
        ["min_prompt_tokens=201"],
    ],
)
def test_layer_plan_predicts_prefill(tiny_llama, n, overrides):
    """The counts known before any work are those prefill computes, floors and clamps included."""
    config = TINY_SLIM.with_overrides(overrides)
    result, _ = run_prefill(tiny_llama, random_ids(n, seed=n), config)
    assert list(LayerPlan.build(config, n, 4).kept_tokens) == result.kept_tokens_per_layer
    assert LayerPlan.build(None, n, 4) == LayerPlan.full(n, 4)
    assert LayerPlan.build(None, n, 4).kept_tokens == (n,) * 4


def test_short_prompts_are_not_pruned(tiny_llama):
    ids = random_ids(100)
    config = TINY_SLIM.with_overrides(["min_prompt_tokens=101"])
    result, _ = run_prefill(tiny_llama, ids, config)
    assert not result.pruned and result.kept_tokens_per_layer == [100] * 4


@pytest.mark.parametrize("chunk", [1, 7, 64])
def test_chunked_mlp_layer_matches_the_stock_layer(tiny, chunk):
    """`run_layer` split into parts with a token-chunked MLP gives the stock layer's output and cache."""
    parts = model_parts(tiny.model)
    ids = random_ids(150, seed=3)
    positions = torch.arange(150)[None]
    outputs, caches = [], []
    for mlp_chunk in (0, chunk):
        cache = SlimCache(parts.num_layers)
        with torch.inference_mode(), use_sliminfer_attention(tiny.model):
            hidden, rope = parts.embed(ids, positions)
            for index in range(parts.num_layers):
                hidden = parts.run_layer(index, hidden, positions, rope, cache, mlp_chunk)
        outputs.append(hidden)
        caches.append(cache)
    torch.testing.assert_close(outputs[1], outputs[0], rtol=1e-6, atol=1e-6)
    for stock, chunked in zip(caches[0].layers, caches[1].layers, strict=True):
        torch.testing.assert_close(chunked.keys, stock.keys, rtol=1e-6, atol=1e-6)


@pytest.mark.parametrize("n", [200, 333])
def test_chunked_slim_prefill_keeps_the_same_tokens_and_logits(tiny, n):
    ids = random_ids(n, seed=n)
    whole, _ = run_prefill(tiny, ids, TINY_SLIM)
    chunked, _ = run_prefill(tiny, ids, dataclasses.replace(TINY_SLIM, prefill_chunk_tokens=32))
    assert all(torch.equal(a, b) for a, b in zip(whole.kept_positions, chunked.kept_positions, strict=True))
    torch.testing.assert_close(chunked.logits, whole.logits, rtol=1e-5, atol=1e-5)


def test_every_cut_keeps_at_least_min_keep_tokens(tiny):
    n, block = 200, TINY_SLIM.block_size
    result, _ = run_prefill(tiny, random_ids(n, seed=5), dataclasses.replace(TINY_SLIM, min_keep_tokens=96))
    missing = math.ceil(n / block) * block - n
    # cut 1 keeps 0.5 x 200 = 100 tokens (7 blocks, above the floor); cut 3 would keep 50 (4 blocks).
    # The floor counts the partial last block's missing tokens: 7 blocks, not the 6 that held only 88.
    assert result.kept_tokens_per_layer == [n, 7 * block - missing, 7 * block - missing, 7 * block - missing]
    assert min(result.kept_tokens_per_layer) >= 96


@torch.inference_mode()
@pytest.mark.parametrize("combine", ["max", "sum"])
@pytest.mark.parametrize("heads", ["mean", "max", "topk"])
def test_cut_scored_by_earlier_layers_keeps_what_their_combined_scores_imply(tiny_llama, combine, heads):
    """A cut at layer 2 scored by layers 0 and 1: record both layers' window scores on the
    unpruned model, combine them by hand, and check prefill kept exactly those blocks."""
    n = 203
    config = dataclasses.replace(
        TINY_SLIM, preserve_layers=2, keep_schedule=((2, 0.25),), score_layers=((0, 1),),
        score_combine=combine, head_aggregation=heads, unit_pool_kernel=3,
    )
    ids = random_ids(n, seed=11)
    result, _ = run_prefill(tiny_llama, ids, config)
    state = ForwardState.for_config(config, frozenset({0, 1}))
    with use_sliminfer_attention(tiny_llama.model):
        tiny_llama.model(ids, slim=state)
    n_blocks = math.ceil(n / config.block_size)
    per_layer = []
    for layer in (0, 1):
        units = pool_units(state.unit_scores[layer], 3)
        scores = block_scores(units, config.block_size // config.unit_size, config.block_scoring)
        per_layer.append(scores / scores.sum())
    combined = torch.stack(per_layer).amax(0) if combine == "max" else torch.stack(per_layer).sum(0)
    forced = forced_blocks(n, config.block_size, config.sink_tokens, config.window)
    want = select_blocks(combined, math.ceil(0.25 * n / config.block_size), forced)[0]
    kept = result.kept_positions[2][0]
    assert (kept[:: config.block_size] // config.block_size).tolist() == want.tolist()
    assert n_blocks > len(want)


@pytest.mark.parametrize("mass", [0.2, 0.6, 0.95])
def test_keep_mass_keeps_between_the_floor_and_the_schedule(tiny_llama, mass):
    n = 333
    config = dataclasses.replace(TINY_SLIM, keep_mass=mass, min_keep_tokens=40)
    result, _ = run_prefill(tiny_llama, random_ids(n, seed=4), config)
    caps = LayerPlan.build(config, n, 4).kept_tokens
    assert all(40 <= kept <= cap for kept, cap in zip(result.kept_tokens_per_layer, caps, strict=True))
    torch.testing.assert_close(
        result.logits, reference_logits(tiny_llama.model, random_ids(n, seed=4), result.kept_positions), rtol=1e-4, atol=1e-4
    )


def test_no_deprecated_cache_argument_warning(tiny_llama):
    """Our layer calls use the cache keyword the installed transformers takes (`cache` or, in
    5.17, `past_key_values`), so no FutureWarning about the old name is raised."""
    import warnings

    with warnings.catch_warnings():
        warnings.simplefilter("error", FutureWarning)
        run_prefill(tiny_llama, random_ids(200, seed=1), TINY_SLIM)
        run_prefill(tiny_llama, random_ids(200, seed=1), dataclasses.replace(TINY_SLIM, prefill_chunk_tokens=64))


def test_cache_argument_follows_the_signature():
    from sliminfer.models import cache_argument

    class Old:
        def forward(self, hidden_states, past_key_values=None, **kwargs): ...

    class New:
        def forward(self, hidden_states, cache=None, **kwargs): ...

    assert cache_argument(Old) == "past_key_values" and cache_argument(New) == "cache"
