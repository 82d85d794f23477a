"""Prefill + decode loop: sampling, stopping, streaming, timing.

`generate` is the one entry point the CLI, bench, eval and server share. Both methods run the
same code: `full` prefills without pruning, `slim` with the config's keep schedule. Decoding
calls the model's decoder layers one token at a time on the per-layer `SlimCache`; with a
decode budget or `kv_offload="cpu"` an `OffloadManager` chooses each step's active prompt
blocks and keeps the slim layers' resident sets (see `offload/`).
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from typing import Any

import torch

from .attention import use_sliminfer_attention
from .cache import SlimCache
from .config import SlimConfig
from .decode_graph import WARMUP_STEPS, GraphedDecoder
from .errors import EmptyPromptError, PromptTooLongError, UserError
from .loading import LoadedModel
from .metrics import KVStats
from .models import ModelParts, model_parts
from .offload import OffloadManager, uses_manager
from .prefill import slim_prefill
from .sampling import sample_next_token
from .schedule import prunes
from .streaming import TextStream

METHODS = ("slim", "full")
Prompt = str | list[int] | list[dict[str, str]]


@dataclass
class SamplingParams:
    """How to pick tokens and when to stop. `temperature=0` is greedy decoding."""

    max_new_tokens: int = 64
    temperature: float = 0.0
    top_p: float = 1.0
    top_k: int = 0
    seed: int | None = None
    stop: tuple[str, ...] = ()
    ignore_eos: bool = False

    def __post_init__(self) -> None:
        self.stop = (self.stop,) if isinstance(self.stop, str) else tuple(self.stop)
        if not isinstance(self.max_new_tokens, int) or self.max_new_tokens < 1:
            raise UserError(f"max_new_tokens={self.max_new_tokens!r}: must be an integer >= 1")
        if not 0.0 <= self.temperature <= 100.0:
            raise UserError(f"temperature={self.temperature!r}: must be in [0, 100]")
        if not 0.0 < self.top_p <= 1.0:
            raise UserError(f"top_p={self.top_p!r}: must be in (0, 1]")
        if not isinstance(self.top_k, int) or self.top_k < 0:
            raise UserError(f"top_k={self.top_k!r}: must be an integer >= 0 (0 = no limit)")
        if any(not s for s in self.stop):
            raise UserError("stop strings must not be empty")


@dataclass
class GenerationResult:
    """Everything one generation produced and measured (`to_dict` is the `--json` output)."""

    text: str
    token_ids: list[int]
    prompt_tokens: int
    new_tokens: int
    finish_reason: str
    ttft_s: float
    total_s: float
    decode_ms_per_token: float
    method: str
    config: dict[str, Any] | None
    kept_tokens_per_layer: list[int]
    kv_cache_bytes: int
    kv: KVStats = field(default_factory=KVStats)
    pruned: bool = False
    finish_detail: str | None = None
    """Why generation stopped where the reason alone does not say (the context limit)."""

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def encode_prompt(loaded: LoadedModel, prompt: Prompt, chat: bool = False) -> list[int]:
    """Token ids of `prompt`: ids as given, messages or `chat=True` text through the chat template."""
    if isinstance(prompt, list) and all(isinstance(t, int) for t in prompt):
        ids = list(prompt)
    else:
        tokenizer = loaded.tokenizer
        if tokenizer is None:
            raise UserError(f"model {loaded.name!r} has no tokenizer: pass token ids")
        messages = [{"role": "user", "content": prompt}] if isinstance(prompt, str) and chat else prompt
        if isinstance(messages, str):
            ids = tokenizer(messages, add_special_tokens=True)["input_ids"]
        else:
            if not tokenizer.chat_template:
                raise UserError(f"model {loaded.name!r} has no chat template: use a plain text prompt")
            ids = tokenizer.apply_chat_template(messages, add_generation_prompt=True, tokenize=True)
            ids = ids["input_ids"] if isinstance(ids, dict) or hasattr(ids, "keys") else ids
    if not ids or (isinstance(prompt, str) and not prompt.strip()):
        raise EmptyPromptError()
    return ids


def generate(
    loaded: LoadedModel,
    prompt: Prompt,
    *,
    method: str = "slim",
    config: SlimConfig | None = None,
    sampling: SamplingParams | None = None,
    chat: bool = False,
    on_text: Callable[[str], None] | None = None,
    should_stop: Callable[[], bool] | None = None,
) -> GenerationResult:
    """Generate a continuation of `prompt` with SlimInfer pruning (`slim`) or without (`full`)."""
    if method not in METHODS:
        raise UserError(f"method={method!r}: must be one of {list(METHODS)}")
    sampling = sampling or SamplingParams()
    config = config or loaded.default_config
    prompt_ids = encode_prompt(loaded, prompt, chat)
    if len(prompt_ids) > loaded.max_context:
        raise PromptTooLongError(len(prompt_ids), loaded.max_context)
    parts = model_parts(loaded.model)
    slim_config = config if method == "slim" else None
    if slim_config is not None:
        slim_config.check_model(parts.num_layers)
    room = loaded.max_context - len(prompt_ids)
    budget = min(sampling.max_new_tokens, room) if room > 0 else 1
    with torch.inference_mode(), use_sliminfer_attention(loaded.model):
        return _run(loaded, parts, prompt_ids, config, slim_config, sampling, budget, on_text, should_stop, method)


def _run(
    loaded: LoadedModel,
    parts: ModelParts,
    prompt_ids: list[int],
    config: SlimConfig,
    slim_config: SlimConfig | None,
    sampling: SamplingParams,
    budget: int,
    on_text: Callable[[str], None] | None,
    should_stop: Callable[[], bool] | None,
    method: str,
) -> GenerationResult:
    device = loaded.device
    generator = None
    if sampling.seed is not None:
        generator = torch.Generator(device=device).manual_seed(sampling.seed)
    stream = TextStream(loaded.tokenizer, sampling.stop, on_text)
    eos_ids = set() if sampling.ignore_eos else _eos_ids(loaded)
    cache = SlimCache(parts.num_layers, reserve_tokens=budget)
    input_ids = torch.tensor([prompt_ids], device=device)
    manager = prepare_manager(loaded, slim_config, len(prompt_ids), budget)

    start = _now(device)
    prefill = slim_prefill(loaded.model, input_ids, cache, slim_config)
    logits = prefill.logits
    if manager is not None:
        manager.attach(cache.layers, prefill.kept_positions)
    # Without a manager every step has the same shape; with one, once `manager.is_static()`
    # (gamma=0, resident sets filled, no copy pending): from then on a step can be a CUDA graph.
    use_graph = device.type == "cuda" and config.cuda_graph_decode
    decoder = None
    ttft_s = finish_reason = None
    new_ids: list[int] = []
    while finish_reason is None:
        token = sample_next_token(
            logits, temperature=sampling.temperature, top_k=sampling.top_k, top_p=sampling.top_p, generator=generator
        )
        token_id = int(token[0])
        if ttft_s is None:
            ttft_s = _now(device) - start
        if token_id in eos_ids:
            finish_reason = "stop"
            break
        new_ids.append(token_id)
        if stream.push(token_id):
            finish_reason = "stop"
        elif len(new_ids) >= budget:
            finish_reason = "length"
        elif should_stop is not None and should_stop():
            finish_reason = "cancelled"
        else:
            position = len(prompt_ids) + len(new_ids) - 1
            steps_left = budget - len(new_ids)
            if decoder is None and use_graph and steps_left > WARMUP_STEPS and (manager is None or manager.is_static()):
                decoder = GraphedDecoder(parts, cache, position)
            if decoder is not None:
                logits = decoder.step(token.view(1, 1))
            else:
                logits = decode_step(parts, token.view(1, 1), position, cache, manager)
    if decoder is not None:
        decoder.finish()
    stream.close()
    total_s = _now(device) - start
    kv = manager.finish() if manager is not None else KVStats()
    kv.gpu_prompt_kv_bytes += cache.prompt_kv_bytes()
    kv.gpu_generated_kv_bytes = cache.kv_bytes() - cache.prompt_kv_bytes()
    kv.full_prompt_kv_bytes = parts.num_layers * len(prompt_ids) * cache.layers[0].token_bytes()
    decode_tokens = max(len(new_ids) - 1, 1)
    return GenerationResult(
        text=stream.text,
        token_ids=new_ids,
        prompt_tokens=len(prompt_ids),
        new_tokens=len(new_ids),
        finish_reason=finish_reason,
        ttft_s=ttft_s,
        total_s=total_s,
        decode_ms_per_token=1000.0 * (total_s - ttft_s) / decode_tokens,
        method=method,
        config=config.to_dict(),
        kept_tokens_per_layer=prefill.kept_tokens_per_layer,
        kv_cache_bytes=cache.kv_bytes(),
        kv=kv,
        pruned=prefill.pruned,
        finish_detail=context_limit_detail(len(prompt_ids), len(new_ids), budget, sampling.max_new_tokens, finish_reason),
    )


def context_limit_detail(prompt_tokens: int, new_tokens: int, budget: int, asked: int, finish_reason: str) -> str | None:
    """A sentence when the context, not `max_new_tokens`, ended the generation."""
    if finish_reason != "length" or budget >= asked:
        return None
    return (
        f"stopped at the model's context limit: prompt {prompt_tokens} + {new_tokens} new tokens "
        f"(max_new_tokens={asked} did not fit)"
    )


def prepare_manager(
    loaded: LoadedModel, config: SlimConfig | None, prompt_tokens: int, reserve_tokens: int
) -> OffloadManager | None:
    """The offload manager a pruned prompt needs (None without decode budget or offload).

    Runs before any work: it sizes and allocates the store, and raises `HostMemoryError` when
    `kv_offload="cpu"` would not fit in host memory.
    """
    if config is None or not prunes(config, prompt_tokens) or not uses_manager(config):
        return None
    model_config = loaded.model.config
    heads = model_config.num_attention_heads
    head_dim = getattr(model_config, "head_dim", None) or model_config.hidden_size // heads
    kv_heads = getattr(model_config, "num_key_value_heads", None) or heads
    block_shape = (kv_heads, config.block_size, head_dim)
    return OffloadManager.prepare(
        config, prompt_tokens, model_config.num_hidden_layers, block_shape, loaded.model.dtype, loaded.device, reserve_tokens
    )


def decode_step(
    parts: ModelParts, token: torch.Tensor, position: int, cache: SlimCache, manager: OffloadManager | None = None
) -> torch.Tensor:
    """Run one token `[batch, 1]` at `position` through every layer; returns `[batch, vocab]` logits.

    With a `manager`, score layers record the token's unit scores and the manager picks the
    active blocks and starts copies right after each layer is launched.
    """
    positions = torch.full_like(token, position)
    hidden, rope = parts.embed(token, positions)
    state = manager.forward_state() if manager is not None else None
    for index in range(parts.num_layers):
        hidden = parts.run_layer(index, hidden, positions, rope, cache, slim=state)
        if manager is not None:
            manager.after_layer(index, state)
    return parts.last_logits(hidden)


def _eos_ids(loaded: LoadedModel) -> set[int]:
    ids = loaded.model.generation_config.eos_token_id
    ids = set(ids) if isinstance(ids, list) else {ids} if ids is not None else set()
    if loaded.tokenizer is not None and loaded.tokenizer.eos_token_id is not None:
        ids.add(loaded.tokenizer.eos_token_id)
    return ids


def _now(device: torch.device) -> float:
    """Wall time after all queued device work has finished (so timings are real)."""
    if device.type == "cuda":
        torch.cuda.synchronize(device)
    return time.perf_counter()
