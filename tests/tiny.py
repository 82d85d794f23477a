"""Tiny seeded random-config Llama and Qwen2 models (no hub), the config that prunes them, and
the references several test modules share: stock-HF reference forwards, a hand-made 32-token
layout for the decode-time selection, and a managed prefill for decoding tests.

A module of its own (not conftest) so test files can import it by a name no other test folder uses."""

from __future__ import annotations

import torch
from transformers import LlamaConfig, LlamaForCausalLM, Qwen2Config, Qwen2ForCausalLM

from sliminfer.attention import use_sliminfer_attention
from sliminfer.cache import SlimCache
from sliminfer.config import SlimConfig
from sliminfer.loading import LoadedModel
from sliminfer.models import cache_argument, model_parts
from sliminfer.offload import OffloadManager
from sliminfer.prefill import slim_prefill

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


def causal_float_mask(n):
    mask = torch.full((n, n), float("-inf")).triu(1)
    return mask.view(1, 1, n, n)


@torch.inference_mode()
def reference_logits(model, ids, kept_positions):
    """Stock HF layers with eager attention and an explicit mask, on exactly the kept tokens."""
    inner = model.model
    previous = model.config._attn_implementation
    model.set_attn_implementation("eager")
    try:
        hidden = inner.embed_tokens(ids)
        current = torch.arange(ids.shape[1])
        for layer, wanted in zip(inner.layers, kept_positions, strict=True):
            keep = torch.isin(current, wanted[0])
            hidden, current = hidden[:, keep], current[keep]
            assert torch.equal(current, wanted[0])
            rope = inner.rotary_emb(hidden, current[None])
            hidden = layer(
                hidden, attention_mask=causal_float_mask(len(current)), position_ids=current[None], position_embeddings=rope
            )
        return model.lm_head(inner.norm(hidden))[:, -1].float()
    finally:
        model.set_attn_implementation(previous)


# 32-token prompt, 8 blocks of 4 tokens, units of 2; cut at layer 1 keeps blocks 0, 2, 5, 7.
HAND = SlimConfig(
    preserve_layers=1, block_size=4, unit_size=2, keep_schedule=((1, 0.5),), window=2, sink_tokens=1,
    min_prompt_tokens=0, min_keep_tokens=0, decode_budget=0.75,
)
KEPT_BLOCKS = [0, 2, 5, 7]


def hand_positions(num_layers=4):
    kept = torch.tensor([[b * 4 + t for b in KEPT_BLOCKS for t in range(4)]])
    return [torch.arange(32)[None]] + [kept] * (num_layers - 1)


def unit_scores_favoring(*blocks):
    scores = torch.full((1, 16), 0.01)
    for block in blocks:
        scores[0, 2 * block + 1] = 1.0
    return scores


N, STEPS = 203, 5
"""Prompt tokens and decode steps of the managed-decoding tests."""


def prompt(seed=3):
    return torch.randint(0, 256, (1, N), generator=torch.Generator().manual_seed(seed))


def prefill_with_manager(loaded, config, ids):
    """Two identical prefills: one plain cache, one handed to a manager built for `config`."""
    caches = [SlimCache(4, reserve_tokens=STEPS) for _ in range(2)]
    with use_sliminfer_attention(loaded.model):
        prefills = [slim_prefill(loaded.model, ids, cache, config) for cache in caches]
    block_shape = (loaded.model.config.num_key_value_heads, config.block_size, 16)
    manager = OffloadManager.prepare(config, N, 4, block_shape, torch.float32, torch.device("cpu"), STEPS)
    manager.attach(caches[1].layers, prefills[1].kept_positions, prefills[1].cut_scores)
    return caches, prefills[0].logits, manager


# One cut at layer 3 with the preserve layers offloaded: layers 0 and 1 managed (lagged), 2 scores.
OFFLOAD_PRESERVE = ("preserve_layers=3", "keep_schedule=3:0.5", "kv_offload=cpu", "offload_preserve_layers=true")


@torch.inference_mode()
def reference_step(model, token, position, cache, allowed):
    """Stock HF layers, eager attention, masks restricting layer l's prompt keys to `allowed[l]`."""
    parts = model_parts(model)
    positions = torch.full_like(token, position)
    hidden, rope = parts.embed(token, positions)
    previous = model.config._attn_implementation
    model.set_attn_implementation("eager")
    try:
        for index, layer in enumerate(parts.layers):
            stored = cache.layers[index].length + 1
            mask = torch.zeros(1, 1, 1, stored)
            if index in allowed:
                prompt_mask = mask[..., : allowed[index].numel()]
                prompt_mask[..., ~allowed[index]] = float("-inf")
            hidden = layer(hidden, attention_mask=mask, position_ids=positions, use_cache=True,
                           position_embeddings=rope, **{cache_argument(type(layer)): cache})
    finally:
        model.set_attn_implementation(previous)
    return parts.last_logits(hidden)


def save_tiny_folder(path) -> None:
    """`build_tiny("llama")` as a local HF folder with a word-level tokenizer ("t0".."t255" are
    the ids), so `load_model` (and transformers' tensor-parallel loading) can read it."""
    from tokenizers import Tokenizer, models, pre_tokenizers
    from transformers import PreTrainedTokenizerFast

    build_tiny("llama").save_pretrained(path)
    words = Tokenizer(models.WordLevel({f"t{i}": i for i in range(256)}, unk_token="t0"))
    words.pre_tokenizer = pre_tokenizers.WhitespaceSplit()
    PreTrainedTokenizerFast(tokenizer_object=words, unk_token="t0", eos_token="t2").save_pretrained(path)
