"""benchmarks/sparse_recall.py's pure parts: what an adaptive pattern computes and keeps."""

import torch

from sliminfer.attention.sparse import row_block_pattern


def test_adaptive_row_reports_the_share_computed_and_the_true_mass_in_it(load_benchmark):
    recall = load_benchmark("sparse_recall")
    truth = torch.tensor([[0.5, 0.1, 0.4, 0.0], [0.25, 0.25, 0.5, 0.0]])
    pattern = torch.zeros(2, 4, 4, dtype=torch.bool)
    pattern[0, 2, [0, 2]] = True
    pattern[1, 2, [0, 1, 2]] = True
    density, kept = recall.adaptive_row(truth, pattern, 2)
    assert abs(density - (2 / 3 + 1) / 2) < 1e-6 and abs(kept - (0.9 + 1.0) / 2) < 1e-6


def test_a_flatter_estimate_computes_more_blocks_at_the_same_mass(load_benchmark):
    """What section 6.3 measures: the adaptive mode's density grows as its estimate flattens."""
    recall = load_benchmark("sparse_recall")
    n = 64
    peaked = torch.full((1, 1, n, n), 1e-3)
    peaked[..., 0] = 1.0
    flat = torch.ones(1, 1, n, n)
    truth = torch.ones(1, n) / n
    row = n - 2
    densities = [
        recall.adaptive_row(truth, row_block_pattern(scores, "adaptive", 0.0, 0.9)[0], row)[0] for scores in (peaked, flat)
    ]
    assert densities[0] < 0.2 < 0.8 < densities[1]
