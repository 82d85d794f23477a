"""Block-sparse prefill attention: the pattern rule, the kernel against a masked reference, and
the prefill with it switched on."""

import dataclasses
import math

import pytest
import torch
from torch.nn.attention.flex_attention import flex_attention

from sliminfer.attention.sdpa import causal_attention
from sliminfer.attention.sparse import (
    KERNEL_OPTIONS_ENV,
    LOCAL_BAND,
    SPARSE_BLOCK,
    block_lists,
    block_mean_scores,
    block_pattern,
    estimated_pattern,
    flex_kernel_options,
    key_block_profile,
    row_block_pattern,
    sparse_causal_attention,
    to_block_mask,
    token_mask,
)
from sliminfer.config import ConfigError, SlimConfig
from sliminfer.errors import UserError
from sliminfer.generate import SamplingParams, generate
from sliminfer.schedule import LayerPlan
from test_prefill import run_prefill
from tiny import TINY_SLIM, random_ids


def qkv(n, heads=4, kv_heads=2, dim=16, seed=0):
    g = torch.Generator().manual_seed(seed)
    return (torch.randn(1, heads, n, dim, generator=g), torch.randn(1, kv_heads, n, dim, generator=g),
            torch.randn(1, kv_heads, n, dim, generator=g))


def chosen(pattern, head, row):
    return set(torch.nonzero(pattern[0, head, row]).flatten().tolist())


