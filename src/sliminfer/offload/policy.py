"""The swap rule of Algorithm 1 (overlap-aware swapping), as one pure tensor function.

A slim layer's resident set R is what its attention reads; each decode step proposes a new
active set A (the blocks the current token ranks highest). Moving blocks costs PCIe time, so
the layer swaps only when the proposal has drifted far enough from what is resident:
overlap(A, R) = |A & R| / |A| below `gamma`. Normalizing by |A| (not Jaccard) reads as "the
share of the blocks we want that are already here"; |A| = |R| in the manager, so both agree.

A swap brings in at most `max_swap_blocks` of the missing blocks per step (the best-ranked
ones) over as many stale slots (those holding the worst-ranked unwanted blocks); the other
missing blocks are *deferred*: they come in at a later step if they are still wanted. The cap
keeps the work of a step fixed, which is what lets a captured CUDA graph replay a swapping
step. The rule runs on the device without a host sync (the eager manager and the graphed step
call the same function, so both make the same choices).
"""

from __future__ import annotations

from dataclasses import dataclass

import torch


@dataclass
class SwapPlan:
    """One step's swap for one layer group; all tensors on the scores' device.

    Attributes:
        block_ids: `[cap]` int64 local ids of the blocks to bring in, ascending in the first
            `count` rows, 0 in the others (a valid id, so fixed-shape gathers stay in bounds).
        slots: `[cap]` int64 slots they replace, ascending in the first `count` rows,
            `n_slots` (one past the last slot) in the others.
        count: 0-dim int64, rows that swap (0 when overlap >= gamma).
        missing: 0-dim int64, wanted blocks not resident before the swap.
        overlap: 0-dim float32, |A & R| / |A|.
    """

    block_ids: torch.Tensor
    slots: torch.Tensor
    count: torch.Tensor
    missing: torch.Tensor
    overlap: torch.Tensor


def plan_swaps(
    scores: torch.Tensor, active: torch.Tensor, slot_blocks: torch.Tensor, gamma: float | torch.Tensor, cap: int
) -> SwapPlan:
    """Algorithm 1 with a per-step cap: which missing blocks replace which stale slots.

    With `cap >= |A \\ R|` this is exactly the uncapped rule: every missing block, ascending,
    into every stale slot, ascending (|A \\ R| = |R \\ A| since |A| = |R|).

    Args:
        scores: `[n_blocks]` the current token's block scores (forced blocks +inf).
        active: `[k]` int64 the active set A (distinct local ids).
        slot_blocks: `[n_slots]` int64, slot -> resident block (every slot filled, distinct).
        gamma: swap only when overlap < gamma (a 0-dim tensor may change between graph replays).
        cap: most blocks swapped in, `1 <= cap <= n_slots`.
    """
    n_blocks, n_slots, device = scores.numel(), slot_blocks.numel(), scores.device
    wanted = torch.zeros(n_blocks, dtype=torch.bool, device=device).index_fill_(0, active, True)
    resident = torch.zeros_like(wanted).index_fill_(0, slot_blocks, True)
    missing = wanted & ~resident
    n_missing = missing.sum()
    overlap = 1.0 - n_missing.float() / active.numel()
    count = torch.where(overlap < gamma, n_missing.clamp(max=cap), 0)
    rows = torch.arange(cap, device=device) < count
    incoming = scores.float().masked_fill(~missing, float("-inf")).topk(cap).indices
    stale_scores = scores.float()[slot_blocks].masked_fill(wanted[slot_blocks], float("inf"))
    outgoing = stale_scores.topk(cap, largest=False).indices
    block_ids = torch.where(rows, incoming, n_blocks).sort().values
    slots = torch.where(rows, outgoing, n_slots).sort().values
    return SwapPlan(torch.where(rows, block_ids, 0), slots, count, n_missing, overlap)


def swap_cap(max_swap_blocks: int, n_slots: int) -> int:
    """Most blocks one swap brings into a layer of `n_slots` slots (`max_swap_blocks`; 0 = all)."""
    return min(max_swap_blocks or n_slots, n_slots)


def resident_after(slot_blocks: torch.Tensor, plan: SwapPlan) -> torch.Tensor:
    """`[n_slots]` slot -> block once `plan` is applied (unused rows write a dropped extra entry)."""
    extended = torch.cat([slot_blocks, slot_blocks[:1]])
    return extended.index_copy_(0, plan.slots, plan.block_ids)[:-1]


def holds_top_block(scores: torch.Tensor, forced: torch.Tensor, slot_blocks: torch.Tensor) -> torch.Tensor:
    """0-dim bool: the resident set holds the best-scored unforced block (the block the score
    layer attends to most besides the always-resident sink and window blocks).

    Args:
        scores: `[n_blocks]`; forced: `[n_blocks]` bool; slot_blocks: `[n_slots]` int64.
    """
    top = scores.float().masked_fill(forced, float("-inf")).argmax()
    return (slot_blocks == top).any()
