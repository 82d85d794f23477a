"""Public architectures with random weights, built directly on the device: speed figures only.

Llama-3.1-8B, Llama-3.1-70B and Qwen2.5-7B weights cannot be had offline, but their prefill
and decode cost depends only on their shapes, which are public (each model's `config.json`).
The model is created on the meta device (no host memory, no slow default init), materialized
with `to_empty` on the target device and filled with a cheap seeded init; under torchrun each
rank builds only its tensor-parallel shards, on its GPU. Random weights make attention near uniform, so
which blocks a slim prefill keeps is arbitrary; every number from these models is a speed
number and says so.

`tiny-llama` is a test-only architecture (4 small layers) for fast end-to-end checks on CPU.
"""

from __future__ import annotations

from typing import Any

import torch
from transformers import AutoModelForCausalLM, LlamaConfig, PretrainedConfig, PreTrainedModel, Qwen2Config
from transformers.models.auto.modeling_auto import MODEL_FOR_CAUSAL_LM_MAPPING
from transformers.utils import logging as hf_logging

from .. import parallel
from ..config import preset_for
from ..loading import LoadedModel, resolve_device, resolve_dtype
from ..models import check_supported

RANDOM_WEIGHTS_NOTE = "random weights, speed only"
DECODE_HEADROOM_TOKENS = 4096
"""Tokens a random model may generate past its max positions, so a prompt of exactly max
positions (128k for Llama-3.1-8B) still gets its full `--new-tokens`."""
INIT_STD = 0.02
"""Std of every random matrix: q/k/v/MLP outputs of RMS-normed inputs stay O(1) per layer, so the
residual stream grows only additively and stays finite in bf16 over 32 layers."""

LLAMA_3_1_8B: dict[str, Any] = dict(
    hidden_size=4096,
    num_hidden_layers=32,
    num_attention_heads=32,
    num_key_value_heads=8,
    head_dim=128,
    intermediate_size=14336,
    vocab_size=128256,
    max_position_embeddings=131072,
    rms_norm_eps=1e-5,
    rope_parameters={
        "rope_type": "llama3",
        "rope_theta": 500000.0,
        "factor": 8.0,
        "low_freq_factor": 1.0,
        "high_freq_factor": 4.0,
        "original_max_position_embeddings": 8192,
    },
    bos_token_id=128000,
    eos_token_id=128001,
    tie_word_embeddings=False,
)

QWEN2_5_7B: dict[str, Any] = dict(
    hidden_size=3584,
    num_hidden_layers=28,
    num_attention_heads=28,
    num_key_value_heads=4,
    intermediate_size=18944,
    vocab_size=152064,
    max_position_embeddings=32768,
    rms_norm_eps=1e-6,
    rope_parameters={"rope_type": "default", "rope_theta": 1000000.0},
    use_sliding_window=False,
    bos_token_id=151643,
    eos_token_id=151643,
    tie_word_embeddings=False,
)

LLAMA_3_1_70B: dict[str, Any] = dict(
    LLAMA_3_1_8B,
    hidden_size=8192,
    num_hidden_layers=80,
    num_attention_heads=64,
    num_key_value_heads=8,
    intermediate_size=28672,
)

TINY_LLAMA: dict[str, Any] = dict(
    hidden_size=64,
    num_hidden_layers=4,
    num_attention_heads=4,
    num_key_value_heads=2,
    intermediate_size=128,
    vocab_size=256,
    max_position_embeddings=4096,
    bos_token_id=1,
    eos_token_id=2,
    tie_word_embeddings=False,
)

ARCHITECTURES: dict[str, tuple[type[PretrainedConfig], dict[str, Any]]] = {
    "llama-3.1-8b": (LlamaConfig, LLAMA_3_1_8B),
    "llama-3.1-70b": (LlamaConfig, LLAMA_3_1_70B),
    "qwen2.5-7b": (Qwen2Config, QWEN2_5_7B),
    "tiny-llama": (LlamaConfig, TINY_LLAMA),
}


def is_random_architecture(name: str) -> bool:
    """Whether `name` is one of `ARCHITECTURES` (rather than 'default' or a path)."""
    return name in ARCHITECTURES


def random_config(name: str) -> PretrainedConfig:
    """The transformers config of architecture `name` (SDPA attention)."""
    config_class, values = ARCHITECTURES[name]
    config = config_class(**values)
    config._attn_implementation = "sdpa"
    return config


def build_random_model(name: str, *, device: str = "auto", dtype: str = "auto", seed: int = 0) -> LoadedModel:
    """Architecture `name` with seeded random weights on `device`, as a `LoadedModel` without tokenizer.

    `max_context` is the architecture's max positions plus `DECODE_HEADROOM_TOKENS`: prompts
    may use every position, and the rotary embedding computes any position, so decoding may run
    past them (speed is what these models are for).
    """
    torch_device = resolve_device(device)
    torch_dtype = resolve_dtype(dtype, torch_device)
    config = random_config(name)
    check_supported(config)
    if parallel.launched():
        model = _sharded_random_model(config, torch_dtype, seed)
    else:
        with torch.device("meta"):
            model = AutoModelForCausalLM.from_config(config, dtype=torch_dtype, attn_implementation="sdpa")
        model.to_empty(device=torch_device)
        init_random_weights(model, seed)
        # `to_empty` leaves the rotary buffers (inv_freq, computed at construction) uninitialized.
        model.model.rotary_emb = type(model.model.rotary_emb)(config=model.config).to(torch_device)
    model.eval()
    return LoadedModel(
        model=model,
        tokenizer=None,
        name=f"{name} ({RANDOM_WEIGHTS_NOTE})",
        max_context=config.max_position_embeddings + DECODE_HEADROOM_TOKENS,
        device=torch_device,
        default_config=preset_for(config.model_type, config.num_hidden_layers, config.hidden_size),
    )


def _sharded_random_model(config: PretrainedConfig, dtype: torch.dtype, seed: int) -> PreTrainedModel:
    """This rank's tensor-parallel shard of a random model, built by transformers' own loading
    from an empty state dict: it places each rank's shards directly on its GPU and fills them
    with the model's init (normal, std `initializer_range` = `INIT_STD`; norms 1), so a 70B
    model is never materialized whole. DTensor's RNG draws each shard as its part of one global
    random matrix, and the only replicated weights (the norms) are constant."""
    parallel.check_model_split(config)
    torch.manual_seed(seed)
    model_class = MODEL_FOR_CAUSAL_LM_MAPPING[type(config)]
    verbosity = hf_logging.get_verbosity()
    hf_logging.set_verbosity_error()  # no report listing every weight as "missing": that is the point
    try:
        return model_class.from_pretrained(
            None, config=config, state_dict={}, dtype=dtype, attn_implementation="sdpa", **parallel.from_pretrained_kwargs()
        )
    finally:
        hf_logging.set_verbosity(verbosity)


@torch.no_grad()
def init_random_weights(model: torch.nn.Module, seed: int) -> None:
    """Normal(0, `INIT_STD`) matrices and embeddings, zero biases, unit RMSNorm weights; seeded."""
    first = next(model.parameters())
    generator = torch.Generator(device=first.device).manual_seed(seed)
    for name, param in model.named_parameters():
        if name.endswith("norm.weight"):
            param.fill_(1.0)
        elif name.endswith(".bias"):
            param.zero_()
        else:
            param.normal_(0.0, INIT_STD, generator=generator)
