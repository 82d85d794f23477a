"""The FLOP and byte model against numbers worked out by hand for Llama-3.1-8B."""

from __future__ import annotations

import pytest

from sliminfer.bench.flops import (
    attention_flops,
    flop_floor_s,
    full_prefill_flops,
    ideal_speedup,
    kv_bytes_per_token_per_layer,
    kv_cache_bytes,
    linear_flops_per_token,
    prefill_flops,
)
from sliminfer.bench.random_models import random_config
from sliminfer.models import ModelShape

LLAMA_8B = ModelShape(
    hidden=4096, layers=32, heads=32, kv_heads=8, head_dim=128, intermediate=14336, vocab=128256
)


def test_linear_flops_per_token_is_twice_the_non_embedding_params():
    assert linear_flops_per_token(LLAMA_8B) == pytest.approx(13.96e9, rel=1e-3)


def test_attention_over_all_layers_is_262144_n_squared():
    n = 32768
    assert attention_flops(LLAMA_8B, n) * LLAMA_8B.layers == 262_144 * n * n


@pytest.mark.parametrize(
    ("tokens", "total_pflop"), [(8192, 0.132), (32768, 0.739), (65536, 2.041), (131072, 6.333)]
)
def test_full_prefill_matches_the_hand_computed_totals(tokens, total_pflop):
    assert full_prefill_flops(LLAMA_8B, tokens) / 1e15 == pytest.approx(total_pflop, rel=3e-3)


@pytest.mark.parametrize(
    ("preserve", "keep", "bound_32k", "bound_128k"),
    [(8, 0.25, 2.60, 2.96), (6, 0.25, 3.01, 3.54), (4, 0.1, 5.48, 6.39)],
)
def test_ideal_speedup_matches_the_schedule_table(preserve, keep, bound_32k, bound_128k):
    for tokens, bound in ((32768, bound_32k), (131072, bound_128k)):
        kept = [tokens] * preserve + [int(tokens * keep)] * (32 - preserve)
        assert ideal_speedup(LLAMA_8B, tokens, kept) == pytest.approx(bound, abs=0.01)


def test_sparse_prefill_scales_only_the_attention_of_its_layers():
    """BENCHMARKS section 6's FLOP ideal: the default schedule at 128k with the 8 dense layers'
    attention at 15% density."""
    tokens = 131072
    kept = [tokens] * 8 + [tokens // 4] * 24
    density = [0.15] * 8 + [1.0] * 24
    assert full_prefill_flops(LLAMA_8B, tokens) / prefill_flops(LLAMA_8B, kept, density) == pytest.approx(5.37, abs=0.01)
    saved = prefill_flops(LLAMA_8B, kept) - prefill_flops(LLAMA_8B, kept, density)
    assert saved == pytest.approx(0.85 * 8 * attention_flops(LLAMA_8B, tokens))


def test_lm_head_counts_once_and_kept_tokens_must_cover_every_layer():
    assert prefill_flops(LLAMA_8B, [0] * 32) == 2 * 4096 * 128256
    with pytest.raises(ValueError, match="32 layers"):
        prefill_flops(LLAMA_8B, [10] * 31)


def test_kv_bytes_and_floor():
    assert kv_bytes_per_token_per_layer(LLAMA_8B, dtype_bytes=2) * 32 == 128 * 1024
    assert kv_cache_bytes(LLAMA_8B, [100] * 8 + [25] * 24, dtype_bytes=2) == 4096 * (800 + 600)
    assert flop_floor_s(791e12, 791e12) == 1.0


def test_shapes_read_from_the_random_architectures():
    assert ModelShape.from_hf_config(random_config("llama-3.1-8b")) == LLAMA_8B
    qwen = ModelShape.from_hf_config(random_config("qwen2.5-7b"))
    assert qwen == ModelShape(
        hidden=3584, layers=28, heads=28, kv_heads=4, head_dim=128, intermediate=18944, vocab=152064
    )
