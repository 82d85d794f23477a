"""What one generation measured beside its timings: `KVStats`, where its KV cache lived and
what moving it cost (part of `--json`), and what sparse prefill did (`sparse_prefill_density`,
`sparse_prefill_note`)."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import asdict, dataclass
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from .config import SlimConfig


def sparse_prefill_density(per_layer: Sequence[float] | None) -> tuple[float, int] | None:
    """`(mean share, layers)` over the block-sparse prefill layers of a per-layer attention
    density (`GenerationResult.attention_density_per_layer`); None when no layer was sparse."""
    sparse = [share for share in per_layer or () if share < 1.0]
    return (sum(sparse) / len(sparse), len(sparse)) if sparse else None


def sparse_prefill_note(per_layer: Sequence[float] | None, config: SlimConfig | None = None) -> str | None:
    """A result's note on sparse prefill: the mean density and layer count where some layer was
    block-sparse; where `config` asked for it and no layer was, that it was not
    applied and why, so a user who turned it on does not read a dense run as a sparse one; else
    None."""
    sparse = sparse_prefill_density(per_layer)
    if sparse:
        return f"sparse prefill: attention density {sparse[0]:.3f} in {sparse[1]} layers"
    if config is not None and config.sparse_prefill != "off":
        return (
            f"sparse prefill ({config.sparse_prefill}) not applied: no layer of sparse_layers={config.sparse_layers} "
            f"computed >= sparse_min_tokens={config.sparse_min_tokens} tokens"
        )
    return None


@dataclass
class KVStats:
    """KV memory and offload traffic of one generation; the offload fields stay 0 without a manager.

    The copy fields report the transfer engine's running totals (`offload.transfer.TransferTotals`,
    seconds while decoding) once, at the end, in the ms this report uses.

    Attributes:
        gpu_prompt_kv_bytes: prompt K/V held on the compute device at the end (score layers
            and unmanaged preserve layers in full, managed layers only their resident blocks).
        gpu_generated_kv_bytes: K/V of the generated tokens (always on the device).
        full_prompt_kv_bytes: what the prompt K/V of an unpruned model takes (every layer, every token).
        cpu_kv_bytes: host memory held for the offloaded prompt K/V (store and pinned staging).
        managed_layers: layers attending to a per-step active set of blocks (slim layers but
            the score layers, plus the preserve layers with `offload_preserve_layers`).
        decode_steps: decode steps run with the manager.
        swaps: layer-steps where overlap < gamma triggered a swap.
        deferred_blocks: wanted blocks a swap left out because of `max_swap_blocks` (summed over
            layer-steps; they come in later if still wanted).
        swap_decisions: layer-steps where the swap rule was evaluated (after the initial fill).
        mean_overlap: mean |new & resident| / |new| over those decisions (None if none).
        top_block_hit_rate: share of managed layer-steps whose resident set held the block their
            score layer ranked highest among the unforced ones (None without selection steps).
        graphed_steps: decode steps replayed as CUDA graphs (or their fixed-shape step on CPU).
        initial_fill_bytes: bytes copied to fill the resident sets at the first decode step.
        copied_bytes: bytes copied by swaps after the initial fill (a graphed step moves all
            `max_swap_blocks` rows of every managed layer, used or not: its shapes are fixed).
        copied_bytes_per_step: `copied_bytes / decode_steps`.
        transfers: copies issued for fills and swaps (runs of consecutive blocks are one copy;
            a graphed step with `kv_offload="cpu"` makes one or two staged copies).
        swap_transfers: copies issued for swaps after the initial fill (`copied_bytes /
            swap_transfers` is their mean size; 0 when the store is on the device).
        copy_ms: device time of all copies (side-stream events; host time on CPU).
        stall_ms: time compute waited for copies (events around the compute stream's waits;
            on CPU copies are synchronous, so all of `copy_ms`).
        submit_host_ms: host time spent preparing copies (host-side gathers, launches).
    """

    gpu_prompt_kv_bytes: int = 0
    gpu_generated_kv_bytes: int = 0
    full_prompt_kv_bytes: int = 0
    cpu_kv_bytes: int = 0
    managed_layers: int = 0
    decode_steps: int = 0
    swaps: int = 0
    deferred_blocks: int = 0
    swap_decisions: int = 0
    mean_overlap: float | None = None
    top_block_hit_rate: float | None = None
    graphed_steps: int = 0
    initial_fill_bytes: int = 0
    copied_bytes: int = 0
    copied_bytes_per_step: float = 0.0
    transfers: int = 0
    swap_transfers: int = 0
    copy_ms: float = 0.0
    stall_ms: float = 0.0
    submit_host_ms: float = 0.0

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)
