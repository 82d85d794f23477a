"""A per-layer, variable-length KV cache that is a transformers `Cache`.

After a slim prefill, layer i holds K/V only for the tokens layer i computed (each at its
original RoPE position, already applied), then every generated token. Like HF's
`DynamicSlidingWindowLayer`, a layer stores fewer tokens than it reports:
`get_seq_length()` is the *logical* length (prompt tokens seen + generated), which keeps HF's
default position ids and `generate()`'s input slicing correct, while `get_mask_sizes()`
reports what is stored.

Storage is preallocated for the prompt plus `reserve_tokens` generated tokens and written in
place, so a decode step costs no copy of the cache (HF's `DynamicLayer` concatenates, copying
the whole layer every step).
"""

from __future__ import annotations

from collections.abc import Callable

import torch
from transformers.cache_utils import Cache, DynamicLayer

GROWTH_TOKENS = 256


class SlimLayer(DynamicLayer):
    """One layer's KV: `[batch, kv_heads, capacity, head_dim]` buffers, the first `length` valid.

    Attributes:
        length: tokens stored (computed prompt tokens + generated tokens).
        prompt_tokens: prompt tokens this layer computed and stored.
        pruned_tokens: prompt tokens this layer never saw (dropped before it).
        offloaded_tokens: computed prompt tokens not in this layer's buffers (kept in the
            offload manager's store; the buffers then start with the resident blocks).
        before_update: called at the start of every `update`; the offload manager uses it to
            make compute wait for the copies into this layer's buffers.
    """

    def __init__(self, reserve_tokens: int = 0) -> None:
        super().__init__()
        self.reserve_tokens = reserve_tokens
        self.length = 0
        self.prompt_tokens = 0
        self.pruned_tokens = 0
        self.offloaded_tokens = 0
        self.before_update: Callable[[], None] | None = None
        self._key_buffer: torch.Tensor | None = None
        self._value_buffer: torch.Tensor | None = None

    def lazy_initialization(self, key_states: torch.Tensor, value_states: torch.Tensor) -> None:
        self.dtype, self.device = key_states.dtype, key_states.device
        self.is_initialized = True

    def update(
        self, key_states: torch.Tensor, value_states: torch.Tensor, *args, **kwargs
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """Append `[batch, kv_heads, new, head_dim]` K/V; return views of everything stored."""
        if not self.is_initialized:
            self.lazy_initialization(key_states, value_states)
        if self.before_update is not None:
            self.before_update()
        new = key_states.shape[-2]
        self._ensure_capacity(self.length + new, key_states, value_states)
        self._key_buffer[:, :, self.length : self.length + new] = key_states
        self._value_buffer[:, :, self.length : self.length + new] = value_states
        self.set_length(self.length + new)
        return self.keys, self.values

    def _ensure_capacity(self, needed: int, key_states: torch.Tensor, value_states: torch.Tensor) -> None:
        capacity = 0 if self._key_buffer is None else self._key_buffer.shape[-2]
        if needed <= capacity:
            return
        extra = self.reserve_tokens if capacity == 0 else max(self.reserve_tokens, GROWTH_TOKENS)
        # Zeros, not empty: the CUDA-graph decoder reads whole buffers (masked), and 0 * NaN is NaN.
        new_keys = key_states.new_zeros(*key_states.shape[:2], needed + extra, key_states.shape[-1])
        new_values = value_states.new_zeros(*value_states.shape[:2], needed + extra, value_states.shape[-1])
        if capacity:
            new_keys[:, :, : self.length] = self.keys
            new_values[:, :, : self.length] = self.values
        self._key_buffer, self._value_buffer = new_keys, new_values

    @property
    def buffers(self) -> tuple[torch.Tensor, torch.Tensor]:
        """The whole preallocated K/V buffers `[batch, kv_heads, capacity, head_dim]`."""
        return self._key_buffer, self._value_buffer

    def set_length(self, length: int) -> None:
        """Declare the first `length` slots valid (also after a writer used `buffers` directly)."""
        self.length = length
        self.keys = self._key_buffer[:, :, :length]
        self.values = self._value_buffer[:, :, :length]

    def end_prefill(self, prompt_length: int) -> None:
        """Record that the prompt had `prompt_length` tokens, of which this layer stored `length`."""
        self.prompt_tokens = self.length
        self.pruned_tokens = prompt_length - self.length

    def adopt_buffers(self, key_buffer: torch.Tensor, value_buffer: torch.Tensor, resident_prompt_tokens: int) -> None:
        """Keep only `resident_prompt_tokens` prompt tokens, in new `[batch, kv_heads, capacity, head_dim]` buffers.

        Called once by the offload manager after prefill, before any generated token: the
        buffers start with the resident prompt blocks, generated tokens follow them. The
        logical length (`get_seq_length`) does not change.
        """
        if self.length != self.prompt_tokens:
            raise RuntimeError("adopt_buffers: only a freshly prefilled layer can change its buffers")
        self._key_buffer, self._value_buffer = key_buffer, value_buffer
        self.offloaded_tokens = self.prompt_tokens - resident_prompt_tokens
        self.set_length(resident_prompt_tokens)

    @property
    def resident_prompt_tokens(self) -> int:
        """Prompt tokens held in this layer's buffers."""
        return self.prompt_tokens - self.offloaded_tokens

    def get_seq_length(self) -> int:
        return self.length + self.pruned_tokens + self.offloaded_tokens

    def get_mask_sizes(self, query_length: int) -> tuple[int, int]:
        return self.length + query_length, 0

    def crop(self, tokens_to_remove: int) -> None:
        if tokens_to_remove > 0:
            raise ValueError(f"crop({tokens_to_remove}): pass a negative count of tokens to remove")
        if tokens_to_remove and self.is_initialized:
            self.set_length(self.length + tokens_to_remove)

    def reset(self) -> None:
        super().reset()
        self.length = self.prompt_tokens = self.pruned_tokens = self.offloaded_tokens = 0
        self.before_update = None
        self._key_buffer = self._value_buffer = None

    def batch_repeat_interleave(self, repeats: int) -> None:
        raise NotImplementedError("SlimLayer does not support beam search or batch expansion")

    def batch_select_indices(self, indices: torch.Tensor) -> None:
        raise NotImplementedError("SlimLayer does not support beam search or batch selection")

    def stored_bytes(self) -> int:
        """Bytes of valid K and V (not counting spare capacity)."""
        return self.length * self.token_bytes()

    def token_bytes(self) -> int:
        """Bytes of one token's K and V in this layer (0 before the first update)."""
        if self._key_buffer is None:
            return 0
        return 2 * self._key_buffer[:, :, :1].numel() * self._key_buffer.element_size()


class SlimCache(Cache):
    """One `SlimLayer` per decoder layer.

    Args:
        num_layers: decoder layers of the model.
        reserve_tokens: generated tokens to preallocate room for in every layer.
    """

    def __init__(self, num_layers: int, reserve_tokens: int = 0) -> None:
        super().__init__(layers=[SlimLayer(reserve_tokens) for _ in range(num_layers)])

    def end_prefill(self, prompt_length: int) -> None:
        """Mark every layer's stored tokens so far as its share of a `prompt_length` prompt."""
        for layer in self.layers:
            layer.end_prefill(prompt_length)

    def kept_tokens_per_layer(self) -> list[int]:
        """Prompt tokens each layer computed and stores."""
        return [layer.prompt_tokens for layer in self.layers]

    def kv_bytes(self) -> int:
        """Bytes of valid K/V over all layers."""
        return sum(layer.stored_bytes() for layer in self.layers)

    def prompt_kv_bytes(self) -> int:
        """Bytes of the prompt K/V held in the layers' buffers (resident, not offloaded)."""
        return sum(layer.resident_prompt_tokens * layer.token_bytes() for layer in self.layers)
