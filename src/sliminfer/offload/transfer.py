"""`TransferEngine`: moves prompt blocks between the store and the layers' resident buffers.

It decides nothing (the manager does); it copies and records bytes and time. On CUDA every
copy runs on one side stream and ends with an event; on CPU the same code runs synchronously.

Stream invariants (kept from HF's offloading, in vLLM's block-copy form):
1. A copy never overwrites a buffer before the compute that last read it: each job first makes
   the side stream wait for an event recorded on the compute stream at submission time.
2. Compute never reads a destination before its copy landed: `wait(ticket)` makes the compute
   stream wait on the job's event (`Stream.wait_event`), never the host.
3. The host never reads the store (only the side stream does, after the end-of-prefill write
   in stream order) and never waits on a copy in flight, with one bounded exception: a layer's
   pinned index rows are rewritten only after its previous job's event, long complete by then
   (the next selection already read results computed after that job).

Coalescing: PCIe runs near line rate only for copies of >= 2 MB, and one block
of one layer is ~256 KiB (Llama-3.1-8B, 64-token blocks, bf16). A job copies each run of
consecutive block ids as ONE host-to-device copy (a block's K and V are contiguous in the store,
and so are consecutive blocks) into a device staging buffer, then scatters all of them into
their slots with one `index_copy_` per K and V. Gathering scattered blocks on the host into one
pinned buffer first would make every copy large, but a host memcpy moves only ~6.5 GB/s and
blocks the Python thread that launches the kernels (measured on the H100 machine: 30 ms per
step for 200 MB), while a run copy costs the host ~14 us (Python included) and the transfer
overlaps compute. With near-random selections runs are short (~0.35 MB per copy measured at
128k); a kernel gathering blocks straight from pinned memory (zero-copy) would remove both costs.
That holds for the eager manager's jobs; a graphed step (`graph_swap.py`) moves at most
`max_swap_blocks` blocks per layer, few enough to gather on the host while the GPU computes,
and then sends them as one staged copy per graph (`copy_staged`).
"""

from __future__ import annotations

import contextlib
import time
from dataclasses import dataclass

import torch

Event = torch.cuda.Event


@dataclass
class Ticket:
    """A submitted job (`layer` -1: a staged copy for several layers); `done` is None when it
    already finished (CPU path)."""

    layer: int
    nbytes: int
    done: Event | None


@dataclass
class TransferTotals:
    """What the engine moved and how long it took.

    Attributes:
        copied_bytes: bytes moved into resident buffers (swaps and initial fills).
        jobs: submitted jobs.
        copy_s: device time of the jobs (side-stream events; host time on CPU).
        stall_s: time the compute stream spent waiting for jobs (events around each wait on
            the compute stream; on CPU every copy is synchronous, so all copy time).
        host_s: host time spent submitting (gathering into staging, launching).
        store_write_bytes: bytes written into the store at the end of prefill.
        transfers: copies issued (one per run of consecutive blocks from a host store, one
            gather per job from a device store); `copied_bytes / transfers` is their mean size.
    """

    copied_bytes: int = 0
    jobs: int = 0
    transfers: int = 0
    copy_s: float = 0.0
    stall_s: float = 0.0
    host_s: float = 0.0
    store_write_bytes: int = 0


