"""The one attention function sliminfer registers with transformers, under the key "sliminfer".

HF's attention modules project q/k/v, apply RoPE, update the cache and then call the registered
function; it is the only place that sees RoPE'd queries and keys together, so it is where the
window queries score the token units (only at the layers `ForwardState.score_layers` names) and
where a prefill goes block-sparse (the layers `ForwardState.sparse_layers` names; the scores
read the queries and keys, not the attention output, so sparsity leaves them exact). Under
tensor parallelism it sees this rank's heads only; `parallel.aggregate_heads` combines the
heads of every rank, so all ranks record the same scores (a sparse pattern is per head, so
each rank's own heads choose their own blocks).
Importing this module registers the key and patches nothing else.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator

import torch
from transformers import AttentionInterface, PreTrainedModel

from .. import parallel
from ..scoring import window_unit_scores
from ..state import ForwardState
from .sdpa import causal_attention, single_query_attention
from .sparse import estimated_pattern, pattern_share, sparse_causal_attention

ATTENTION_KEY = "sliminfer"


def sliminfer_attention(
    module: torch.nn.Module,
    query: torch.Tensor,
    key: torch.Tensor,
    value: torch.Tensor,
    attention_mask: torch.Tensor | None,
    dropout: float = 0.0,
    scaling: float | None = None,
    slim: ForwardState | None = None,
    **kwargs,
) -> tuple[torch.Tensor, None]:
    """HF attention-function contract: q `[B, H, q, d]`, k/v `[B, H_kv, kv, d]` -> `[B, q, H, d]`.

    `attention_mask` is ignored: HF builds no mask for unregistered-mask implementations, and
    causality comes from the actual lengths (queries are the last positions). Batches with
    padding are therefore not supported (see README).
    """
    scale = scaling if scaling is not None else query.shape[-1] ** -0.5
    if slim is not None and module.layer_idx in slim.score_layers:
        window = min(slim.window, query.shape[2])
        scored = slim.score_keys.get(module.layer_idx, key.shape[2])
        slim.unit_scores[module.layer_idx] = window_unit_scores(
            query[:, :, -window:],
            key[:, :, :scored],
            unit_size=slim.unit_size,
            pooling=slim.unit_pooling,
            scaling=scale,
            head_aggregation=slim.head_aggregation,
            head_topk=slim.head_topk,
            aggregate=parallel.aggregate_heads,
        )
    if slim is not None and module.layer_idx in slim.sparse_layers and 1 < query.shape[2] == key.shape[2]:
        pattern = estimated_pattern(query, key, scale, slim.sparse_estimate, slim.sparse_mode, slim.sparse_density, slim.sparse_mass)
        slim.sparse_share[module.layer_idx] = pattern_share(pattern)
        return sparse_causal_attention(query, key, value, scale, pattern), None
    if slim is not None and slim.kv_valid_lengths is not None:
        valid = slim.kv_valid_lengths[module.layer_idx]
        return single_query_attention(query, key, value, scale, valid), None
    return causal_attention(query, key, value, scale), None


AttentionInterface.register(ATTENTION_KEY, sliminfer_attention)


@contextlib.contextmanager
def use_sliminfer_attention(model: PreTrainedModel) -> Iterator[None]:
    """Route the model's attention through `sliminfer_attention`, restoring it on exit."""
    previous = model.config._attn_implementation
    model.set_attn_implementation(ATTENTION_KEY)
    try:
        yield
    finally:
        model.set_attn_implementation(previous)
