"""Token-unit scores, block scores and block selection: pure tensor functions.

The prompt is cut into blocks of `block_size` tokens, each block into units of `unit_size`
tokens. The last `window` prompt queries score every unit; a block is scored from its units
(by default its best unit, so one salient token is not diluted by its neighbours); the top
blocks survive. Pruning keeps whole blocks and the final (possibly partial) block is always
kept, so in any compacted sequence the i-th block occupies tokens `[i*block_size,
(i+1)*block_size)`: block structure survives compaction without any bookkeeping.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import TYPE_CHECKING

import torch
import torch.nn.functional as F

if TYPE_CHECKING:
    from .config import SlimConfig


def window_unit_scores(
    queries: torch.Tensor,
    keys: torch.Tensor,
    *,
    unit_size: int,
    pooling: str,
    scaling: float,
    head_aggregation: str = "mean",
    head_topk: int = 2,
    aggregate: Callable[[torch.Tensor, str, int], torch.Tensor] | None = None,
) -> torch.Tensor:
    """How much the last queries attend to each token unit, aggregated over queries and heads.

    Hidden-state pruning drops a token for every head at once, so the score must be
    head-agnostic: per head and query we take softmax attention over units (or tokens), average
    over the window queries, then combine the query heads (each KV group's heads included) by
    `aggregate_heads`.

    Args:
        queries: `[batch, heads, window, head_dim]`, RoPE'd at their true positions; they are
            the last `window` tokens of the sequence that `keys` covers.
        keys: `[batch, kv_heads, n, head_dim]`, RoPE'd, in sequence order.
        unit_size: tokens per unit; the last unit may be partial.
        pooling: `key_mean` (softmax over one mean key per unit, as in the paper),
            `score_max` / `score_mean` (softmax over tokens, pooled per unit).
        scaling: the attention scale, usually `head_dim ** -0.5`.
        head_aggregation, head_topk: see `aggregate_heads`.
        aggregate: what combines the heads (default `aggregate_heads`); under tensor parallelism
            `parallel.aggregate_heads`, which combines the heads of every rank.

    Returns:
        `[batch, ceil(n / unit_size)]` float32 scores; they sum to 1 over units for
        `key_mean` and `score_mean * unit_size` semantics otherwise (only the ranking matters).
    """
    batch, heads, window, head_dim = queries.shape
    kv_heads, n = keys.shape[1], keys.shape[2]
    groups = heads // kv_heads
    # Query head h uses KV head h // groups, so [B, H, w, d] -> [B, H_kv, groups * w, d].
    grouped = queries.reshape(batch, kv_heads, groups * window, head_dim)
    query_pos = torch.arange(n - window, n, device=keys.device).repeat(groups)
    n_units = math.ceil(n / unit_size)
    padded_keys = _pad_tokens(keys, n_units * unit_size)
    if pooling == "key_mean":
        counts = _unit_token_counts(n, unit_size, keys.device)
        rep_keys = padded_keys.view(batch, kv_heads, n_units, unit_size, head_dim).sum(3)
        rep_keys = rep_keys / counts.view(1, 1, n_units, 1).to(rep_keys.dtype)
        logits = (grouped @ rep_keys.transpose(-1, -2)).float() * scaling
        unit_start = torch.arange(n_units, device=keys.device) * unit_size
        logits.masked_fill_(unit_start[None, :] > query_pos[:, None], float("-inf"))
        unit_probs = logits.softmax(-1)
    else:
        logits = (grouped @ keys.transpose(-1, -2)).float() * scaling
        logits.masked_fill_(torch.arange(n, device=keys.device)[None, :] > query_pos[:, None], float("-inf"))
        token_probs = _pad_tokens(logits.softmax(-1), n_units * unit_size, dim=-1)
        per_unit = token_probs.view(batch, kv_heads, groups * window, n_units, unit_size)
        unit_probs = per_unit.amax(-1) if pooling == "score_max" else per_unit.sum(-1)
    per_head = unit_probs.view(batch, kv_heads, groups, window, n_units).mean(3).view(batch, heads, n_units)
    return (aggregate or aggregate_heads)(per_head, head_aggregation, head_topk)


def aggregate_heads(per_head: torch.Tensor, how: str, topk: int = 2) -> torch.Tensor:
    """One score per unit from every query head's: `[batch, heads, n_units]` -> `[batch, n_units]`.

    `mean` favours units many heads attend to; `max` keeps a unit that a single retrieval head
    finds; `topk` (mean of the `topk` highest heads per unit) sits between them.
    """
    if how == "max":
        return per_head.amax(1)
    if how == "topk":
        return per_head.topk(min(topk, per_head.shape[1]), dim=1).values.mean(1)
    return per_head.mean(1)


def pool_units(unit_scores: torch.Tensor, kernel: int) -> torch.Tensor:
    """Average each unit's score with its neighbours' (odd `kernel`, 1 = identity): `[batch, n_units]`."""
    if kernel == 1:
        return unit_scores
    pooled = F.avg_pool1d(unit_scores[:, None], kernel, stride=1, padding=kernel // 2, count_include_pad=False)
    return pooled[:, 0]


def rank_blocks(unit_scores: torch.Tensor, config: SlimConfig) -> torch.Tensor:
    """Block scores `[batch, n_blocks]` from one layer's unit scores `[batch, n_units]`, the way
    `config` scores (neighbour pooling, then per block); prefill and decode selection share it."""
    pooled = pool_units(unit_scores, config.unit_pool_kernel)
    return block_scores(pooled, config.block_size // config.unit_size, config.block_scoring)


def to_prompt_blocks(scores: torch.Tensor, block_ids: torch.Tensor, n_prompt_blocks: int) -> torch.Tensor:
    """A layer's block scores, normalized to sum 1, placed at their original prompt blocks.

    Layers that ran on different (compacted) token sets, or whose attention is more or less
    peaked, become comparable this way, so several score layers can be combined.

    Args:
        scores: `[batch, n_blocks]` scores of the blocks the layer computed.
        block_ids: `[batch, n_blocks]` their original block indices.

    Returns:
        `[batch, n_prompt_blocks]` float32, 0 for blocks the layer did not see.
    """
    normalized = scores.float() / scores.float().sum(-1, keepdim=True).clamp_min(1e-30)
    out = torch.zeros(scores.shape[0], n_prompt_blocks, device=scores.device)
    return out.scatter_(1, block_ids, normalized)


def prompt_block_scores(
    unit_scores: torch.Tensor, positions: torch.Tensor, n_prompt_blocks: int, config: SlimConfig
) -> torch.Tensor:
    """One layer's window scores as `[batch, n_prompt_blocks]`, ranked the way `config` ranks
    blocks and normalized in original-prompt block space (what cuts combine and the probe records).

    Args:
        unit_scores: `[batch, n_units]` over the layer's (possibly compacted) sequence.
        positions: `[batch, n]` original positions of that sequence.
    """
    scores = rank_blocks(unit_scores, config)
    return to_prompt_blocks(scores, block_ids_of(positions, config.block_size), n_prompt_blocks)


def combine_layers(per_layer: list[torch.Tensor], how: str) -> torch.Tensor:
    """Combine normalized `[batch, n_prompt_blocks]` scores of several layers by `max` or `sum`."""
    stacked = torch.stack(per_layer)
    return stacked.amax(0) if how == "max" else stacked.sum(0)


def mass_block_count(scores: torch.Tensor, forced: torch.Tensor, mass: float, floor: int, cap: int) -> int:
    """Blocks to keep so the kept unforced blocks hold `mass` of the unforced blocks' score.

    The forced blocks (sinks, the window's own blocks) draw much of the window's attention and
    are kept anyway, so the share is measured over the others. The count includes the forced
    blocks, is clamped to `[floor, cap]`, and is the largest over the batch (rows keep equal
    counts).

    Args:
        scores: `[batch, n_blocks]` non-negative block scores.
        forced: `[n_blocks]` bool.
    """
    free = scores.float().masked_fill(forced.to(scores.device), 0.0)
    ranked = free.sort(dim=-1, descending=True).values.cumsum(-1)
    needed = (ranked < mass * ranked[:, -1:]).sum(-1) + 1
    count = int(needed.max()) + int(forced.sum())
    return max(floor, min(count, cap))


def block_scores(unit_scores: torch.Tensor, units_per_block: int, how: str) -> torch.Tensor:
    """Block scores from unit scores.

    Args:
        unit_scores: `[batch, n_units]`; the last block may have fewer units.
        units_per_block: `block_size // unit_size`.
        how: `max` (the block's best unit) or `mean` (over the units it has).

    Returns:
        `[batch, ceil(n_units / units_per_block)]`.
    """
    batch, n_units = unit_scores.shape
    n_blocks = math.ceil(n_units / units_per_block)
    fill = float("-inf") if how == "max" else 0.0
    padded = _pad_tokens(unit_scores, n_blocks * units_per_block, dim=-1, value=fill)
    per_block = padded.view(batch, n_blocks, units_per_block)
    if how == "max":
        return per_block.amax(-1)
    counts = _unit_token_counts(n_units, units_per_block, unit_scores.device)
    return per_block.sum(-1) / counts


def forced_blocks(n_tokens: int, block_size: int, sink_tokens: int, window: int) -> torch.Tensor:
    """Blocks that must survive: those holding the sink tokens and the final window.

    Returns:
        `[n_blocks]` bool, over the blocks of a compacted sequence of `n_tokens` tokens.
    """
    n_blocks = math.ceil(n_tokens / block_size)
    forced = torch.zeros(n_blocks, dtype=torch.bool)
    if sink_tokens > 0:
        forced[: math.ceil(min(sink_tokens, n_tokens) / block_size)] = True
    forced[max(0, n_tokens - window) // block_size :] = True
    return forced


def select_blocks(scores: torch.Tensor, n_keep: int, forced: torch.Tensor) -> torch.Tensor:
    """The `n_keep` best blocks (forced ones first), in ascending order.

    Ascending order keeps causal order among survivors, so plain causal attention on the
    compacted sequence equals the original attention restricted to them.

    Args:
        scores: `[batch, n_blocks]`.
        n_keep: blocks to keep; raised to the number of forced blocks if smaller.
        forced: `[n_blocks]` bool.

    Returns:
        `[batch, max(n_keep, forced.sum())]` int64 block indices, sorted.
    """
    n_keep = kept_block_count(n_keep, int(forced.sum()), scores.shape[-1])
    ranked = scores.float().masked_fill(forced.to(scores.device), float("inf"))
    return ranked.topk(n_keep, dim=-1).indices.sort(dim=-1).values


def kept_block_count(n_keep: int, n_forced: int, n_blocks: int) -> int:
    """Blocks `select_blocks` keeps: `n_keep` raised to the forced ones, at most the `n_blocks` there are."""
    return min(max(n_keep, n_forced), n_blocks)


def blocks_to_keep(keep_fraction: float, prompt_tokens: int, block_size: int, min_tokens: int = 0) -> int:
    """Blocks a cut keeps: `keep_fraction` of the original prompt, but at least `min_tokens`
    tokens (never more than the prompt), rounded up to blocks.

    The prompt's final block is always kept and may be partial, so the floor counts its
    missing tokens: the kept blocks then hold at least `min_tokens` real tokens.
    """
    n_blocks = math.ceil(prompt_tokens / block_size)
    padding = n_blocks * block_size - prompt_tokens
    floor = math.ceil((min(min_tokens, prompt_tokens) + padding) / block_size) if min_tokens else 0
    return min(max(math.ceil(keep_fraction * prompt_tokens / block_size), floor), n_blocks)


def block_ids_of(positions: torch.Tensor, block_size: int) -> torch.Tensor:
    """Original block ids `[batch, n_blocks]` of a compacted sequence, from its `[batch, n]` positions.

    Kept blocks are whole original blocks, so the i-th one starts at token `i * block_size`.
    """
    return positions[:, ::block_size] // block_size


def kept_token_indices(kept_blocks: torch.Tensor, block_size: int, n_tokens: int) -> torch.Tensor:
    """Token indices of the kept blocks in a compacted sequence of `n_tokens` tokens.

    Args:
        kept_blocks: `[batch, k]` sorted block indices; the last block must be among them.

    Returns:
        `[batch, n_kept]` sorted token indices; `n_kept` counts the partial last block once.
    """
    offsets = torch.arange(block_size, device=kept_blocks.device)
    indices = (kept_blocks.unsqueeze(-1) * block_size + offsets).flatten(1)
    last_block_missing = math.ceil(n_tokens / block_size) * block_size - n_tokens
    return indices[:, : indices.shape[1] - last_block_missing]


def _unit_token_counts(n: int, unit_size: int, device: torch.device) -> torch.Tensor:
    """`[ceil(n / unit_size)]` how many real items each group of `unit_size` holds."""
    n_units = math.ceil(n / unit_size)
    counts = torch.full((n_units,), unit_size, device=device, dtype=torch.float32)
    counts[-1] = n - (n_units - 1) * unit_size
    return counts


def _pad_tokens(x: torch.Tensor, length: int, dim: int = -2, value: float = 0.0) -> torch.Tensor:
    """Pad `x` along `dim` up to `length` with `value` (no copy when already that long)."""
    missing = length - x.shape[dim]
    if missing == 0:
        return x
    pad_shape = list(x.shape)
    pad_shape[dim] = missing
    return torch.cat([x, x.new_full(pad_shape, value)], dim=dim)