class TransferEngine:
    """Copies blocks `[n, 2, kv_heads, block_size, head_dim]` from a store into K/V slot buffers.

    Args:
        device: the compute device (where resident buffers live).
        store_device: where the store lives; a host store on a CUDA device is copied run by run.
        staging_blocks: layer -> the most blocks one job of that layer moves.
        block_shape: `(kv_heads, block_size, head_dim)`.
        dtype: the KV dtype.
    """

    def __init__(
        self,
        device: torch.device,
        store_device: torch.device,
        staging_blocks: dict[int, int],
        block_shape: tuple[int, int, int],
        dtype: torch.dtype,
    ) -> None:
        self.device, self.store_device = torch.device(device), torch.device(store_device)
        self.block_shape = block_shape
        self.cuda = self.device.type == "cuda"
        self.stream = torch.cuda.Stream(self.device) if self.cuda else None
        self.host_store = self.store_device != self.device
        most = max(staging_blocks.values(), default=0)
        self.device_staging = torch.empty(most, 2, *block_shape, dtype=dtype, device=self.device)
        self.device_index = torch.empty(most, 2, dtype=torch.long, device=self.device)
        # Per layer: pinned (block id, slot) rows, copied to the device with each job.
        self.host_index = {
            layer: torch.empty(n, 2, dtype=torch.long, pin_memory=self.cuda) for layer, n in staging_blocks.items()
        }
        self.host_busy: dict[int, Event] = {}
        self.copy_events: list[tuple[Event, Event]] = []
        self.stall_events: list[tuple[Event, Event]] = []
        self.totals = TransferTotals()

    @property
    def host_bytes(self) -> int:
        """Pinned host memory held for the jobs' index rows."""
        return sum(t.numel() * t.element_size() for t in self.host_index.values())

    def _side(self) -> contextlib.AbstractContextManager:
        """Run the enclosed work on the side stream, after everything already queued for compute."""
        if not self.cuda:
            return contextlib.nullcontext()
        self.stream.wait_stream(torch.cuda.current_stream(self.device))
        return torch.cuda.stream(self.stream)

    def write_store(self, store_blocks: torch.Tensor, keys: torch.Tensor, values: torch.Tensor) -> None:
        """Write a layer's prompt K/V `[1, kv_heads, n, head_dim]` into its store blocks (end of prefill).

        Runs on the side stream; `keys`/`values` may be freed by the caller right after
        (`record_stream` keeps their memory until the copy has read it).
        """
        n_blocks, _, kv_heads, block_size, head_dim = store_blocks.shape
        tokens = keys.shape[2]
        with self._side():
            padded = keys.new_zeros(2, kv_heads, n_blocks * block_size, head_dim)
            padded[0, :, :tokens] = keys[0]
            padded[1, :, :tokens] = values[0]
            by_block = padded.view(2, kv_heads, n_blocks, block_size, head_dim).permute(2, 0, 1, 3, 4)
            store_blocks.copy_(by_block.contiguous(), non_blocking=True)
        if self.cuda:
            keys.record_stream(self.stream)
            values.record_stream(self.stream)
        self.totals.store_write_bytes += store_blocks.numel() * store_blocks.element_size()

    def submit(
        self,
        layer: int,
        store_blocks: torch.Tensor,
        block_ids: list[int],
        buffers: tuple[torch.Tensor, torch.Tensor],
        slots: list[int],
        n_slots: int,
    ) -> Ticket:
        """Copy `store_blocks[block_ids]` into `slots` of `buffers` (K, V `[1, kv_heads, capacity, head_dim]`).

        Slot s holds tokens `[s * block_size, (s + 1) * block_size)` of the buffers; `n_slots`
        slots exist. Returns at once on CUDA; the caller must `wait` before reading the slots.
        """
        start_s = time.perf_counter()
        count = len(block_ids)
        host_index = self._fill_index(layer, block_ids, slots)
        blocks = _prefix(self.device_staging, count)
        runs = block_runs(block_ids) if self.host_store else []
        with self._side():  # after the end-of-prefill store write, which ran on this stream too
            copy_start = self._record()
            index = self._on_device(host_index)
            for row, first, length in runs:
                blocks[row : row + length].copy_(store_blocks[first : first + length], non_blocking=True)
            if not self.host_store:
                torch.index_select(store_blocks, 0, index[:, 0], out=blocks)
            scatter_blocks(buffers, index[:, 1], blocks, n_slots)
            done = self._record()
        nbytes = blocks.numel() * blocks.element_size()
        self.totals.copied_bytes += nbytes
        self.totals.jobs += 1
        self.totals.transfers += len(runs) or 1
        elapsed_s = time.perf_counter() - start_s
        self.totals.host_s += elapsed_s
        if self.cuda:
            self.copy_events.append((copy_start, done))
            self.host_busy[layer] = done
        else:
            self.totals.copy_s += elapsed_s
            self.totals.stall_s += elapsed_s
        return Ticket(layer, nbytes, done)

    def copy_staged(self, destination: torch.Tensor, source: torch.Tensor) -> Ticket:
        """Copy a staging buffer (pinned host) into a device one as ONE transfer, after all work
        queued for compute so far (which may still read `destination`). The caller must `wait`
        before reading `destination` and must not refill `source` before the ticket is done."""
        start_s = time.perf_counter()
        with self._side():
            copy_start = self._record()
            destination.copy_(source, non_blocking=True)
            done = self._record()
        nbytes = source.numel() * source.element_size()
        self.totals.copied_bytes += nbytes
        self.totals.jobs += 1
        self.totals.transfers += 1
        elapsed_s = time.perf_counter() - start_s
        self.totals.host_s += elapsed_s
        if self.cuda:
            self.copy_events.append((copy_start, done))
        else:
            self.totals.copy_s += elapsed_s
            self.totals.stall_s += elapsed_s
        return Ticket(-1, nbytes, done)

    def _fill_index(self, layer: int, block_ids: list[int], slots: list[int]) -> torch.Tensor:
        """The layer's `[count, 2]` host (block id, slot) rows, once its previous job has read them."""
        previous = self.host_busy.pop(layer, None)
        if previous is not None:
            previous.synchronize()  # complete in practice, see invariant 3
        index = _prefix(self.host_index[layer], len(block_ids))
        index.copy_(torch.tensor(list(zip(block_ids, slots, strict=True)), dtype=torch.long))
        return index

    def _on_device(self, host_index: torch.Tensor) -> torch.Tensor:
        """`host_index` `[count, 2]` on the compute device (on the side stream; async from pinned memory)."""
        if not self.cuda:
            return host_index
        return _prefix(self.device_index, host_index.shape[0]).copy_(host_index, non_blocking=True)

    def _record(self) -> Event | None:
        if not self.cuda:
            return None
        event = Event(enable_timing=True)
        event.record()
        return event

    def wait(self, ticket: Ticket) -> None:
        """Make the compute stream wait until `ticket`'s copy landed, timing the wait with events."""
        if ticket.done is None:
            return
        compute = torch.cuda.current_stream(self.device)
        before, after = Event(enable_timing=True), Event(enable_timing=True)
        before.record(compute)
        compute.wait_event(ticket.done)
        after.record(compute)
        self.stall_events.append((before, after))

    def finish(self) -> TransferTotals:
        """Synchronize and fold the recorded events into `totals` (call once, after decoding)."""
        if self.cuda:
            torch.cuda.synchronize(self.device)
            self.totals.copy_s += sum(a.elapsed_time(b) for a, b in self.copy_events) / 1000.0
            self.totals.stall_s += sum(a.elapsed_time(b) for a, b in self.stall_events) / 1000.0
            self.copy_events, self.stall_events = [], []
        return self.totals


