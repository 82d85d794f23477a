"""The swap rule of Algorithm 1 (overlap-aware swapping): two pure functions on block-id sets.

A slim layer's resident set R is what its attention reads; each decode step proposes a new
active set A (the blocks the current token ranks highest). Moving blocks costs PCIe time, so
the layer swaps only when the proposal has drifted far enough from what is resident:
overlap(A, R) = |A & R| / |A| below `gamma`. Normalizing by |A| (not Jaccard) reads as "the
share of the blocks we want that are already here"; |A| = |R| in the manager, so both agree.
"""

from __future__ import annotations

from collections.abc import Collection


def overlap(new: Collection[int], resident: Collection[int]) -> float:
    """|new & resident| / |new|: the share of the wanted blocks already resident (1.0 if none wanted)."""
    if not new:
        return 1.0
    return len(set(new) & set(resident)) / len(new)


def should_swap(overlap_ratio: float, gamma: float) -> bool:
    """Swap in the missing blocks only when `overlap_ratio < gamma`.

    `gamma = 0` never swaps (the first choice stays resident); `gamma = 1` swaps whenever any
    wanted block is missing (attention always reads exactly the current top blocks).
    """
    return overlap_ratio < gamma
