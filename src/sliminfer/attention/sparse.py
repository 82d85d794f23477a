"""Block-sparse causal prefill attention for the layers that still see every prompt token.

After the cuts, most of slim's remaining prefill FLOPs are the dense layers' attention, which is
quadratic in the prompt. Long-prompt attention is mostly sparse, and a cheap *estimate* says
where: by default (`sparse_estimate="block_means"`) each query block's mean query against each
key block's mean key (`block_mean_scores`, a ranking per query block); or (`"last_queries"`) the
attention the layer's last `ESTIMATE_QUERIES` queries give each key block (a "vertical" profile
per head, computed exactly for those queries, one ranking for every query block). Each query
block then attends to
- the sink block (block 0), its own block (causal inside) and the `LOCAL_BAND` blocks before it
  (the local diagonal band);
- the key blocks the estimate ranks highest among those it may see: a fixed share of them
  (`sparse_prefill="fixed"`, `sparse_density`, for speed runs) or the fewest whose estimated
  mass reaches `sparse_mass` (`"adaptive"`);
- and the final query block attends densely: the cut's scoring window (the last queries) and
  the next token's logits read from it.

The kernel is PyTorch FlexAttention with a `BlockMask` built from block indices (compiled, on
CUDA); its mask_mod spells out the same pattern, because eager flex (and the CPU path, masked
SDPA) apply the mask, not the block lists. Tensor shapes follow HF's attention contract:
query `[batch, heads, n, head_dim]`, key/value `[batch, kv_heads, n, head_dim]`.
"""

from __future__ import annotations

import functools
import inspect
import json
import math
import os
from typing import Any

import torch
import torch.nn.functional as F
from torch.nn.attention.flex_attention import BlockMask, flex_attention

from ..errors import UserError

SPARSE_BLOCK = 128
"""Tokens per sparse-attention block (FlexAttention's tile)."""
ESTIMATE_QUERIES = 64
"""Last queries whose attention estimates each head's key-block profile."""
LOCAL_BAND = 1
"""Key blocks before the diagonal that every query block attends to."""
KERNEL_OPTIONS_ENV = "SLIMINFER_FLEX_KERNEL_OPTIONS"
"""Environment variable: a JSON object of FlexAttention kernel options that replaces the tuned
ones (`flex_kernel_options`), for tuning another GPU with `benchmarks/sparse_kernel_gpu.py --sweep`."""
TUNED_KERNEL_OPTIONS: dict[tuple[int, int], dict[str, Any]] = {
    # Hopper (H100/H200): 128x128 tiles, 8 warps, 2 stages and TMA loads ran the 128k, 15%-dense
    # kernel in 53.2 ms against 64.4 with flex's defaults (benchmarks/results/h200/sparse-v3).
    (9, 0): {"BLOCK_M": 128, "BLOCK_N": 128, "num_warps": 8, "num_stages": 2, "USE_TMA": True},
}
"""Tile options per CUDA compute capability, where a sweep beat flex's own defaults."""


def key_block_profile(query: torch.Tensor, key: torch.Tensor, scaling: float) -> torch.Tensor:
    """`[batch, heads, n_blocks]` float32: attention of the last `ESTIMATE_QUERIES` queries to
    each key block (softmax over their causal keys, summed over the queries and the block).

    One KV head's query group at a time, so the `[group, queries, n]` probabilities are the
    largest temporary (about 130 MB at 128k tokens for 4 query heads).
    """
    batch, heads, n, _ = query.shape
    kv_heads = key.shape[1]
    group = heads // kv_heads
    window = min(ESTIMATE_QUERIES, n)
    n_blocks = math.ceil(n / SPARSE_BLOCK)
    # Only the last `window` keys can lie after one of these queries: mask that corner alone.
    future = torch.ones(window, window, dtype=torch.bool, device=key.device).triu(1)
    profile = torch.zeros(batch, heads, n_blocks * SPARSE_BLOCK, device=key.device, dtype=torch.float32)
    for kv in range(kv_heads):
        last = query[:, kv * group : (kv + 1) * group, -window:]
        scores = (last @ key[:, kv : kv + 1].transpose(-1, -2)).float().mul_(scaling)
        scores[..., n - window :].masked_fill_(future, float("-inf"))
        profile[:, kv * group : (kv + 1) * group, :n] = scores.softmax(-1).sum(2)
    return profile.view(batch, heads, n_blocks, SPARSE_BLOCK).sum(-1)


