"""`OffloadManager`: per managed layer, a resident set of prompt blocks and Algorithm 1.

The manager knows layers by index, blocks by id and K/V buffers; it imports no model code.

Layout. A managed layer's K/V buffers `[1, kv_heads, capacity, head_dim]` hold `active_blocks`
block *slots* (slot s = tokens `[s * block_size, (s + 1) * block_size)`), then the generated
tokens. The forced blocks (sink first, final window last) are placed once and never move; the
prompt's last block, the only partial one, sits in the last slot, so the resident prompt is
contiguous and generated tokens follow it directly. Attention therefore reads one contiguous
prefix of the buffers with the ordinary decode attention: no gather, no mask (one query sees
every stored key, and keys are RoPE'd at their original positions, so slot order does not
matter).

Managed layers are the slim layers minus the score layers, plus with `offload_preserve_layers`
the lagged group: the layers before the first cut's score layer, which hold all prompt blocks
in the store and start with a full resident set (see `selection.py`).

Per decode step, per group (see `selection.py`): after the score layer ran, its unit scores
give the active set A and `policy.plan_swaps` the swap (on the device; the eager manager then
reads the plan's block ids, one small device-to-host read per group). All layers of a group
hold the same resident set R, so one plan serves the group (Algorithm 1):
- the first step fills the free slots with A \\ R (the initial fill, always done and never
  capped; the lagged group has no free slots);
- afterwards, if overlap(A, R) = |A & R| / |A| < gamma, up to `max_swap_blocks` of the blocks
  A \\ R (the best ranked) are copied over as many stale blocks of R \\ A (the worst ranked;
  prompt KV is immutable: nothing is written back); the rest are deferred to later steps;
- otherwise nothing moves and the layer attends to R. That is the approximation gamma buys:
  the layer reads the |A & R| >= gamma * |A| wanted blocks that are resident, plus |R \\ A|
  blocks the current query ranks below the top, instead of the missing |A \\ R| ones. Forced
  blocks and all generated tokens are always read. gamma = 1 always reads exactly A; gamma = 0
  keeps the first step's choice for the whole generation (for the lagged group, prefill's).
A lagged layer already ran when its group's A is known, so its copy is for the next step: it
reads at step t + 1 what the score layer chose at step t, gated by gamma in the same way.

Double buffering. Copies run on the engine's side stream. The copy for managed layer i + 1 is
submitted right after layer i has been launched, so issuing it and the transfer itself overlap
layer i's compute, and compute waits on the copy's event only when layer i + 1 updates its
cache (after its QKV projection), never on the host. A lagged layer's copy waits in the same
queue until the next step launched the layer before it (layer 0's is submitted after the last
layer, so it overlaps the logits and sampling): the side stream, which runs jobs in order,
moves blocks in the order compute needs them, and a lagged copy never delays a copy needed
sooner. Stall time is measured on the device: two timing events recorded on the compute stream
around each `wait_event` (see `transfer.py`).

Decoding with a manager is eager until every slot is filled (`filled()`, after the first step);
then the CUDA-graph decoder may take over (`graph_swapper()` settles the copies and, unless
gamma = 0 freezes the sets, hands the swapping to `graph_swap.GraphSwapper`, which runs the
same rule inside the captured step).

Diagnostic: per decode step and managed layer, whether the set it read held the block its
score layer ranked highest among the unforced ones (`policy.holds_top_block`); reported as
`KVStats.top_block_hit_rate`.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Protocol

import torch

from ..config import SlimConfig
from ..errors import UserError
from ..metrics import KVStats
from ..scoring import kept_token_indices
from ..state import ForwardState
from .graph_swap import GraphSwapper
from .policy import holds_top_block, plan_swaps, swap_cap
from .selection import DecodePlan, SelectionGroup, expected_block_counts
from .store import PinnedBlockStore, block_bytes, check_host_memory
from .transfer import Ticket, TransferEngine


class ManagedLayer(Protocol):
    """What the manager needs of a cache layer (`cache.SlimLayer` provides it)."""

    keys: torch.Tensor
    values: torch.Tensor
    prompt_tokens: int
    before_update: object

    def adopt_buffers(self, key_buffer: torch.Tensor, value_buffer: torch.Tensor, resident_prompt_tokens: int) -> None: ...

    @property
    def buffers(self) -> tuple[torch.Tensor, torch.Tensor]: ...


@dataclass
class _Job:
    """Blocks to copy into slots of one layer at this step."""

    block_ids: list[int]
    slots: list[int]
    fill: bool


def uses_manager(config: SlimConfig) -> bool:
    """Whether decoding needs the manager: offloading, or a decode budget below all retained blocks."""
    return config.kv_offload == "cpu" or config.decode_budget != 1


class OffloadManager:
    """Resident sets, Algorithm 1 and stats for the managed layers of one generation.

    Use `prepare` before prefill (sizes, host memory check, allocation), `attach` after it, then
    per decode step `forward_state()` and `after_layer(i, state)` after each layer, and
    `finish()` once at the end.
    """

    def __init__(
        self,
        config: SlimConfig,
        counts: dict[int, tuple[int, int]],
        block_shape: tuple[int, int, int],
        dtype: torch.dtype,
        device: torch.device,
        reserve_tokens: int,
    ) -> None:
        self.config, self.counts, self.block_shape = config, counts, block_shape
        self.device, self.reserve_tokens = torch.device(device), reserve_tokens
        store_device = torch.device("cpu") if config.kv_offload == "cpu" else self.device
        staging = {layer: active for layer, (_, active) in counts.items()}
        if store_device.type == "cpu":
            needed = sum(retained for retained, _ in counts.values()) * block_bytes(block_shape, dtype)
            check_host_memory(needed, "the offloaded prompt KV")
        retained = {layer: retained for layer, (retained, _) in counts.items()}
        self.store = PinnedBlockStore(retained, block_shape, dtype, store_device, pin=self.device.type == "cuda")
        self.engine = TransferEngine(self.device, store_device, staging, block_shape, dtype)
        self.plan: DecodePlan | None = None
        self.num_layers = 0
        self.layers: dict[int, ManagedLayer] = {}
        self.slots: dict[int, list[int | None]] = {}
        self.queued: dict[int, _Job] = {}
        self.pending: dict[int, Ticket] = {}
        self.stats = KVStats(managed_layers=len(counts))
        self.overlap_sum = 0.0
        self.top_block_checks = self.top_block_hits = 0
        self.staging_host_bytes = 0

    @classmethod
    def prepare(
        cls,
        config: SlimConfig,
        prompt_tokens: int,
        num_layers: int,
        block_shape: tuple[int, int, int],
        dtype: torch.dtype,
        device: torch.device,
        reserve_tokens: int,
    ) -> OffloadManager:
        """Size and allocate everything for a pruned prompt of `prompt_tokens` tokens.

        Args:
            block_shape: `(kv_heads, block_size, head_dim)`.
            reserve_tokens: generated tokens each layer must have room for.

        Raises:
            HostMemoryError: `kv_offload="cpu"` and the store does not fit in host memory.
        """
        counts = expected_block_counts(config, prompt_tokens, num_layers)
        return cls(config, counts, block_shape, dtype, device, reserve_tokens)

    def attach(
        self,
        cache_layers: list[ManagedLayer],
        kept_positions: list[torch.Tensor],
        cut_scores: dict[int, torch.Tensor] | None = None,
    ) -> None:
        """After prefill (its `kept_positions` and `cut_scores`): write the store, give each
        managed layer its slot buffers, hook its updates."""
        if kept_positions[0].shape[0] != 1:
            raise UserError("decode_budget / kv_offload support batch size 1 only")
        self.plan = DecodePlan.from_prefill(kept_positions, self.config, cut_scores)
        self.num_layers = len(cache_layers)
        for group in self.plan.groups:
            for index in group.layers:
                layer = cache_layers[index]
                assert self.counts[index] == (group.retained_blocks, group.active_blocks), "prefill != schedule"
                self.engine.write_store(self.store[index], layer.keys, layer.values)
                self._adopt_slot_buffers(index, layer, group)

    def _adopt_slot_buffers(self, index: int, layer: ManagedLayer, group: SelectionGroup) -> None:
        """New buffers holding the group's initial blocks in their slots (the others wait for the fill).

        The copy is on the device (from the prefill buffers `[1, kv_heads, n, head_dim]`, which
        are then dropped): two gathers per K and V whatever the number of blocks. The capacity
        is whole blocks: the slots, room for `reserve_tokens`, and one spare block at the end
        that a fixed-shape swap writes its unused rows to (never valid, so never attended).
        """
        block_size, n_slots = self.config.block_size, group.active_blocks
        keys, values = layer.keys, layer.values
        placed = sorted(initial_slots(group.initial.tolist(), group.forced, n_slots).items())
        blocks, slots = (torch.tensor(ids, device=keys.device)[None] for ids in zip(*placed, strict=True))
        missing = group.retained_blocks * block_size - group.retained_tokens
        resident_tokens = n_slots * block_size - missing
        source = kept_token_indices(blocks, block_size, group.retained_tokens)[0]
        target = kept_token_indices(slots, block_size, resident_tokens)[0]
        capacity = (n_slots + math.ceil(self.reserve_tokens / block_size) + 1) * block_size
        buffers = [old.new_zeros(*old.shape[:2], capacity, old.shape[-1]) for old in (keys, values)]
        for new, old in zip(buffers, (keys, values), strict=True):
            new.index_copy_(2, target, old.index_select(2, source))
        layer.adopt_buffers(*buffers, resident_tokens)
        layer.before_update = lambda: self._wait(index)
        slot_blocks: list[int | None] = [None] * n_slots
        for block, slot in placed:
            slot_blocks[slot] = block
        self.layers[index], self.slots[index] = layer, slot_blocks

    def forward_state(self) -> ForwardState:
        """The `ForwardState` for one decode step (score layers record the token's unit scores)."""
        self.stats.decode_steps += 1
        return self.plan.forward_state()

    def after_layer(self, index: int, state: ForwardState) -> None:
        """Call after layer `index` was run: choose at score layers, submit the next layer's copy.

        The next layer after the last one is layer 0 of the next step (a lagged layer's copy).
        """
        groups = self.plan.groups_of_score_layer(index)
        if groups:
            unit_scores = state.unit_scores.pop(index)
            for group in groups:
                job = self._decide(group, *self.plan.choose(group, unit_scores))
                if job is not None:
                    self.queued.update({layer: job for layer in group.layers})
        following = (index + 1) % self.num_layers
        job = self.queued.pop(following, None)
        if job is not None:
            self._submit(following, job)

    def _decide(self, group: SelectionGroup, scores: torch.Tensor, active: torch.Tensor) -> _Job | None:
        """Algorithm 1 for the group's layers (one resident set): the copy to make (None: keep
        computing on the resident set). Also counts whether the set its layers read this step
        holds the top block (a lagged group reads its set before this choice lands)."""
        slots = self.slots[group.layers[0]]
        layers = len(group.layers)
        forced = group.forced.to(scores.device)
        if group.lagged:
            self._count_top_block(scores, forced, slots, layers)
        free = [slot for slot, block in enumerate(slots) if block is None]
        if free:
            resident = {block for block in slots if block is not None}
            job = _Job([block for block in active.tolist() if block not in resident], free, fill=True)
        else:
            table = torch.tensor(slots, device=scores.device)
            cap = swap_cap(self.config.max_swap_blocks, len(slots))
            plan = plan_swaps(scores, active, table, self.config.gamma, cap)
            count = int(plan.count)
            self.overlap_sum += float(plan.overlap) * layers
            self.stats.swap_decisions += layers
            job = None
            if count:
                self.stats.swaps += layers
                self.stats.deferred_blocks += (int(plan.missing) - count) * layers
                job = _Job(plan.block_ids[:count].tolist(), plan.slots[:count].tolist(), fill=False)
        if not group.lagged:
            after = list(slots)
            if job is not None:
                for slot, block in zip(job.slots, job.block_ids, strict=True):
                    after[slot] = block
            self._count_top_block(scores, forced, after, layers)
        return job

    def _count_top_block(self, scores: torch.Tensor, forced: torch.Tensor, slots: list[int | None], layers: int) -> None:
        table = torch.tensor([-1 if block is None else block for block in slots], device=scores.device)
        self.top_block_checks += layers
        self.top_block_hits += layers * int(holds_top_block(scores, forced, table))

    def _submit(self, layer: int, job: _Job) -> None:
        slots = self.slots[layer]
        assert len(job.block_ids) == len(job.slots) and len(slots) - 1 not in job.slots, "last slot is fixed"
        for slot, block in zip(job.slots, job.block_ids, strict=True):
            slots[slot] = block
        transfers = self.engine.totals.transfers
        ticket = self.engine.submit(
            layer, self.store[layer], job.block_ids, self.layers[layer].buffers, job.slots, len(slots)
        )
        self.pending[layer] = ticket
        if job.fill:
            self.stats.initial_fill_bytes += ticket.nbytes
        else:
            self.stats.copied_bytes += ticket.nbytes
            self.stats.swap_transfers += self.engine.totals.transfers - transfers

    def _wait(self, layer: int) -> None:
        """Compute waits for the layer's copy, if one is in flight (the layer's `before_update` hook)."""
        ticket = self.pending.pop(layer, None)
        if ticket is not None:
            self.engine.wait(ticket)

    def filled(self) -> bool:
        """Whether every slot holds a block (true from the end of the first step's fill)."""
        return all(None not in slots for slots in self.slots.values())

    def graph_swapper(self) -> GraphSwapper | None:
        """Hand decoding over to a fixed-shape step: submit queued copies and make compute wait
        for every copy (the graphed step calls no `before_update`), then return the swapper
        that runs Algorithm 1 inside the step, or None when the sets cannot change any more
        (gamma = 0, or every retained block is active).
        """
        for layer in sorted(self.queued):
            self._submit(layer, self.queued.pop(layer))
        for layer in list(self.pending):
            self._wait(layer)
        every_block = all(group.active_blocks == group.retained_blocks for group in self.plan.groups)
        return None if self.config.gamma == 0.0 or every_block else GraphSwapper(self)

    def resident_blocks(self, layer: int) -> list[int | None]:
        """Slot -> local block id of `layer` (None: not filled yet)."""
        return list(self.slots[layer])

    def finish(self) -> KVStats:
        """Synchronize, detach from the layers and return `KVStats` with the offload fields set.

        `gpu_prompt_kv_bytes` holds the device store (kv_offload="none"); the caller adds the
        layers' buffers.
        """
        totals = self.engine.finish()
        for layer in self.layers.values():
            layer.before_update = None
        stats = self.stats
        stats.mean_overlap = self.overlap_sum / stats.swap_decisions if stats.swap_decisions else None
        checks = self.top_block_checks
        stats.top_block_hit_rate = self.top_block_hits / checks if checks else None
        stats.copied_bytes_per_step = stats.copied_bytes / max(stats.decode_steps, 1)
        stats.copy_ms, stats.stall_ms = 1000 * totals.copy_s, 1000 * totals.stall_s
        stats.submit_host_ms = 1000 * totals.host_s
        stats.transfers = totals.transfers
        if self.config.kv_offload == "cpu":
            stats.cpu_kv_bytes = self.store.nbytes + self.engine.host_bytes + self.staging_host_bytes
        else:  # the store is a second copy of the retained prompt KV on the device
            stats.gpu_prompt_kv_bytes = self.store.nbytes
        return stats


def initial_slots(initial: list[int], forced: torch.Tensor, n_slots: int) -> dict[int, int]:
    """Slot of each block resident before the first step: forced blocks in their fixed slots,
    the others in the remaining slots in ascending order, so a full set is stored ascending.

    Args:
        initial: at most `n_slots` block ids, ascending, including every forced one.
        forced: `[n_blocks]` bool.
    """
    placed = forced_slots(forced, n_slots)
    free = iter(slot for slot in range(n_slots) if slot not in placed.values())
    return {**placed, **{block: next(free) for block in initial if block not in placed}}


def forced_slots(forced: torch.Tensor, n_slots: int) -> dict[int, int]:
    """Fixed slot of each forced block: leading ones (the sink) first, trailing ones last.

    Forced blocks are a prefix (sink) and a suffix (final window) of the retained blocks, so in
    any ascending active set they come first and last; fixing them there keeps a full fill in
    ascending block order (the layer then reads its prompt exactly as prefill stored it).

    Args:
        forced: `[n_blocks]` bool.
    """
    n_blocks = forced.numel()
    ids = forced.nonzero().flatten().tolist()
    prefix = next((i for i, block in enumerate(ids) if block != i), len(ids))
    return {block: block if block < prefix else n_slots - (n_blocks - block) for block in ids}
