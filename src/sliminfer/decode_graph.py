"""Decode steps replayed as one CUDA graph: the speed decision for decoding, in one place.

An eager decode step of an 8B model launches hundreds of small kernels from Python and is
launch-bound: tens of ms per token, far above the time its weights and KV take to read.
Capturing the step once and replaying it removes the launch overhead.

A graph needs fixed shapes and addresses, so during graphed decoding every layer writes its
new K/V into slot `lengths[i]` of its preallocated `SlimLayer` buffers (through
`GraphStepCache`) and attends to the whole buffer with the invalid tail masked
(`ForwardState.kv_valid_lengths`). The per-layer lengths (valid slots once the step's token
is written) live on the device and advance inside the graph. Graphs take over from eager
decoding once every step has the same shapes (CUDA, batch 1; with decode-time block selection
or offload, once every slot is filled): `decode.graph_may_take_over` is that rule. Steps that
swap blocks replay the same graph: an `offload.GraphSwapper` runs the swap rule inside the
step on device tensors (and, with a host store, splits the step into two graphs so the host
can stage the chosen blocks between them).
"""

from __future__ import annotations

import contextlib

import torch
from transformers.cache_utils import Cache

from .cache import SlimCache
from .metrics import KVStats
from .models import ModelParts
from .offload import GraphSwapper
from .state import ForwardState

WARMUP_STEPS = 2


class GraphStepCache(Cache):
    """The `Cache` HF's attention sees during a graphed step: fixed-size writes and reads.

    Layer i's `update` copies the step's K/V into slot `lengths[i] - 1` of the `SlimLayer`
    buffers and returns the whole buffers; nothing here depends on host-side values.
    """

    def __init__(self, cache: SlimCache, lengths: torch.Tensor) -> None:
        super().__init__(layers=list(cache.layers))
        self.lengths = lengths

    def update(
        self, key_states: torch.Tensor, value_states: torch.Tensor, layer_idx: int, *args, **kwargs
    ) -> tuple[torch.Tensor, torch.Tensor]:
        keys, values = self.layers[layer_idx].buffers
        slot = self.lengths[layer_idx : layer_idx + 1] - 1
        keys.index_copy_(2, slot, key_states)
        values.index_copy_(2, slot, value_states)
        return keys, values


class GraphedDecoder:
    """Runs decode steps on `cache` from `position` on; `step(token)` returns `[1, vocab]` logits.

    Capturing runs `WARMUP_STEPS` throw-away steps, which write (and later overwrite) the
    slots of the first steps to come: the buffers need room for at least that many.

    Args:
        parts: the model's pieces.
        cache: a prefilled `SlimCache` whose buffers have room for every step to come.
        position: the position of the first token to decode (the prompt length).
        use_graph: capture and replay CUDA graphs; False runs the same fixed-shape step
            eagerly (the CPU path, used to test the numerics).
        swapper: runs the swap rule inside the step (None: resident sets are static).
    """

    def __init__(
        self,
        parts: ModelParts,
        cache: SlimCache,
        position: int,
        use_graph: bool = True,
        swapper: GraphSwapper | None = None,
    ) -> None:
        device = cache.layers[0].keys.device
        self.parts, self.cache, self.swapper = parts, cache, swapper
        self.token = torch.zeros(1, 1, dtype=torch.long, device=device)
        self.position = torch.full((1, 1), position, dtype=torch.long, device=device)
        self.lengths = torch.tensor([layer.length + 1 for layer in cache.layers], device=device)
        self.step_cache = GraphStepCache(cache, self.lengths)
        if swapper is None:
            self.state = ForwardState(kv_valid_lengths=self.lengths)
        else:
            self.state = swapper.forward_state(self.lengths)
        edges = [0, *(swapper.segment_starts if swapper is not None else ()), parts.num_layers]
        self.segments = list(zip(edges[:-1], edges[1:], strict=True))
        self.carry: tuple[torch.Tensor, tuple[torch.Tensor, torch.Tensor]] | None = None
        self.graphs: list[torch.cuda.CUDAGraph] = []
        self.logits: torch.Tensor | None = None
        self.steps = 0
        if use_graph:
            self._capture()

    def _segment(self, start: int, end: int) -> torch.Tensor | None:
        """Layers `[start, end)` of one step on the static inputs; the last segment returns the
        logits and advances positions and lengths in place, the others leave `carry` for the next."""
        swapper = self.swapper
        if start == 0:
            if swapper is not None:
                swapper.begin_step()
            self.carry = self.parts.embed(self.token, self.position)
        hidden, rope = self.carry
        for index in range(start, end):
            if swapper is not None:
                swapper.before_layer(index)
            hidden = self.parts.run_layer(index, hidden, self.position, rope, self.step_cache, slim=self.state)
            if swapper is not None:
                swapper.after_layer(index, self.state)
        if end < self.parts.num_layers:
            self.carry = (hidden, rope)
            return None
        logits = self.parts.last_logits(hidden)
        self.position.add_(1)
        self.lengths.add_(1)
        return logits

    def _capture(self) -> None:
        saved = (self.position.clone(), self.lengths.clone())
        side = torch.cuda.Stream()
        side.wait_stream(torch.cuda.current_stream())
        frozen = self.swapper.no_swaps() if self.swapper is not None else contextlib.nullcontext()
        with torch.cuda.stream(side), frozen:
            for _ in range(WARMUP_STEPS):
                for start, end in self.segments:
                    self._segment(start, end)
        torch.cuda.current_stream().wait_stream(side)
        self._restore(*saved)
        pool = None
        for start, end in self.segments:  # one memory pool, replayed in capture order
            graph = torch.cuda.CUDAGraph()
            with torch.cuda.graph(graph, pool=pool):
                self.logits = self._segment(start, end)
            pool = graph.pool()
            self.graphs.append(graph)
        self._restore(*saved)

    def _restore(self, position: torch.Tensor, lengths: torch.Tensor) -> None:
        self.position.copy_(position)
        self.lengths.copy_(lengths)

    def step(self, token: torch.Tensor) -> torch.Tensor:
        """Decode `token` `[1, 1]`; returns float32 logits `[1, vocab]` (valid until the next step)."""
        self.token.copy_(token)
        swapper = self.swapper
        for k, (start, end) in enumerate(self.segments):
            if swapper is not None:
                swapper.before_segment(k)
            if self.graphs:
                self.graphs[k].replay()
                logits = self.logits
            else:
                logits = self._segment(start, end)
            if swapper is not None:
                swapper.after_segment(k)
        self.steps += 1
        return logits

    def finish(self) -> KVStats:
        """Tell the cache's layers how many slots the replayed steps filled and hand the
        swapper's counts to its manager. The stats returned are empty (the decoder it took
        over from reports the cache's and the manager's)."""
        for layer in self.cache.layers:
            layer.set_length(layer.length + self.steps)
        if self.swapper is not None:
            self.swapper.finish(self.steps)
        self.steps = 0
        return KVStats()
