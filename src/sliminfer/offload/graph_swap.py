"""`GraphSwapper`: Algorithm 1 inside a fixed-shape decode step, so a step that swaps blocks
replays the same captured CUDA graph.

A graph fixes shapes and addresses, not values. So everything that changes from step to step
is a value in a preallocated device tensor:
- per layer group, the slot table `[n_slots]` (slot -> local block id; all layers of a group
  hold the same set) and the last plan (`policy.plan_swaps`: `[cap]` block ids and slots,
  `cap = max_swap_blocks`, unused rows aimed at the spare block at the end of each layer's
  buffers, which no step ever attends to);
- the decision itself (scores, active set, plan, new table) is computed inside the step from
  the score layer's unit scores, with no host sync;
- before a managed layer runs, the step writes the plan's blocks into its slots with one
  `index_copy_` per K and V (`transfer.scatter_blocks`).

Where the blocks come from:
- device store (`kv_offload="none"`, or CPU): the step gathers them from the store itself, so
  a group reads in the same step what its score layer chose, exactly as the eager manager.
- host store (`kv_offload="cpu"` on CUDA): the host must copy them, and it learns the plan only
  after the score layer ran. The step is captured as two graphs, split after the last score
  layer. Per step: replay graph 1 (layers up to the score layers: the plan), copy the plan's
  block ids to pinned memory, replay graph 2; while graph 2 runs, the host gathers the planned
  blocks of every managed layer from the pinned store into one pinned staging buffer
  (`[rows, cap, 2, kv_heads, block_size, head_dim]`, row = managed layer), then one copy per
  graph (the rows of the layers it runs; `cap x 256 KiB` per layer for Llama-3.1-8B, so
  megabytes) moves it to a device staging buffer on the side stream once graph 2 is done
  reading it. The next step's graphs wait for their part (timed as stall) and scatter it.
  So with a host store every group reads at step t + 1 what its score layer chose at step t
  (the lagged group of `offload_preserve_layers` already did, eagerly too).
"""

from __future__ import annotations

import contextlib
import dataclasses
import time
from collections.abc import Iterator
from typing import TYPE_CHECKING

import torch

from ..state import ForwardState
from .policy import holds_top_block, plan_swaps, resident_after, swap_cap
from .store import block_bytes
from .transfer import Event, Ticket, scatter_blocks

if TYPE_CHECKING:
    from .manager import OffloadManager
    from .selection import SelectionGroup


