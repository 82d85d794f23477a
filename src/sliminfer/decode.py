"""Decoding one token per step behind one interface: `step(token) -> logits`, `finish() -> KVStats`.

`EagerDecoder` runs the model's decoder layers from Python on the per-layer `SlimCache` and
drives the `OffloadManager` when there is one (with a decode budget or `kv_offload="cpu"` it
chooses each step's active prompt blocks and moves them). `GraphedDecoder` (`decode_graph.py`)
replays a captured CUDA graph of a fixed-shape step (swapping blocks inside it when the sets
may change). A generation decodes with `Decoding`: eager steps first, and graph replays from
the first step `graph_may_take_over` allows (the handover rule, in one place).
"""

from __future__ import annotations

from typing import Protocol

import torch

from . import parallel
from .cache import SlimCache
from .config import SlimConfig
from .decode_graph import WARMUP_STEPS, GraphedDecoder
from .loading import LoadedModel
from .metrics import KVStats
from .models import ModelParts, ModelShape
from .offload import OffloadManager, uses_manager
from .prefill import PrefillResult
from .schedule import prunes


class Decoder(Protocol):
    """Decodes the tokens of one generation, one per call, at consecutive positions."""

    def step(self, token: torch.Tensor) -> torch.Tensor:
        """Run `token` `[1, 1]` through the model; returns the next token's float32 logits `[1, vocab]`."""
        ...

    def finish(self) -> KVStats:
        """End decoding: settle the cache and return where the KV lived and what moving it cost."""
        ...


def prepare_manager(
    loaded: LoadedModel, config: SlimConfig | None, prompt_tokens: int, reserve_tokens: int
) -> OffloadManager | None:
    """The offload manager a pruned prompt needs (None without decode budget or offload).

    Runs before any work: it sizes and allocates the store, and raises `HostMemoryError` when
    `kv_offload="cpu"` would not fit in host memory.
    """
    if config is None or not prunes(config, prompt_tokens) or not uses_manager(config):
        return None
    shape = ModelShape.from_hf_config(loaded.model.config)
    # Under tensor parallelism each rank stores only its share of the KV heads.
    block_shape = (shape.kv_heads // parallel.world_size(), config.block_size, shape.head_dim)
    return OffloadManager.prepare(
        config, prompt_tokens, shape.layers, block_shape, loaded.model.dtype, loaded.device, reserve_tokens
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


class EagerDecoder:
    """`decode_step` at consecutive positions from the prompt's end; owns the manager's decode
    phase, from `attach` (given what prefill kept and scored) to `finish`.

    Args:
        prompt_tokens: the prompt length, which is the first decode position.
        prefill: the prompt's prefill (its kept positions and cut scores plan the selection).
    """

    def __init__(
        self,
        parts: ModelParts,
        cache: SlimCache,
        prompt_tokens: int,
        prefill: PrefillResult,
        manager: OffloadManager | None = None,
    ) -> None:
        self.parts, self.cache, self.manager = parts, cache, manager
        self.prompt_tokens = self.position = prompt_tokens
        if manager is not None:
            manager.attach(cache.layers, prefill.kept_positions, prefill.cut_scores)

    def step(self, token: torch.Tensor) -> torch.Tensor:
        logits = decode_step(self.parts, token, self.position, self.cache, self.manager)
        self.position += 1
        return logits

    def finish(self) -> KVStats:
        """The manager's traffic (if any) plus the cache's bytes, read after the last step."""
        kv = self.manager.finish() if self.manager is not None else KVStats()
        cache = self.cache
        kv.gpu_prompt_kv_bytes += cache.prompt_kv_bytes()
        kv.gpu_generated_kv_bytes = cache.kv_bytes() - cache.prompt_kv_bytes()
        kv.full_prompt_kv_bytes = self.parts.num_layers * self.prompt_tokens * cache.layers[0].token_bytes()
        return kv


def graph_may_take_over(graphs: bool, steps_left: int, manager: OffloadManager | None) -> bool:
    """The handover rule: whether a CUDA graph may run every remaining step of a generation.

    Only when graphs are allowed at all (`graphs`: CUDA and `cuda_graph_decode`), when more steps
    remain than the `WARMUP_STEPS` that capturing runs ahead into the cache's slots, and when no
    step can change shape or addresses any more: no manager, or a manager whose slots are all
    filled (`OffloadManager.filled`: after the first step's fill). Swaps after that run inside
    the graph (`OffloadManager.graph_swapper`).
    """
    return graphs and steps_left > WARMUP_STEPS and (manager is None or manager.filled())


class Decoding:
    """The decoder of one generation: eager steps, then graph replays from the first step
    `graph_may_take_over` allows (at most once: a graph never hands back).

    Args:
        eager: the eager decoder, positioned at the first decode step.
        max_steps: the most `step` calls the generation can make (it may stop earlier).
        graphs: whether graphs may take over at all (CUDA and `cuda_graph_decode`).
        capture: capture a CUDA graph at the handover; False runs the graph's fixed-shape step
            eagerly (how the handover is tested on CPU).
    """

    def __init__(self, eager: EagerDecoder, max_steps: int, graphs: bool, capture: bool = True) -> None:
        self.eager = eager
        self.graphed: GraphedDecoder | None = None
        self.steps_left = max_steps
        self.graphs, self.capture = graphs, capture

    def step(self, token: torch.Tensor) -> torch.Tensor:
        manager = self.eager.manager
        if self.graphed is None and graph_may_take_over(self.graphs, self.steps_left, manager):
            swapper = manager.graph_swapper() if manager is not None else None
            eager = self.eager
            self.graphed = GraphedDecoder(eager.parts, eager.cache, eager.position, self.capture, swapper)
        self.steps_left -= 1
        decoder = self.graphed if self.graphed is not None else self.eager
        return decoder.step(token)

    def finish(self) -> KVStats:
        """The eager decoder's stats, counting the graphed steps (a swapper reports its own)."""
        graphed, steps = self.graphed, 0
        if graphed is not None:
            steps = graphed.steps
            graphed.finish()
        kv = self.eager.finish()
        kv.graphed_steps = steps
        if self.eager.manager is not None and graphed is not None and graphed.swapper is None:
            kv.decode_steps += steps
        return kv
