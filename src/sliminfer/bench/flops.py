"""Analytic prefill cost: FLOPs and KV bytes from a model's shape and the tokens each layer computed.

The model counts the matrix multiplies only, 2 FLOPs per multiply-add:
- linear layers, per token per layer: the q, k, v, o projections and the gated MLP's three
  matrices, i.e. 2 x (their parameters);
- causal attention, per layer over `n` tokens: QK^T and PV over the causal half,
  4 x heads x head_dim x n^2 / 2 (a slim layer attends over its kept tokens only), times the
  share of it the layer computes under `sparse_prefill`;
- the LM head once, for the last prompt token (`logits_to_keep=1`).
Norms, rotary, softmax, biases and the pruning's own scoring are left out: they are the
overheads a measured time is compared against.
"""

from __future__ import annotations

from collections.abc import Sequence

from ..models import ModelShape


def linear_params_per_layer(shape: ModelShape) -> int:
    """Weights of one decoder layer's projections: q, o (heads) + k, v (KV heads) + 3 MLP matrices."""
    attention = (
        2 * shape.hidden * shape.heads * shape.head_dim + 2 * shape.hidden * shape.kv_heads * shape.head_dim
    )
    mlp = 3 * shape.hidden * shape.intermediate
    return attention + mlp


def linear_flops_per_token(shape: ModelShape) -> int:
    """Linear-layer FLOPs for one token through all layers (13.96 G for Llama-3.1-8B)."""
    return 2 * linear_params_per_layer(shape) * shape.layers


def attention_flops(shape: ModelShape, tokens: int) -> float:
    """Causal attention FLOPs of one layer over `tokens` queries and keys: 4 h d n^2 / 2."""
    return 2.0 * shape.heads * shape.head_dim * tokens * tokens


def lm_head_flops(shape: ModelShape) -> int:
    """The LM head on one token (the prefill computes logits for the last position only)."""
    return 2 * shape.hidden * shape.vocab


def prefill_flops(
    shape: ModelShape, kept_tokens_per_layer: Sequence[int], attention_density: Sequence[float] | None = None
) -> float:
    """Total prefill FLOPs when layer `i` computes `kept_tokens_per_layer[i]` tokens and the
    share `attention_density[i]` of their causal attention (None: all dense).

    A full prefill of `n` tokens is `[n] * shape.layers`.
    """
    if len(kept_tokens_per_layer) != shape.layers:
        raise ValueError(
            f"kept_tokens_per_layer has {len(kept_tokens_per_layer)} entries, the model {shape.layers} layers"
        )
    density = attention_density or [1.0] * shape.layers
    per_layer_linear = 2 * linear_params_per_layer(shape)
    return float(
        sum(per_layer_linear * n + share * attention_flops(shape, n) for n, share in zip(kept_tokens_per_layer, density, strict=True))
        + lm_head_flops(shape)
    )


def full_prefill_flops(shape: ModelShape, tokens: int) -> float:
    """Prefill FLOPs with every layer computing all `tokens` (plain HF, or our `full`)."""
    return prefill_flops(shape, [tokens] * shape.layers)


def ideal_speedup(shape: ModelShape, tokens: int, kept_tokens_per_layer: Sequence[int]) -> float:
    """FLOPs(full) / FLOPs(kept): the TTFT speedup a FLOP-bound prefill would reach."""
    return full_prefill_flops(shape, tokens) / prefill_flops(shape, kept_tokens_per_layer)


def flop_floor_s(flops: float, matmul_flops_per_s: float) -> float:
    """The FLOP-bound time floor: `flops` run at the device's measured dense matmul rate."""
    return flops / matmul_flops_per_s


def kv_bytes_per_token_per_layer(shape: ModelShape, dtype_bytes: int) -> int:
    """K and V of one token in one layer: 2 x kv_heads x head_dim x element size (128 KiB/32 for Llama-3.1-8B bf16)."""
    return 2 * shape.kv_heads * shape.head_dim * dtype_bytes


def kv_cache_bytes(shape: ModelShape, tokens_per_layer: Sequence[int], dtype_bytes: int) -> int:
    """Bytes of a KV cache that holds `tokens_per_layer[i]` tokens in layer `i`."""
    return kv_bytes_per_token_per_layer(shape, dtype_bytes) * sum(tokens_per_layer)