class GraphSwapper:
    """The device state and per-layer hooks of graphed swapping for one generation.

    Built from a settled `OffloadManager` (every slot filled, no copy in flight). The decoder
    calls `begin_step`, `before_layer(i)` / `after_layer(i, state)` around each layer inside the
    captured step, and `before_segment(k)` / `after_segment(k)` around the replay of graph k.

    Args:
        manager: the manager whose resident sets and stats this continues.
        host_copies: copy from the host store through staging (default: when the store is on
            the host and compute on an accelerator); True on CPU exercises that path in tests.
    """

    def __init__(self, manager: OffloadManager, host_copies: bool | None = None) -> None:
        self.manager, self.engine, self.store = manager, manager.engine, manager.store
        config, device = manager.config, manager.device
        self.decode_plan = manager.plan
        self.host_copies = manager.engine.host_store if host_copies is None else host_copies
        self.groups = [
            dataclasses.replace(g, candidates=g.candidates.to(device), forced=g.forced.to(device), pinned=g.pinned.to(device))
            for g in manager.plan.groups
        ]
        self.gamma = torch.tensor(config.gamma, device=device)
        self.caps = [swap_cap(config.max_swap_blocks, g.active_blocks) for g in self.groups]
        self.tables = [torch.tensor(manager.slots[g.layers[0]], device=device) for g in self.groups]
        self.spare_slot = [manager.layers[g.layers[0]].buffers[0].shape[2] // config.block_size - 1 for g in self.groups]
        cap_max = max(self.caps)
        self.plan_ids = torch.zeros(len(self.groups), cap_max, dtype=torch.long, device=device)
        self.plan_slots = [torch.full((cap,), spare, device=device) for cap, spare in zip(self.caps, self.spare_slot, strict=True)]
        # A group whose layers read the plan one step later applies a copy made at the step's start.
        self.next_step = [g.lagged or self.host_copies for g in self.groups]
        self.applied = [
            (self.plan_ids[i, :cap].clone(), slots.clone()) if later else (self.plan_ids[i, :cap], slots)
            for i, (cap, slots, later) in enumerate(zip(self.caps, self.plan_slots, self.next_step, strict=True))
        ]
        self.group_of = {layer: i for i, g in enumerate(self.groups) for layer in g.layers}
        self.rows = {layer: row for row, layer in enumerate(sorted(self.group_of))}
        # overlap x layers, swapping layers, deferred blocks x layers, layers that held the top block
        self.counters = torch.zeros(4, dtype=torch.float64, device=device)
        self.tickets: list[Ticket | None] = []
        self.in_flight: list[Ticket] = []
        self.segment_starts: tuple[int, ...] = ()
        self.segment_rows: list[tuple[int, int]] = []
        one_block = block_bytes(manager.block_shape, self.store[next(iter(self.rows))].dtype)
        self.step_bytes = one_block * sum(cap * len(g.layers) for cap, g in zip(self.caps, self.groups, strict=True))
        if self.host_copies:
            self._allocate_staging(cap_max, device)
            self.step_bytes = self.host_staging.numel() * self.host_staging.element_size()

    def _allocate_staging(self, cap_max: int, device: torch.device) -> None:
        """Pinned host and device staging, `[rows, cap_max, 2, kv_heads, block_size, head_dim]`
        (zeros: unused rows land in the spare slot, and 0 * NaN would poison attention)."""
        blocks = self.store[next(iter(self.rows))]
        shape = (len(self.rows), cap_max, *blocks.shape[1:])
        pin = self.engine.cuda
        self.host_staging = torch.zeros(shape, dtype=blocks.dtype, pin_memory=pin)
        self.device_staging = torch.zeros(shape, dtype=blocks.dtype, device=device)
        self.host_ids = torch.zeros(self.plan_ids.shape, dtype=torch.long, pin_memory=pin)
        self.ids_ready: Event | None = None
        split = max(g.score_layer for g in self.groups) + 1
        self.segment_starts = (split,)
        first_rows = sum(layer < split for layer in self.rows)
        self.segment_rows = [(0, first_rows), (first_rows, len(self.rows))]
        self.tickets = [None, None]
        self.manager.staging_host_bytes = self.host_staging.numel() * self.host_staging.element_size()

    def forward_state(self, lengths: torch.Tensor) -> ForwardState:
        """The step's state: score layers record unit scores; every layer attends to `lengths` slots."""
        state = self.decode_plan.forward_state()
        state.kv_valid_lengths = lengths
        return state

    @contextlib.contextmanager
    def no_swaps(self) -> Iterator[None]:
        """Warm-up steps (before capture) run the step's code but must not move blocks or count."""
        self.gamma.fill_(0.0)
        try:
            yield
        finally:
            self.gamma.fill_(self.manager.config.gamma)
            self.counters.zero_()

    def begin_step(self) -> None:
        """Groups that read the previous step's plan take it before this step's choice overwrites it."""
        for i, later in enumerate(self.next_step):
            if later:
                self.applied[i][0].copy_(self.plan_ids[i, : self.caps[i]])
                self.applied[i][1].copy_(self.plan_slots[i])

    def before_layer(self, index: int) -> None:
        """Write the applied plan's blocks into managed layer `index`'s slots."""
        group = self.group_of.get(index)
        if group is None:
            return
        block_ids, slots = self.applied[group]
        if self.host_copies:
            blocks = self.device_staging[self.rows[index], : self.caps[group]]
        else:
            blocks = self.store[index].index_select(0, block_ids)
        buffers = self.manager.layers[index].buffers
        scatter_blocks(buffers, slots, blocks, self.spare_slot[group] + 1)

    def after_layer(self, index: int, state: ForwardState) -> None:
        """At a score layer: choose, plan and update the tables of the groups it chooses for."""
        groups = [i for i, g in enumerate(self.groups) if g.score_layer == index]
        if not groups:
            return
        unit_scores = state.unit_scores.pop(index)
        for i in groups:
            self._decide(i, self.groups[i], unit_scores)

    def _decide(self, i: int, group: SelectionGroup, unit_scores: torch.Tensor) -> None:
        scores, active = self.decode_plan.choose(group, unit_scores)
        table, layers = self.tables[i], len(group.layers)
        plan = plan_swaps(scores, active, table, self.gamma, self.caps[i])
        after = resident_after(table, plan)
        read = table if self.next_step[i] else after
        held = holds_top_block(scores, group.forced, read)
        swapped = plan.count > 0
        deferred = torch.where(swapped, plan.missing - plan.count, 0)
        self.counters.add_(torch.stack([plan.overlap.double(), swapped.double(), deferred.double(), held.double()]) * layers)
        table.copy_(after)
        self.plan_ids[i, : self.caps[i]].copy_(plan.block_ids)
        n_slots = table.numel()
        self.plan_slots[i].copy_(torch.where(plan.slots == n_slots, self.spare_slot[i], plan.slots))

    def before_segment(self, k: int) -> None:
        """Host store: compute waits until the staged blocks graph `k` scatters have landed."""
        ticket = self.tickets[k] if self.tickets else None
        if ticket is not None:
            self.engine.wait(ticket)
            self.tickets[k] = None

    def after_segment(self, k: int) -> None:
        """Host store: after graph 1, fetch the plan; after graph 2 (queued), stage and copy it."""
        if not self.host_copies:
            return
        if k == 0:
            self.host_ids.copy_(self.plan_ids, non_blocking=True)
            if self.engine.cuda:
                self.ids_ready = Event()
                self.ids_ready.record()
            return
        self._stage()

    def _stage(self) -> None:
        """Gather every managed layer's planned blocks into the pinned staging buffer (the host
        works while graph 2 runs), then one copy per graph's rows to the device."""
        start_s = time.perf_counter()
        if self.ids_ready is not None:
            self.ids_ready.synchronize()
        for ticket in self.in_flight:
            ticket.done.synchronize()  # the previous copies out of the staging buffer, done by now
        for layer, row in self.rows.items():
            group = self.group_of[layer]
            cap = self.caps[group]
            torch.index_select(self.store[layer], 0, self.host_ids[group, :cap], out=self.host_staging[row, :cap])
        self.engine.totals.host_s += time.perf_counter() - start_s
        self.tickets = [
            self.engine.copy_staged(self.device_staging[a:b], self.host_staging[a:b]) if b > a else None
            for a, b in self.segment_rows
        ]
        self.in_flight = [t for t in self.tickets if t is not None and t.done is not None]

    def resident_blocks(self, layer: int) -> list[int]:
        """Slot -> local block id of managed `layer` between steps (a host read): the set it reads
        next when its group reads one step late, else the set it read last."""
        return self.tables[self.group_of[layer]].tolist()

    def finish(self, steps: int) -> None:
        """Add `steps` graphed steps' counts to the manager's stats and tables (syncs)."""
        manager, stats = self.manager, self.manager.stats
        overlap, swaps, deferred, held = self.counters.tolist()
        layer_steps = steps * len(self.group_of)
        stats.decode_steps += steps
        stats.swap_decisions += layer_steps
        manager.overlap_sum += overlap
        stats.swaps += round(swaps)
        stats.deferred_blocks += round(deferred)
        manager.top_block_checks += layer_steps
        manager.top_block_hits += round(held)
        stats.copied_bytes += steps * self.step_bytes
        stats.swap_transfers += steps * sum(end > start for start, end in self.segment_rows)
        for group, table in zip(self.groups, self.tables, strict=True):
            for layer in group.layers:
                manager.slots[layer] = table.tolist()
