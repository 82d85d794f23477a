"""Which HF architectures sliminfer drives, and where their parts live: data, not code.

Llama (incl. Llama-3.x and SmolLM2), Qwen2/Qwen2.5 and Mistral share one decoder-layer and
attention contract in transformers 5.x: `model.model.{embed_tokens, layers, norm,
rotary_emb}` and `model.lm_head`, layers called as
`layer(hidden, position_ids=, <cache>=, position_embeddings=(cos, sin), **kwargs)`, where the
cache argument is `past_key_values` up to transformers ~5.2x and `cache` after (the old name
warns, then goes away in 5.40): `cache_argument` reads which one a layer takes.
Their decoder layers are also built alike (pre-norm attention, then pre-norm MLP, each added
to the residual stream), which `run_layer` relies on when it splits the MLP into token chunks.
"""

from __future__ import annotations

import functools
import inspect
from dataclasses import asdict, dataclass
from typing import Any

import torch
from transformers import PretrainedConfig, PreTrainedModel
from transformers.cache_utils import Cache

from .errors import UnsupportedModelError

SUPPORTED_MODEL_TYPES = ("llama", "qwen2", "mistral")


@dataclass(frozen=True)
class ModelParts:
    """The pieces of a causal LM that our prefill and decode loops call, in order."""

    embed_tokens: torch.nn.Module
    layers: torch.nn.ModuleList
    norm: torch.nn.Module
    rotary_emb: torch.nn.Module
    lm_head: torch.nn.Module

    @property
    def num_layers(self) -> int:
        return len(self.layers)

    def embed(
        self, input_ids: torch.Tensor, positions: torch.Tensor
    ) -> tuple[torch.Tensor, tuple[torch.Tensor, torch.Tensor]]:
        """Token embeddings `[batch, n, hidden]` and RoPE `(cos, sin)`, each `[batch, n, head_dim]`."""
        hidden = self.embed_tokens(input_ids)
        return hidden, self.rotary_emb(hidden, positions)

    def run_layer(
        self,
        index: int,
        hidden: torch.Tensor,
        positions: torch.Tensor,
        rope: tuple[torch.Tensor, torch.Tensor],
        cache: Cache,
        mlp_chunk_tokens: int = 0,
        **attention_kwargs,
    ) -> torch.Tensor:
        """Run decoder layer `index` on `[batch, n, hidden]` tokens at their original `positions`.

        `attention_kwargs` (our `slim=ForwardState`) reach the registered attention function.
        With `0 < mlp_chunk_tokens < n` the layer runs as its parts, the MLP on at most
        `mlp_chunk_tokens` tokens at a time, added in place to the residual stream: the MLP's
        activations (`[batch, n, intermediate]` three times over, ~10 GiB at 128k tokens on an
        8B model) are the peak of a long prefill, and the MLP is per token, so chunking it
        changes no result (`test_chunked_mlp_layer_matches_the_stock_layer`).
        """
        layer = self.layers[index]
        if not 0 < mlp_chunk_tokens < hidden.shape[1]:
            return layer(
                hidden,
                position_ids=positions,
                use_cache=True,
                position_embeddings=rope,
                **{cache_argument(type(layer)): cache},
                **attention_kwargs,
            )
        attended, _ = layer.self_attn(
            hidden_states=layer.input_layernorm(hidden),
            attention_mask=None,
            position_ids=positions,
            use_cache=True,
            position_embeddings=rope,
            **{cache_argument(type(layer.self_attn)): cache},
            **attention_kwargs,
        )
        residual = attended.add_(hidden)
        for start in range(0, residual.shape[1], mlp_chunk_tokens):
            chunk = residual[:, start : start + mlp_chunk_tokens]
            chunk += layer.mlp(layer.post_attention_layernorm(chunk))
        return residual

    def last_logits(self, hidden: torch.Tensor) -> torch.Tensor:
        """float32 logits `[batch, vocab]` of the last position of `[batch, n, hidden]`."""
        return self.lm_head(self.norm(hidden[:, -1:]))[:, -1].float()


@dataclass(frozen=True)
class ModelShape:
    """The sizes of a decoder-only transformer: what its FLOPs, KV bytes and KV blocks depend on."""

    hidden: int
    layers: int
    heads: int
    kv_heads: int
    head_dim: int
    intermediate: int
    vocab: int

    @classmethod
    def from_hf_config(cls, config: Any) -> ModelShape:
        """Read a transformers Llama/Qwen2-style config (`head_dim` defaults to hidden / heads,
        `num_key_value_heads` to the heads)."""
        heads = config.num_attention_heads
        head_dim = getattr(config, "head_dim", None) or config.hidden_size // heads
        return cls(
            hidden=config.hidden_size,
            layers=config.num_hidden_layers,
            heads=heads,
            kv_heads=getattr(config, "num_key_value_heads", None) or heads,
            head_dim=head_dim,
            intermediate=config.intermediate_size,
            vocab=config.vocab_size,
        )

    def to_dict(self) -> dict[str, int]:
        return asdict(self)


@functools.cache
def cache_argument(module_class: type) -> str:
    """The keyword `module_class.forward` takes the KV cache by: `cache` (newer transformers) or
    `past_key_values` (5.17 and the releases around it). Passing the wrong one would not fail:
    the cache would land in `**kwargs` and the layer would run without it."""
    parameters = inspect.signature(module_class.forward).parameters
    return "cache" if "cache" in parameters else "past_key_values"


def check_supported(config: PretrainedConfig) -> None:
    """Raise `UnsupportedModelError` unless `config` describes a model we can drive exactly.

    Sliding-window attention is refused: our attention function implements full causal
    attention over what each layer stores, so a sliding window would silently change answers.
    """
    model_type = getattr(config, "model_type", None)
    if model_type not in SUPPORTED_MODEL_TYPES:
        raise UnsupportedModelError(
            f"model type {model_type!r} is not supported: supported types are {list(SUPPORTED_MODEL_TYPES)}"
        )
    layer_types = getattr(config, "layer_types", None) or []
    uses_sliding = any(kind != "full_attention" for kind in layer_types)
    if model_type == "mistral":
        uses_sliding = uses_sliding or getattr(config, "sliding_window", None) is not None
    if uses_sliding:
        raise UnsupportedModelError(
            f"{model_type} model with sliding-window attention layers is not supported: "
            "only full-attention layers can be pruned exactly"
        )


def model_parts(model: PreTrainedModel) -> ModelParts:
    """The parts of a supported `*ForCausalLM`; raises `UnsupportedModelError` otherwise."""
    check_supported(model.config)
    inner = model.model
    return ModelParts(inner.embed_tokens, inner.layers, inner.norm, inner.rotary_emb, model.lm_head)


def max_context(config: PretrainedConfig) -> int:
    """The model's context length in tokens."""
    return int(config.max_position_embeddings)