def block_pattern(profile: torch.Tensor, mode: str, density: float, mass: float) -> torch.Tensor:
    """`[batch, heads, n_blocks, n_blocks]` bool: which (query block, key block) pairs are computed.

    Query block i ranks the key blocks it may see (0..i) by the head's profile, which is the
    same for every row: so block j's rank in row i is the number of visible blocks the profile
    puts above j, a cumulative count along the key axis. No per-row sort: at 128k on an H200 the
    sorted version's pattern and block lists cost about 60 ms per layer, this one with its
    `BlockMask` about 5 (BENCHMARKS.md section 6.1).

    Args:
        profile: `[batch, heads, n_blocks]` key-block scores (`key_block_profile`).
        mode: "fixed" keeps `ceil(density x (i + 1))` of query block i's causal key blocks,
            "adaptive" the fewest whose profile mass, normalized over them, reaches `mass`;
            both on top of the forced ones (sink, local band, diagonal, the final query block).
    """
    n_blocks = profile.shape[-1]
    rows = torch.arange(n_blocks, device=profile.device)[:, None]
    causal, forced = causal_and_forced(n_blocks, profile.device)
    order = profile.argsort(dim=-1, descending=True, stable=True)
    rank = torch.empty_like(order).scatter_(-1, order, torch.arange(n_blocks, device=profile.device).expand_as(order))
    above = rank[..., None, :] < rank[..., :, None]  # [.., j, k]: k ranks above j
    if mode == "fixed":
        # [.., j, i] -> [.., i, j]: visible blocks ranked above j in row i
        ahead = above.cumsum(-1, dtype=torch.int32).transpose(-1, -2)
        chosen = ahead < torch.ceil(density * (rows + 1).float()).int()
    else:
        weights = profile.float().clamp(min=0.0)
        ahead = (above * weights[..., None, :]).cumsum(-1).transpose(-1, -2)
        total = weights.cumsum(-1)[..., :, None]  # [.., i, 1]: row i's visible mass
        chosen = ahead < mass * total.clamp(min=1e-30)
    return chosen & causal | forced


def causal_and_forced(n_blocks: int, device: torch.device) -> tuple[torch.Tensor, torch.Tensor]:
    """`[n_blocks, n_blocks]` bool each: the causal (query block, key block) pairs, and those
    always computed (the sink, the local band and diagonal, the whole final query block)."""
    rows = torch.arange(n_blocks, device=device)[:, None]
    cols = torch.arange(n_blocks, device=device)[None, :]
    causal = cols <= rows
    return causal, causal & ((cols == 0) | (rows - cols <= LOCAL_BAND) | (rows == n_blocks - 1))