def scatter_blocks(
    buffers: tuple[torch.Tensor, torch.Tensor], slots: torch.Tensor, blocks: torch.Tensor, n_slots: int
) -> None:
    """Write `blocks` `[n, 2, kv_heads, block_size, head_dim]` into `slots` `[n]` of K/V buffers.

    The buffers are `[1, kv_heads, capacity, head_dim]` with `capacity >= n_slots * block_size`;
    viewing their first `n_slots` blocks as `[kv_heads, n_slots, block_size, head_dim]` makes
    each write one `index_copy_` (no per-block launches).
    """
    block_size = blocks.shape[3]
    for which, buffer in enumerate(buffers):
        kv_heads, head_dim = buffer.shape[1], buffer.shape[3]
        slot_view = buffer[0, :, : n_slots * block_size].view(kv_heads, n_slots, block_size, head_dim)
        slot_view.index_copy_(1, slots, blocks[:, which].transpose(0, 1))


def block_runs(block_ids: list[int]) -> list[tuple[int, int, int]]:
    """`(row, first id, length)` per run of consecutive ids: row is where the run starts in `block_ids`."""
    runs: list[tuple[int, int, int]] = []
    for row, block in enumerate(block_ids):
        if runs and block == runs[-1][1] + runs[-1][2]:
            runs[-1] = (runs[-1][0], runs[-1][1], runs[-1][2] + 1)
        else:
            runs.append((row, block, 1))
    return runs


def _prefix(buffer: torch.Tensor, count: int) -> torch.Tensor:
    """The first `count` rows of `buffer`, contiguous (valid as an `out=` target)."""
    return buffer.view(-1)[: count * buffer[0].numel()].view(count, *buffer.shape[1:])
