"""Timing helpers: synchronized wall clocks, peak memory, warm-up, alternation, median and spread.

CUDA work is asynchronous, so a host clock read around it means nothing unless the device is
synchronized first and last; `timed` does both. Methods are alternated call by call (a, b, c,
a, b, c, ...) so slow drifts of the machine (clocks, other tenants) hit every method alike.
"""

from __future__ import annotations

import statistics
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import asdict, dataclass
from typing import TypeVar

import torch

T = TypeVar("T")


def synchronize(device: torch.device | str) -> None:
    """Wait for all queued work on `device` (a no-op on CPU, whose work is synchronous)."""
    device = torch.device(device)
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def timed(
    fn: Callable[[], T], device: torch.device | str, clock: Callable[[], float] = time.perf_counter
) -> tuple[float, T]:
    """Run `fn` once between two device synchronizations; returns (seconds, fn's result)."""
    synchronize(device)
    start = clock()
    result = fn()
    synchronize(device)
    return clock() - start, result


def reset_peak_memory(device: torch.device | str) -> None:
    """Start a new peak-memory window on CUDA (nothing to do on CPU)."""
    device = torch.device(device)
    if device.type == "cuda":
        torch.cuda.reset_peak_memory_stats(device)


def peak_memory_bytes(device: torch.device | str) -> int | None:
    """`torch.cuda.max_memory_allocated` since the last reset; None on CPU (not tracked)."""
    device = torch.device(device)
    if device.type == "cuda":
        return torch.cuda.max_memory_allocated(device)
    return None


@dataclass(frozen=True)
class Spread:
    """Median and spread of repeated measurements (quartiles by the inclusive method)."""

    median: float
    q1: float
    q3: float
    min: float
    max: float
    n: int

    def to_dict(self) -> dict[str, float | int]:
        return asdict(self)


def summarize(samples: Sequence[float]) -> Spread:
    """The `Spread` of `samples`; one sample gives a zero-width spread."""
    if not samples:
        raise ValueError("summarize needs at least one sample")
    values = sorted(samples)
    if len(values) > 1:
        q1, _, q3 = statistics.quantiles(values, n=4, method="inclusive")
    else:
        q1 = q3 = values[0]
    return Spread(statistics.median(values), q1, q3, values[0], values[-1], len(values))


def warm_up(calls: Mapping[str, Callable[[], object]], times: int) -> None:
    """Call every function `times` times, untimed: first-call costs (kernel loads, plans) go here."""
    for _ in range(times):
        for fn in calls.values():
            fn()


def alternate(
    calls: Mapping[str, Callable[[], T]],
    counts: Mapping[str, int],
    on_result: Callable[[str, T], None] | None = None,
) -> dict[str, list[T]]:
    """Call the functions in turn, round after round, until each ran `counts[name]` times.

    Round r calls, in the mapping's order, every function that still needs a result, so with
    equal counts the order is a, b, c, a, b, c, ... `on_result(name, result)` runs after each
    call (progress, partial saves). Returns name -> results in call order.
    """
    results: dict[str, list[T]] = {name: [] for name in calls}
    for round_index in range(max(counts.values(), default=0)):
        for name, fn in calls.items():
            if round_index < counts.get(name, 0):
                result = fn()
                results[name].append(result)
                if on_result is not None:
                    on_result(name, result)
    return results
