"""Tiny seeded random-config Llama and Qwen2 models (no hub) and the config that prunes them.

A module of its own (not conftest) so test files can import it by a name no other test folder uses."""

from __future__ import annotations

import torch
from transformers import LlamaConfig, LlamaForCausalLM, Qwen2Config, Qwen2ForCausalLM

from sliminfer.config import SlimConfig
from sliminfer.loading import LoadedModel

TINY_SIZES = dict(
    hidden_size=64,
    intermediate_size=128,
    num_hidden_layers=4,
    num_attention_heads=4,
    num_key_value_heads=2,
    vocab_size=256,
    max_position_embeddings=1024,
)
# Small blocks so a few hundred tokens exercise several blocks, units and cuts.
TINY_SLIM = SlimConfig(
    preserve_layers=1,
    block_size=16,
    unit_size=4,
    keep_schedule=((1, 0.5), (3, 0.25)),
    window=8,
    sink_tokens=2,
    min_prompt_tokens=0,
    min_keep_tokens=0,
)


def build_tiny(model_type: str, seed: int = 0) -> torch.nn.Module:
    torch.manual_seed(seed)
    if model_type == "llama":
        model = LlamaForCausalLM(LlamaConfig(**TINY_SIZES, attn_implementation="sdpa"))
    else:
        model = Qwen2ForCausalLM(Qwen2Config(**TINY_SIZES, attn_implementation="sdpa"))
    return model.eval()


def wrap(model: torch.nn.Module, name: str = "tiny") -> LoadedModel:
    return LoadedModel(
        model=model,
        tokenizer=None,
        name=name,
        max_context=model.config.max_position_embeddings,
        device=torch.device("cpu"),
        default_config=TINY_SLIM,
    )


def random_ids(n: int, seed: int = 0, vocab: int = 256) -> torch.Tensor:
    generator = torch.Generator().manual_seed(seed)
    return torch.randint(0, vocab, (1, n), generator=generator)