def block_mean_scores(query: torch.Tensor, key: torch.Tensor, scaling: float) -> torch.Tensor:
    """`[batch, heads, n_blocks, n_blocks]` float32: per query block, the softmax over its causal
    key blocks of its mean query against each key block's mean key.

    A ranking per query block (the last queries' profile is one ranking for all of them), at the
    cost of a `[blocks, head_dim] x [head_dim, blocks]` product per head.
    """
    batch, heads, n, dim = query.shape
    group = heads // key.shape[1]
    n_blocks = math.ceil(n / SPARSE_BLOCK)
    counts = torch.bincount(torch.arange(n, device=key.device) // SPARSE_BLOCK, minlength=n_blocks).clamp(min=1)

    def block_means(x: torch.Tensor) -> torch.Tensor:
        padded = F.pad(x.float(), (0, 0, 0, n_blocks * SPARSE_BLOCK - n))
        return padded.view(*x.shape[:2], n_blocks, SPARSE_BLOCK, dim).sum(3) / counts[:, None]

    keys = block_means(key).repeat_interleave(group, dim=1)
    scores = (block_means(query) @ keys.transpose(-1, -2)) * scaling
    causal, _ = causal_and_forced(n_blocks, key.device)
    return scores.masked_fill(~causal, float("-inf")).softmax(-1)


def row_block_pattern(scores: torch.Tensor, mode: str, density: float, mass: float) -> torch.Tensor:
    """`block_pattern` for a ranking per query block: `scores` `[batch, heads, n_blocks, n_blocks]`
    (row i ranks the key blocks for query block i). A sort per row."""
    n_blocks = scores.shape[-1]
    causal, forced = causal_and_forced(n_blocks, scores.device)
    ordered, order = scores.float().masked_fill(~causal, -1.0).sort(dim=-1, descending=True, stable=True)
    if mode == "fixed":
        rows = torch.arange(n_blocks, device=scores.device)[:, None]
        keep = torch.arange(n_blocks, device=scores.device) < torch.ceil(density * (rows + 1).float())
    else:
        weights = ordered.clamp(min=0.0)
        ahead = weights.cumsum(-1) - weights
        keep = ahead < mass * weights.sum(-1, keepdim=True).clamp(min=1e-30)
    chosen = torch.zeros_like(causal.expand_as(order)).scatter_(-1, order, keep.expand_as(order))
    return chosen & causal | forced


def estimated_pattern(
    query: torch.Tensor, key: torch.Tensor, scaling: float, estimate: str, mode: str, density: float, mass: float
) -> torch.Tensor:
    """The pattern of one layer's prefill: `[batch, heads, n_blocks, n_blocks]` bool, from the
    last queries' profile or the block means (`SlimConfig.sparse_estimate`).

    The block means' scores and their sort are `[heads, n_blocks, n_blocks]` (float32 and int64:
    about 1 GiB at 128k tokens for 32 heads), so they are built one KV head's query group at a
    time and only the bool patterns are kept.
    """
    if estimate == "block_means":
        kv_heads = key.shape[1]
        group = query.shape[1] // kv_heads
        return torch.cat(
            [
                row_block_pattern(block_mean_scores(query[:, kv * group : (kv + 1) * group], key[:, kv : kv + 1], scaling), mode, density, mass)
                for kv in range(kv_heads)
            ],
            dim=1,
        )
    return block_pattern(key_block_profile(query, key, scaling), mode, density, mass)


def pattern_share(pattern: torch.Tensor) -> torch.Tensor:
    """0-dim: the share of the causal (query block, key block) pairs `pattern` computes (a
    tensor, so that recording it does not wait for the device)."""
    n_blocks = pattern.shape[-1]
    return pattern.sum() / (pattern.shape[0] * pattern.shape[1] * n_blocks * (n_blocks + 1) / 2)


def block_lists(chosen: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """FlexAttention's per-row block lists of `chosen` `[.., rows, n_blocks]` bool: the count
    `[.., rows]` int32, and the indices `[.., rows, n_blocks]` int32 with the chosen blocks
    first (ascending), then the others. A scatter to each block's slot, no sort."""
    n_blocks = chosen.shape[-1]
    cols = torch.arange(n_blocks, device=chosen.device, dtype=torch.int32)
    count = chosen.sum(-1, dtype=torch.int32)
    before = chosen.cumsum(-1, dtype=torch.int32) - chosen.int()  # chosen blocks left of each
    slot = torch.where(chosen, before, count[..., None] + cols - before)
    return count, torch.empty_like(slot).scatter_(-1, slot.long(), cols.expand_as(slot))


_Q_BLOCKS_OPTIONAL = "compute_q_blocks" in inspect.signature(BlockMask.from_kv_blocks).parameters
"""Newer torch can skip the transposed (query-block) lists, which only the backward pass reads."""


def to_block_mask(pattern: torch.Tensor, n: int) -> BlockMask:
    """A FlexAttention `BlockMask` for `pattern` over `n` tokens: diagonal blocks partial
    (causal inside), every other chosen block full (the kernel evaluates no mask there).

    Row i's only partial block is block i, so its list is built directly (no `block_lists`).
    """
    n_blocks = pattern.shape[-1]
    diagonal = torch.eye(n_blocks, dtype=torch.bool, device=pattern.device)

    def causal_in_pattern(b, h, q_idx, kv_idx):
        return (q_idx >= kv_idx) & pattern[b, h, q_idx // SPARSE_BLOCK, kv_idx // SPARSE_BLOCK]

    partial_num = pattern.diagonal(dim1=-2, dim2=-1).int()
    cols = torch.arange(n_blocks, device=pattern.device, dtype=torch.int32)
    partial_idx = ((cols[None, :] + cols[:, None]) % n_blocks).expand_as(pattern).contiguous()  # row i starts with i
    full_num, full_idx = block_lists(pattern & ~diagonal)
    forward_only = {"compute_q_blocks": False} if _Q_BLOCKS_OPTIONAL else {}
    return BlockMask.from_kv_blocks(
        partial_num, partial_idx, full_num, full_idx, SPARSE_BLOCK, causal_in_pattern, (n, n), **forward_only
    )


def token_mask(pattern: torch.Tensor, n: int) -> torch.Tensor:
    """`[batch, heads, n, n]` bool: the token-level mask `pattern` means (causal included)."""
    expanded = pattern.repeat_interleave(SPARSE_BLOCK, -2).repeat_interleave(SPARSE_BLOCK, -1)[..., :n, :n]
    return expanded & torch.ones(n, n, dtype=torch.bool, device=pattern.device).tril()


@functools.cache
def flex_kernel_options(capability: tuple[int, int]) -> dict[str, Any]:
    """FlexAttention's kernel options on a GPU of compute `capability`.

    `ROWS_GUARANTEED_SAFE`: every row computes its diagonal block, so no row is fully masked and
    the kernel may skip that check. Then the capability's tuned tiles, or the JSON object in
    `KERNEL_OPTIONS_ENV` instead of them.
    """
    text = os.environ.get(KERNEL_OPTIONS_ENV)
    options = TUNED_KERNEL_OPTIONS.get(capability, {}) if text is None else _options_from_env(text)
    return {"ROWS_GUARANTEED_SAFE": True, **options}


def _options_from_env(text: str) -> dict[str, Any]:
    """`KERNEL_OPTIONS_ENV`'s value as a dict, or a one-line error naming the variable."""
    try:
        options = json.loads(text)
    except json.JSONDecodeError as error:
        raise UserError(f"{KERNEL_OPTIONS_ENV}={text!r} is not JSON: {error}") from None
    if not isinstance(options, dict):
        raise UserError(f"{KERNEL_OPTIONS_ENV}={text!r}: expected a JSON object of FlexAttention kernel options")
    return options


@functools.cache
def compiled_flex_attention():
    """FlexAttention compiled once per process (dynamic shapes after the first recompile)."""
    return torch.compile(flex_attention)


def sparse_causal_attention(
    query: torch.Tensor, key: torch.Tensor, value: torch.Tensor, scaling: float, pattern: torch.Tensor
) -> torch.Tensor:
    """Causal attention restricted to `pattern`'s blocks; returns `[batch, n, heads, head_dim]`.

    CUDA runs compiled FlexAttention, which skips the blocks not chosen; elsewhere (CI, CPU)
    the same result comes from SDPA with the token-level mask (the reference, no speed-up).
    """
    n = query.shape[2]
    gqa = key.shape[1] != query.shape[1]
    if query.is_cuda:
        options = flex_kernel_options(torch.cuda.get_device_capability(query.device))
        mask = to_block_mask(pattern, n)
        out = compiled_flex_attention()(query, key, value, block_mask=mask, scale=scaling, enable_gqa=gqa, kernel_options=options)
    else:
        out = F.scaled_dot_product_attention(query, key, value, attn_mask=token_mask(pattern, n), scale=scaling, enable_gqa=gqa)
    return out.transpose(1, 2).contiguous()
