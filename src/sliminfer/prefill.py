"""The slim prefill: HF's own decoder layers in a plain loop, pruning hidden states between them.

Preserve layers run on every prompt token. Before each cut layer `c` of the keep schedule, the
attention of layer `c - 1` has recorded how much the last `window` queries attend to each token
unit; we score blocks, keep the best, and gather the surviving hidden states, positions and
RoPE cos/sin. Survivors stay in ascending order, so plain causal attention on the compacted
sequence equals the original attention restricted to them, and pruned tokens never return.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
from transformers import PreTrainedModel

from .cache import SlimCache
from .config import SlimConfig
from .models import model_parts
from .scoring import (
    block_scores,
    blocks_to_keep,
    forced_blocks,
    kept_block_count,
    kept_token_indices,
    select_blocks,
)
from .state import ForwardState


@dataclass
class PrefillResult:
    """Outcome of one prefill.

    Attributes:
        logits: `[batch, vocab]` float32 logits of the last prompt position.
        kept_positions: per layer, `[batch, n_layer]` original positions that layer computed.
        pruned: whether any token was dropped.
    """

    logits: torch.Tensor
    kept_positions: list[torch.Tensor]
    pruned: bool

    @property
    def kept_tokens_per_layer(self) -> list[int]:
        return [int(positions.shape[-1]) for positions in self.kept_positions]


def prunes(config: SlimConfig | None, prompt_tokens: int) -> bool:
    """Whether `config` prunes a prompt of `prompt_tokens` tokens (None means full)."""
    return config is not None and bool(config.keep_schedule) and prompt_tokens >= config.min_prompt_tokens


def kept_token_counts(config: SlimConfig | None, prompt_tokens: int, num_layers: int) -> list[int]:
    """Tokens each of `num_layers` layers computes (and keeps KV for) when `slim_prefill` runs a
    prompt of `prompt_tokens` tokens with `config` (None: full).

    The counts follow from the schedule alone, never from the scores: a cut keeps
    `blocks_to_keep` blocks, at least the forced ones and at most those left, with the final
    partial block counted once. So memory and budgets are known before any work starts.
    """
    cuts = dict(config.keep_schedule) if prunes(config, prompt_tokens) else {}
    counts, current = [], prompt_tokens
    for layer in range(num_layers):
        if layer in cuts:
            block = config.block_size
            forced = int(forced_blocks(current, block, config.sink_tokens, config.window).sum())
            wanted = blocks_to_keep(cuts[layer], prompt_tokens, block, config.min_keep_tokens)
            kept_blocks = kept_block_count(wanted, forced, math.ceil(current / block))
            current = kept_blocks * block - (math.ceil(prompt_tokens / block) * block - prompt_tokens)
        counts.append(current)
    return counts


def slim_prefill(
    model: PreTrainedModel,
    input_ids: torch.Tensor,
    cache: SlimCache,
    config: SlimConfig | None = None,
) -> PrefillResult:
    """Prefill `input_ids` `[batch, n]` into `cache`, pruning per `config` (None: no pruning).

    The model must use the "sliminfer" attention implementation (see
    `attention.use_sliminfer_attention`); with `config=None` this equals the plain HF forward.
    """
    parts = model_parts(model)
    batch, prompt_tokens = input_ids.shape
    cuts = dict(config.keep_schedule) if prunes(config, prompt_tokens) else {}
    if cuts:
        config.check_model(parts.num_layers)
    state = ForwardState(
        score_layers=frozenset(layer - 1 for layer in cuts),
        window=config.window if config else 1,
        unit_size=config.unit_size if config else 1,
        unit_pooling=config.unit_pooling if config else "key_mean",
    )
    positions = torch.arange(prompt_tokens, device=input_ids.device).expand(batch, prompt_tokens)
    hidden, (cos, sin) = parts.embed(input_ids, positions)
    mlp_chunk = config.prefill_chunk_tokens if config else 0
    kept_positions = []
    for index in range(parts.num_layers):
        if index in cuts:
            scores = state.unit_scores.pop(index - 1)
            keep = tokens_to_keep(scores, cuts[index], prompt_tokens, hidden.shape[1], config)
            hidden, positions, cos, sin = (gather_tokens(t, keep) for t in (hidden, positions, cos, sin))
        hidden = parts.run_layer(index, hidden, positions, (cos, sin), cache, mlp_chunk, slim=state)
        kept_positions.append(positions)
    cache.end_prefill(prompt_tokens)
    return PrefillResult(parts.last_logits(hidden), kept_positions, pruned=bool(cuts))


def tokens_to_keep(
    unit_scores: torch.Tensor,
    keep_fraction: float,
    prompt_tokens: int,
    current_tokens: int,
    config: SlimConfig,
) -> torch.Tensor:
    """Indices `[batch, n_kept]` into the current (compacted) sequence of the tokens to keep.

    Args:
        unit_scores: `[batch, n_units]` from the attention of the layer before the cut.
        keep_fraction: fraction of the original `prompt_tokens` this cut keeps.
        current_tokens: length of the compacted sequence the scores cover.
    """
    scores = block_scores(unit_scores, config.block_size // config.unit_size, config.block_scoring)
    forced = forced_blocks(current_tokens, config.block_size, config.sink_tokens, config.window)
    kept_blocks = select_blocks(scores, blocks_to_keep(keep_fraction, prompt_tokens, config.block_size, config.min_keep_tokens), forced)
    return kept_token_indices(kept_blocks, config.block_size, current_tokens)


def gather_tokens(x: torch.Tensor, indices: torch.Tensor) -> torch.Tensor:
    """`x[b, indices[b]]` for `x` `[batch, n, ...]` and `indices` `[batch, k]` -> `[batch, k, ...]`."""
    if x.shape[0] == 1:
        return x.index_select(1, indices[0])
    expanded = indices.view(*indices.shape, *([1] * (x.dim() - 2))).expand(-1, -1, *x.shape[2:])
    return x.gather(1, expanded)
