"""Prefill + decode loop: sampling, stopping, streaming, timing.

`generate` is the one entry point the CLI, bench, eval and server share. Both methods run the
same code: `full` prefills without pruning, `slim` with the config's keep schedule. Then each
sampled token either ends the generation (`StopRule`) or is decoded by a `decode.Decoding`,
which owns the per-step work: eager steps on the per-layer `SlimCache` (with the
`OffloadManager` when there is a decode budget or `kv_offload="cpu"`), then CUDA-graph replays
once the step can no longer change.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from typing import Any

import torch

from . import parallel
from .attention import use_sliminfer_attention
from .cache import SlimCache
from .config import SlimConfig
from .decode import Decoding, EagerDecoder, prepare_manager
from .errors import EmptyPromptError, PromptTooLongError, UserError
from .loading import LoadedModel
from .methods import GENERATE_KINDS
from .metrics import KVStats, sparse_prefill_note
from .models import model_parts
from .prefill import PrefillResult, slim_prefill
from .sampling import sample_next_token
from .streaming import TextStream

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
    """Everything one generation produced and measured (`to_dict` is the `--json` output).

    Under tensor parallelism `kv_cache_bytes` counts the KV of every rank, `kv` this rank's.
    """

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
    attention_density_per_layer: list[float] = field(default_factory=list)
    """Per layer, the share of its causal prefill attention computed (1.0: dense; below 1 in
    the layers `sparse_prefill` makes block-sparse)."""
    sparse_prefill_note: str | None = None
    """What sparse prefill did, where it was asked for or ran (`metrics.sparse_prefill_note`):
    its density, or why it was not applied (the prompt below `sparse_min_tokens`)."""

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def encode_prompt(loaded: LoadedModel, prompt: Prompt, chat: bool = False) -> list[int]:
    """Token ids of `prompt`: ids as given, messages or `chat=True` text through the chat template.

    Raises `EmptyPromptError` for no ids, and for text or messages with nothing but whitespace
    (special tokens or a chat template would otherwise give the model something to continue).
    """
    if _is_blank(prompt):
        raise EmptyPromptError()
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
    if not ids:
        raise EmptyPromptError()
    return ids


def _is_blank(prompt: Prompt) -> bool:
    if isinstance(prompt, str):
        return not prompt.strip()
    messages = [m for m in prompt if isinstance(m, dict)]
    return bool(messages) and all(not str(m.get("content") or "").strip() for m in messages)


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
    """Generate a continuation of `prompt` with SlimInfer pruning (`slim`) or without (`full`).

    `on_text` receives the text as it is decoded, in pieces (no newline added: e.g.
    `lambda text: print(text, end="", flush=True)`); `should_stop` is polled after each token.
    """
    if method not in GENERATE_KINDS:
        raise UserError(f"method={method!r}: must be one of {list(GENERATE_KINDS)}")
    sampling = sampling or SamplingParams()
    config = config or loaded.default_config
    prompt_ids = encode_prompt(loaded, prompt, chat)
    if len(prompt_ids) > loaded.max_context:
        raise PromptTooLongError(len(prompt_ids), loaded.max_context)
    slim_config = config if method == "slim" else None
    if slim_config is not None:
        slim_config.check_model(loaded.model.config.num_hidden_layers)
    room = loaded.max_context - len(prompt_ids)
    budget = min(sampling.max_new_tokens, room) if room > 0 else 1
    stream = TextStream(loaded.tokenizer, sampling.stop, on_text)
    stop = StopRule(set() if sampling.ignore_eos else _eos_ids(loaded), stream, budget, should_stop)
    with torch.inference_mode(), use_sliminfer_attention(loaded.model):
        # A captured step would replay the collectives of a sharded layer: eager under TP.
        graphs = config.cuda_graph_decode and parallel.world_size() == 1
        run = _run(loaded, prompt_ids, slim_config, graphs, sampling, stop)
    decode_tokens = max(len(run.new_ids) - 1, 1)
    return GenerationResult(
        text=stream.text,
        token_ids=run.new_ids,
        prompt_tokens=len(prompt_ids),
        new_tokens=len(run.new_ids),
        finish_reason=run.finish_reason,
        ttft_s=run.ttft_s,
        total_s=run.total_s,
        decode_ms_per_token=1000.0 * (run.total_s - run.ttft_s) / decode_tokens,
        method=method,
        config=config.to_dict(),
        kept_tokens_per_layer=run.prefill.kept_tokens_per_layer,
        kv_cache_bytes=run.kv_cache_bytes,
        kv=run.kv,
        pruned=run.prefill.pruned,
        attention_density_per_layer=run.prefill.attention_density_per_layer,
        sparse_prefill_note=sparse_prefill_note(run.prefill.attention_density_per_layer, slim_config),
        finish_detail=context_limit_detail(
            len(prompt_ids), len(run.new_ids), budget, sampling.max_new_tokens, run.finish_reason
        ),
    )


@dataclass
class StopRule:
    """Collects the sampled tokens and says when the generation ends: at EOS (not part of the
    output), a stop string in the streamed text, the token budget, or a cancel request."""

    eos_ids: set[int]
    stream: TextStream
    budget: int
    should_stop: Callable[[], bool] | None = None
    new_ids: list[int] = field(default_factory=list)

    def add(self, token_id: int) -> str | None:
        """Take one sampled token; returns the finish reason if the generation ends here, else None."""
        if token_id in self.eos_ids:
            return "stop"
        self.new_ids.append(token_id)
        if self.stream.push(token_id):
            return "stop"
        if len(self.new_ids) >= self.budget:
            return "length"
        if self.should_stop is not None and self.should_stop():
            return "cancelled"
        return None


@dataclass
class _Run:
    """What one prefill + decode produced, before it becomes a `GenerationResult`."""

    prefill: PrefillResult
    new_ids: list[int]
    finish_reason: str
    ttft_s: float
    total_s: float
    kv: KVStats
    kv_cache_bytes: int


def _run(
    loaded: LoadedModel,
    prompt_ids: list[int],
    slim_config: SlimConfig | None,
    graphs: bool,
    sampling: SamplingParams,
    stop: StopRule,
) -> _Run:
    """Prefill, then sample and decode until `stop` says why it ends; times TTFT and total."""
    device = loaded.device
    parts = model_parts(loaded.model)
    seed = parallel.shared_seed(sampling.seed)
    generator = None if seed is None else torch.Generator(device=device).manual_seed(seed)
    cache = SlimCache(parts.num_layers, reserve_tokens=stop.budget)
    manager = prepare_manager(loaded, slim_config, len(prompt_ids), stop.budget)
    start = _now(device)
    prefill = slim_prefill(loaded.model, torch.tensor([prompt_ids], device=device), cache, slim_config)
    eager = EagerDecoder(parts, cache, len(prompt_ids), prefill, manager)
    decoder = Decoding(eager, max_steps=stop.budget - 1, graphs=device.type == "cuda" and graphs)
    logits, ttft_s, finish_reason = prefill.logits, None, None
    while finish_reason is None:
        token = sample_next_token(
            logits, temperature=sampling.temperature, top_k=sampling.top_k, top_p=sampling.top_p, generator=generator
        )
        if ttft_s is None:
            ttft_s = _now(device) - start
        finish_reason = stop.add(int(token[0]))
        if finish_reason is None:
            logits = decoder.step(token.view(1, 1))
    stop.stream.close()
    total_s = _now(device) - start
    kv = decoder.finish()
    # Each tensor-parallel rank stores its share of the KV heads; report the model's whole cache.
    kv_cache_bytes = cache.kv_bytes() * parallel.world_size()
    return _Run(prefill, stop.new_ids, finish_reason, ttft_s, total_s, kv, kv_cache_bytes)


def context_limit_detail(prompt_tokens: int, new_tokens: int, budget: int, asked: int, finish_reason: str) -> str | None:
    """A sentence when the context, not `max_new_tokens`, ended the generation."""
    if finish_reason != "length" or budget >= asked:
        return None
    return (
        f"stopped at the model's context limit: prompt {prompt_tokens} + {new_tokens} new tokens "
        f"(max_new_tokens={asked} did not fit)"
    )


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
