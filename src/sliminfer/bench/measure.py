"""One timed generation per call, for each kind of benchmarked method (`sliminfer.methods`).

- `hf`: what a user would run instead, plain transformers with SDPA and no sliminfer code: one
  synchronized `model.generate` of exactly N greedy tokens. End to end is its wall time, TTFT
  the time to its first new token (taken by a streamer), decode ms/token (end to end - TTFT) /
  (N - 1). All three come from the same call, so TTFT <= end to end always holds (a separate
  prefill forward for TTFT is another prefill, which on a CPU can take longer than the whole
  `generate` call).
- `full` / `slim`: `sliminfer.generate.generate` without / with pruning, which times its own
  TTFT and decode in the same way; end to end is the synchronized wall time of the whole call.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import asdict, dataclass
from typing import Any

import torch
from transformers.generation.streamers import BaseStreamer

from ..config import SlimConfig
from ..generate import SamplingParams, generate
from ..loading import LoadedModel
from ..methods import Method
from ..models import ModelShape
from .flops import kv_cache_bytes
from .harness import peak_memory_bytes, reset_peak_memory, synchronize, timed


@dataclass
class Measurement:
    """One measured generation (one of a cell's samples in results.json). Times in seconds
    unless the name says ms."""

    ttft_s: float
    e2e_s: float
    decode_ms_per_token: float
    new_tokens: int
    kept_tokens_per_layer: list[int]
    kv_cache_bytes: int
    peak_memory_bytes: int | None
    attention_density_per_layer: list[float] | None = None
    """Per layer, the share of its causal prefill attention computed (None: all dense, e.g. hf)."""

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def run_hf(loaded: LoadedModel, prompt_ids: list[int], new_tokens: int) -> Measurement:
    """Plain transformers `model.generate`: TTFT, decode and end to end from one call."""
    model, device = loaded.model, loaded.device
    input_ids = torch.tensor([prompt_ids], device=device)
    reset_peak_memory(device)
    with torch.inference_mode():
        clock = _FirstTokenClock()
        synchronize(device)
        start = time.perf_counter()
        output = model.generate(
            input_ids,
            attention_mask=torch.ones_like(input_ids),
            max_new_tokens=new_tokens,
            min_new_tokens=new_tokens,
            do_sample=False,
            pad_token_id=_pad_id(model.generation_config),
            streamer=clock,
        )
        synchronize(device)
        e2e_s = time.perf_counter() - start
    ttft_s = clock.first_token_at - start
    generated = output.shape[-1] - input_ids.shape[-1]
    shape = ModelShape.from_hf_config(model.config)
    # Like our cache: every prompt token in every layer, plus all generated tokens but the last.
    stored = [len(prompt_ids) + generated - 1] * shape.layers
    return Measurement(
        ttft_s=ttft_s,
        e2e_s=e2e_s,
        decode_ms_per_token=1000.0 * (e2e_s - ttft_s) / max(generated - 1, 1),
        new_tokens=generated,
        kept_tokens_per_layer=[len(prompt_ids)] * shape.layers,
        kv_cache_bytes=kv_cache_bytes(shape, stored, model.dtype.itemsize),
        peak_memory_bytes=peak_memory_bytes(device),
    )


def _pad_id(generation_config: Any) -> int:
    """The pad id `generate` wants (unused at batch 1; passing it avoids a warning per call)."""
    if generation_config.pad_token_id is not None:
        return generation_config.pad_token_id
    eos = generation_config.eos_token_id
    return (eos[0] if isinstance(eos, list) else eos) or 0


class _FirstTokenClock(BaseStreamer):
    """Notes when `generate` streams its first new token.

    `generate` puts the prompt first, then each new token after copying it to the host, a copy
    that waits for the device: the second `put` marks the end of the prefill and first sample.
    """

    def __init__(self) -> None:
        self.puts = 0
        self.first_token_at: float | None = None

    def put(self, value: torch.Tensor) -> None:
        self.puts += 1
        if self.puts == 2:
            self.first_token_at = time.perf_counter()

    def end(self) -> None:
        pass


def run_sliminfer(
    loaded: LoadedModel, prompt_ids: list[int], new_tokens: int, method: str, config: SlimConfig
) -> Measurement:
    """`sliminfer.generate` with `method` 'full' or 'slim', exactly `new_tokens` tokens (EOS ignored)."""
    device = loaded.device
    sampling = SamplingParams(max_new_tokens=new_tokens, ignore_eos=True)
    reset_peak_memory(device)
    e2e_s, result = timed(
        lambda: generate(loaded, prompt_ids, method=method, config=config, sampling=sampling), device
    )
    return Measurement(
        ttft_s=result.ttft_s,
        e2e_s=e2e_s,
        decode_ms_per_token=result.decode_ms_per_token,
        new_tokens=result.new_tokens,
        kept_tokens_per_layer=list(result.kept_tokens_per_layer),
        kv_cache_bytes=result.kv_cache_bytes,
        peak_memory_bytes=peak_memory_bytes(device),
        attention_density_per_layer=result.attention_density_per_layer,
    )


def method_call(
    method: Method, loaded: LoadedModel, prompt_ids: list[int], new_tokens: int, base: SlimConfig
) -> Callable[[], Measurement]:
    """A no-argument function that runs `method` once on `prompt_ids` and returns its `Measurement`.

    `full` runs with `base` (it prunes nothing, but `base` still decides e.g. CUDA-graph decoding).
    """
    if method.kind == "hf":
        return lambda: run_hf(loaded, prompt_ids, new_tokens)
    return lambda: run_sliminfer(loaded, prompt_ids, new_tokens, method.kind, method.config or base)
