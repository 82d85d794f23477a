import math

import pytest
import torch

from sliminfer.scoring import (
    aggregate_heads,
    block_scores,
    blocks_to_keep,
    combine_layers,
    forced_blocks,
    kept_token_indices,
    mass_block_count,
    pool_units,
    select_blocks,
    to_prompt_blocks,
    window_unit_scores,
)


def reference_unit_scores(queries, keys, unit_size, pooling, scaling):
    """Loop-level reference: per head, per query, softmax, pool, then average."""
    batch, heads, window, _ = queries.shape
    kv_heads, n = keys.shape[1], keys.shape[2]
    n_units = math.ceil(n / unit_size)
    out = torch.zeros(batch, n_units)
    for b in range(batch):
        for h in range(heads):
            k = keys[b, h // (heads // kv_heads)]
            for w in range(window):
                pos = n - window + w
                q = queries[b, h, w]
                if pooling == "key_mean":
                    reps = torch.stack([k[u * unit_size : (u + 1) * unit_size].mean(0) for u in range(n_units)])
                    logits = reps @ q * scaling
                    logits[torch.arange(n_units) * unit_size > pos] = float("-inf")
                    out[b] += logits.softmax(-1)
                else:
                    logits = k @ q * scaling
                    logits[torch.arange(n) > pos] = float("-inf")
                    probs = logits.softmax(-1)
                    for u in range(n_units):
                        chunk = probs[u * unit_size : (u + 1) * unit_size]
                        out[b, u] += chunk.max() if pooling == "score_max" else chunk.sum()
    return out / (heads * window)


@pytest.mark.parametrize("pooling", ["key_mean", "score_max", "score_mean"])
@pytest.mark.parametrize("n", [27, 61, 64])
def test_window_unit_scores_match_loop_reference(pooling, n):
    torch.manual_seed(n)
    queries, keys = torch.randn(2, 6, 5, 8), torch.randn(2, 2, n, 8)
    got = window_unit_scores(queries, keys, unit_size=4, pooling=pooling, scaling=8**-0.5)
    want = reference_unit_scores(queries, keys, 4, pooling, 8**-0.5)
    torch.testing.assert_close(got, want, rtol=1e-5, atol=1e-6)


def test_a_salient_key_wins_its_unit():
    keys = torch.zeros(1, 1, 32, 4)
    keys[0, 0, 13] = torch.tensor([5.0, 0, 0, 0])
    queries = torch.tensor([1.0, 0, 0, 0]).view(1, 1, 1, 4).expand(1, 2, 1, 4)
    for pooling in ["key_mean", "score_max", "score_mean"]:
        scores = window_unit_scores(queries, keys, unit_size=4, pooling=pooling, scaling=1.0)
        assert scores.argmax().item() == 3


def test_block_scores_max_and_mean_with_partial_last_block():
    units = torch.tensor([[1.0, 5.0, 2.0, 2.0, 3.0]])
    assert block_scores(units, 2, "max").tolist() == [[5.0, 2.0, 3.0]]
    assert block_scores(units, 2, "mean").tolist() == [[3.0, 2.0, 3.0]]


def test_forced_blocks_cover_sinks_and_window():
    forced = forced_blocks(n_tokens=100, block_size=16, sink_tokens=4, window=20)
    assert forced.tolist() == [True, False, False, False, False, True, True]
    assert forced_blocks(100, 16, 0, 1).tolist() == [False] * 6 + [True]
    assert forced_blocks(100, 16, 20, 1).tolist()[:2] == [True, True]


def test_select_blocks_keeps_forced_then_best_in_order():
    scores = torch.tensor([[0.0, 9.0, 1.0, 8.0, 0.5]])
    forced = torch.tensor([True, False, False, False, True])
    assert select_blocks(scores, 4, forced).tolist() == [[0, 1, 3, 4]]
    assert select_blocks(scores, 1, forced).tolist() == [[0, 4]]
    assert select_blocks(scores, 99, forced).tolist() == [[0, 1, 2, 3, 4]]


def test_blocks_to_keep_rounds_up():
    assert blocks_to_keep(0.25, 1000, 64) == 4
    assert blocks_to_keep(1.0, 100, 16) == 7


def test_blocks_to_keep_honours_the_token_floor_but_never_exceeds_the_prompt():
    assert blocks_to_keep(0.2, 2048, 64, min_tokens=1024) == 16
    assert blocks_to_keep(0.2, 8192, 64, min_tokens=1024) == 26
    assert blocks_to_keep(0.2, 500, 64, min_tokens=1024) == 8


def test_kept_token_indices_trims_partial_last_block():
    kept = torch.tensor([[0, 2, 3]])
    indices = kept_token_indices(kept, block_size=4, n_tokens=14)
    assert indices.tolist() == [[0, 1, 2, 3, 8, 9, 10, 11, 12, 13]]


def test_head_aggregation_mean_max_topk():
    per_head = torch.tensor([[[1.0, 0.0], [0.0, 0.0], [0.5, 0.3], [0.1, 0.9]]])
    assert aggregate_heads(per_head, "mean")[0].tolist() == pytest.approx([0.4, 0.3])
    assert aggregate_heads(per_head, "max")[0].tolist() == pytest.approx([1.0, 0.9])
    assert aggregate_heads(per_head, "topk", 2)[0].tolist() == pytest.approx([0.75, 0.6])
    assert aggregate_heads(per_head, "topk", 9)[0].tolist() == pytest.approx([0.4, 0.3])


def test_pool_units_averages_neighbours_and_keeps_the_ends():
    scores = torch.tensor([[0.0, 3.0, 0.0, 0.0]])
    assert pool_units(scores, 1) is scores
    assert pool_units(scores, 3)[0].tolist() == pytest.approx([1.5, 1.0, 1.0, 0.0])


def test_to_prompt_blocks_normalizes_and_places_by_original_id():
    out = to_prompt_blocks(torch.tensor([[1.0, 3.0]]), torch.tensor([[1, 4]]), 6)
    assert out.tolist() == [[0.0, 0.25, 0.0, 0.0, 0.75, 0.0]]
    layers = [out, to_prompt_blocks(torch.tensor([[2.0, 2.0]]), torch.tensor([[0, 1]]), 6)]
    assert combine_layers(layers, "max").tolist() == [[0.5, 0.5, 0.0, 0.0, 0.75, 0.0]]
    assert combine_layers(layers, "sum").tolist() == [[0.5, 0.75, 0.0, 0.0, 0.75, 0.0]]


def test_mass_block_count_counts_unforced_mass_within_floor_and_cap():
    scores = torch.tensor([[9.0, 0.5, 0.3, 0.1, 0.1, 9.0]])
    forced = torch.tensor([True, False, False, False, False, True])
    # Unforced mass 1.0: 0.5 reaches 50%, 0.5 + 0.3 reaches 80%.
    assert mass_block_count(scores, forced, 0.5, floor=0, cap=6) == 2 + 1
    assert mass_block_count(scores, forced, 0.8, floor=0, cap=6) == 2 + 2
    assert mass_block_count(scores, forced, 0.99, floor=0, cap=5) == 5
    assert mass_block_count(scores, forced, 0.1, floor=4, cap=6) == 4