def test_fixed_pattern_keeps_the_forced_blocks_and_the_share_per_row():
    profile = torch.rand(1, 2, 10, generator=torch.Generator().manual_seed(1))
    pattern = block_pattern(profile, "fixed", 0.3, 0.95)
    assert not (pattern & ~torch.ones(10, 10, dtype=torch.bool).tril()).any()
    for head in range(2):
        for row in range(9):
            blocks = chosen(pattern, head, row)
            assert {0, row, max(row - 1, 0)} <= blocks
            best = set(profile[0, head, : row + 1].argsort(descending=True)[: -(-3 * (row + 1) // 10)].tolist())
            assert best <= blocks
            assert len(blocks) <= len(best | {0, row, max(row - 1, 0)})
        assert chosen(pattern, head, 9) == set(range(10))


def test_adaptive_pattern_keeps_the_fewest_blocks_holding_the_mass():
    profile = torch.full((1, 1, 10), 1e-4)
    profile[0, 0, 3] = 1.0
    pattern = block_pattern(profile, "adaptive", 0.15, 0.95)
    assert chosen(pattern, 0, 6) == {0, 3, 5, 6}
    assert chosen(pattern, 0, 2) == {0, 1, 2}
    assert block_pattern(profile, "adaptive", 0.15, 1.0)[0, 0, 6].sum() == 7


def reference_row(scores, row, last, mode, density, mass):
    """Query block `row`'s key blocks, the plain way: sort the visible ones, take the top ones."""
    if row == last:
        return set(range(row + 1))
    order = sorted(range(row + 1), key=lambda col: -scores[col])
    if mode == "fixed":
        count = math.ceil(density * (row + 1))
    else:
        count, running = 0, 0.0
        while running < mass * sum(scores[: row + 1]):
            running += scores[order[count]]
            count += 1
    return set(order[:count]) | {0} | set(range(max(row - LOCAL_BAND, 0), row + 1))


@pytest.mark.parametrize("n_blocks", [1, 2, 7, 19])
@pytest.mark.parametrize("mode, density, mass", [("fixed", 0.25, 0.9), ("fixed", 0.5, 0.9), ("adaptive", 0.25, 0.5), ("adaptive", 0.25, 0.9)])
def test_pattern_equals_a_per_row_sort(n_blocks, mode, density, mass):
    profile = torch.rand(2, 3, n_blocks, generator=torch.Generator().manual_seed(n_blocks))
    assert all(len(set(head.tolist())) == n_blocks for head in profile.flatten(0, 1))
    pattern = block_pattern(profile, mode, density, mass)
    for batch in range(2):
        for head in range(3):
            scores = profile[batch, head].tolist()
            for row in range(n_blocks):
                got = set(torch.nonzero(pattern[batch, head, row]).flatten().tolist())
                assert got == reference_row(scores, row, n_blocks - 1, mode, density, mass), (batch, head, row)


@pytest.mark.parametrize("n_blocks", [1, 2, 9, 33])
@pytest.mark.parametrize("mode", ["fixed", "adaptive"])
def test_a_ranking_per_row_equals_the_shared_one_when_the_rows_agree(n_blocks, mode):
    profile = torch.rand(2, 3, n_blocks, generator=torch.Generator().manual_seed(n_blocks))
    per_row = profile[:, :, None, :].expand(-1, -1, n_blocks, -1)
    assert torch.equal(row_block_pattern(per_row, mode, 0.3, 0.8), block_pattern(profile, mode, 0.3, 0.8))


def test_block_mean_scores_are_the_block_means_softmax_over_causal_blocks():
    q, k, _ = qkv(300)
    scores = block_mean_scores(q, k, 0.25)
    assert scores.shape == (1, 4, 3, 3)
    bounds = [(0, 128), (128, 256), (256, 300)]
    for head in range(4):
        for row, (qs, qe) in enumerate(bounds):
            q_mean = q[0, head, qs:qe].mean(0)
            logits = torch.stack([q_mean @ k[0, head // 2, ks:ke].mean(0) * 0.25 for ks, ke in bounds[: row + 1]])
            torch.testing.assert_close(scores[0, head, row, : row + 1], logits.softmax(0))
            assert not scores[0, head, row, row + 1 :].any()


def test_block_lists_put_the_chosen_blocks_first_in_order():
    chosen = torch.tensor([[False, True, False, True, True], [False] * 5, [True] * 5])
    count, indices = block_lists(chosen)
    assert count.tolist() == [3, 0, 5]
    assert indices.tolist() == [[1, 3, 4, 0, 2], [0, 1, 2, 3, 4], [0, 1, 2, 3, 4]]


def test_profile_is_the_last_queries_attention_per_key_block():
    q, k, _ = qkv(300)
    profile = key_block_profile(q, k, 0.25)
    assert profile.shape == (1, 4, 3)
    torch.testing.assert_close(profile.sum(-1), torch.full((1, 4), 64.0))
    want = torch.zeros(4, 300)
    for head in range(4):
        for position in range(300 - 64, 300):
            logits = q[0, head, position] @ k[0, head // 2, : position + 1].T * 0.25
            want[head, : position + 1] += logits.softmax(0)
    torch.testing.assert_close(profile[0], torch.nn.functional.pad(want, (0, 84)).view(4, 3, SPARSE_BLOCK).sum(-1))


@pytest.mark.parametrize("n", [256, 300])
def test_density_one_equals_dense_causal_attention(n):
    q, k, v = qkv(n)
    everything = torch.ones(1, 4, -(-n // SPARSE_BLOCK), -(-n // SPARSE_BLOCK), dtype=torch.bool).tril()
    torch.testing.assert_close(sparse_causal_attention(q, k, v, 0.25, everything), causal_attention(q, k, v, 0.25))


@pytest.mark.filterwarnings("ignore:flex_attention called without torch.compile")
@pytest.mark.parametrize("n", [384, 400])
def test_flex_block_mask_computes_exactly_the_masked_reference(n):
    """The BlockMask CUDA runs (here through eager flex) equals attention masked to the chosen
    blocks, which is not dense attention."""
    q, k, v = qkv(n, seed=n)
    pattern = block_pattern(key_block_profile(q, k, 0.25), "fixed", 0.2, 0.95)
    pattern[0, 0, 2, 1] = False  # a skipped block below the band, so the mask matters
    want = torch.nn.functional.scaled_dot_product_attention(q, k, v, attn_mask=token_mask(pattern, n), scale=0.25, enable_gqa=True)
    got = flex_attention(q, k, v, block_mask=to_block_mask(pattern, n), scale=0.25, enable_gqa=True)
    torch.testing.assert_close(got, want, rtol=1e-5, atol=1e-5)
    torch.testing.assert_close(sparse_causal_attention(q, k, v, 0.25, pattern), want.transpose(1, 2))
    assert not torch.allclose(want, torch.nn.functional.scaled_dot_product_attention(q, k, v, is_causal=True, scale=0.25, enable_gqa=True))


def test_plan_names_the_sparse_layers():
    config = dataclasses.replace(TINY_SLIM, sparse_prefill="fixed", sparse_min_tokens=300)
    assert LayerPlan.build(config, 400, 4).sparse_layers(config) == {0}
    every = dataclasses.replace(config, sparse_layers="all", sparse_min_tokens=500)
    plan = LayerPlan.build(every, 1300, 4)
    assert plan.kept_tokens == (1300, 644, 644, 324) and plan.sparse_layers(every) == {0, 1, 2}
    assert LayerPlan.build(config, 299, 4).sparse_layers(config) == frozenset()
    assert LayerPlan.build(TINY_SLIM, 400, 4).sparse_layers(TINY_SLIM) == frozenset()


def test_prefill_with_density_one_equals_plain_slim(tiny):
    ids = random_ids(520, seed=5)
    plain, _ = run_prefill(tiny, ids, TINY_SLIM)
    config = dataclasses.replace(TINY_SLIM, sparse_prefill="fixed", sparse_density=1.0, sparse_min_tokens=0)
    sparse, _ = run_prefill(tiny, ids, config)
    torch.testing.assert_close(sparse.logits, plain.logits, rtol=1e-5, atol=1e-5)
    assert sparse.sparse_share == {0: pytest.approx(1.0)} and plain.sparse_share == {}


@pytest.mark.parametrize("mode", ["fixed", "adaptive"])
def test_block_means_pattern_built_per_kv_head_equals_all_heads_at_once(mode):
    q, k, _ = qkv(700, seed=3)
    whole = row_block_pattern(block_mean_scores(q, k, 0.25), mode, 0.3, 0.9)
    assert torch.equal(estimated_pattern(q, k, 0.25, "block_means", mode, 0.3, 0.9), whole)


@pytest.mark.parametrize("estimate", ["last_queries", "block_means"])
def test_prefill_with_a_sparse_pattern_records_its_share(tiny, estimate):
    config = dataclasses.replace(
        TINY_SLIM, sparse_prefill="fixed", sparse_density=0.1, sparse_min_tokens=0, sparse_layers="all", sparse_estimate=estimate
    )
    result, _ = run_prefill(tiny, random_ids(900, seed=6), config)
    assert set(result.sparse_share) == {0, 1, 2, 3}
    assert 0.0 < result.sparse_share[0] < 1.0
    dense, _ = run_prefill(tiny, random_ids(900, seed=6), dataclasses.replace(config, sparse_density=1.0))
    assert not torch.allclose(result.logits, dense.logits)


@pytest.mark.parametrize("update, message", [
    ({"sparse_prefill": "dense"}, "sparse_prefill"),
    ({"sparse_density": 0.0}, "sparse_density"),
    ({"sparse_mass": 1.5}, "sparse_mass"),
    ({"sparse_layers": "some"}, "sparse_layers"),
    ({"sparse_min_tokens": -1}, "sparse_min_tokens"),
    ({"sparse_estimate": "oracle"}, "sparse_estimate"),
])
def test_bad_sparse_settings_are_one_line_errors(update, message):
    with pytest.raises(ConfigError, match=message):
        SlimConfig.from_dict(update)


def test_generation_reports_the_attention_density_per_layer(tiny):
    config = dataclasses.replace(TINY_SLIM, sparse_prefill="fixed", sparse_density=0.1, sparse_min_tokens=0)
    sampling = SamplingParams(max_new_tokens=2, ignore_eos=True)
    result = generate(tiny, random_ids(900, seed=6)[0].tolist(), config=config, sampling=sampling)
    assert len(result.attention_density_per_layer) == 4
    assert 0.0 < result.attention_density_per_layer[0] < 1.0 and result.attention_density_per_layer[1:] == [1.0] * 3
    assert result.sparse_prefill_note.startswith("sparse prefill: attention density 0.")
    assert result.sparse_prefill_note.endswith(" in 1 layers")
    plain = generate(tiny, random_ids(900, seed=6)[0].tolist(), config=TINY_SLIM, sampling=sampling)
    assert plain.attention_density_per_layer == [1.0] * 4 and plain.sparse_prefill_note is None
    # Asked for but below its minimum length: the result says so instead of looking sparse.
    short = dataclasses.replace(config, sparse_min_tokens=901)
    skipped = generate(tiny, random_ids(900, seed=6)[0].tolist(), config=short, sampling=sampling)
    assert skipped.attention_density_per_layer == [1.0] * 4
    assert skipped.sparse_prefill_note == (
        "sparse prefill (fixed) not applied: no layer of sparse_layers=dense computed >= sparse_min_tokens=901 tokens"
    )
    full = generate(tiny, random_ids(900, seed=6)[0].tolist(), method="full", config=short, sampling=sampling)
    assert full.sparse_prefill_note is None


def test_kernel_options_default_tuned_and_overridden(monkeypatch):
    flex_kernel_options.cache_clear()
    monkeypatch.delenv(KERNEL_OPTIONS_ENV, raising=False)
    assert flex_kernel_options((1, 0)) == {"ROWS_GUARANTEED_SAFE": True}
    flex_kernel_options.cache_clear()
    monkeypatch.setenv(KERNEL_OPTIONS_ENV, '{"BLOCK_N": 128, "num_warps": 8}')
    assert flex_kernel_options((9, 0)) == {"ROWS_GUARANTEED_SAFE": True, "BLOCK_N": 128, "num_warps": 8}
    for text, problem in (("{BLOCK_N: 128}", "is not JSON"), ("[1]", "expected a JSON object")):
        flex_kernel_options.cache_clear()
        monkeypatch.setenv(KERNEL_OPTIONS_ENV, text)
        with pytest.raises(UserError, match=problem):
            flex_kernel_options((9, 0))
    flex_kernel_options.cache_clear()
