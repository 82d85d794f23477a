"""Prometheus metrics in the text exposition format (0.0.4), written by hand.

Three metric kinds cover what the server reports, so a dependency on `prometheus_client` is not
worth it. Every family is thread-safe: the event loop counts requests while the generation
thread observes timings. `ServerMetrics` names the server's families in one place.
"""

from __future__ import annotations

import math
import threading
from collections.abc import Sequence
from typing import Any

CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"

SECONDS_BUCKETS = (0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 25.0, 60.0, 120.0)
RATE_BUCKETS = (1.0, 2.0, 5.0, 10.0, 20.0, 50.0, 100.0, 200.0, 500.0, 1000.0, 2000.0, 5000.0, 10000.0)
FRACTION_BUCKETS = (0.05, 0.1, 0.15, 0.2, 0.25, 0.3, 0.4, 0.5, 0.6, 0.8, 1.0)
BYTES_BUCKETS = tuple(float(2**p) for p in range(16, 36, 2))


class _Family:
    """One metric name with a fixed tuple of label names; samples keyed by label values."""

    kind = ""

    def __init__(self, name: str, help: str, labels: Sequence[str] = ()) -> None:
        self.name = name
        self.help = help
        self.labels = tuple(labels)
        self._lock = threading.Lock()
        self._values: dict[tuple[str, ...], Any] = {}

    def _key(self, labels: dict[str, Any]) -> tuple[str, ...]:
        if set(labels) != set(self.labels):
            raise ValueError(f"{self.name}: labels {sorted(labels)} != {sorted(self.labels)}")
        return tuple(str(labels[name]) for name in self.labels)

    def _label_text(self, key: tuple[str, ...], extra: tuple[tuple[str, str], ...] = ()) -> str:
        pairs = list(zip(self.labels, key, strict=True)) + list(extra)
        if not pairs:
            return ""
        return "{" + ",".join(f'{name}="{_escape(value)}"' for name, value in pairs) + "}"

    def render(self) -> list[str]:
        lines = [f"# HELP {self.name} {_escape_help(self.help)}", f"# TYPE {self.name} {self.kind}"]
        with self._lock:
            items = sorted(self._values.items())
            for key, value in items:
                lines += self._sample_lines(key, value)
        return lines

    def _sample_lines(self, key: tuple[str, ...], value: Any) -> list[str]:
        return [f"{self.name}{self._label_text(key)} {_number(value)}"]


class Counter(_Family):
    kind = "counter"

    def inc(self, amount: float = 1.0, **labels: Any) -> None:
        if amount < 0:
            raise ValueError(f"{self.name}: counters only go up, got {amount}")
        key = self._key(labels)
        with self._lock:
            self._values[key] = self._values.get(key, 0.0) + amount

    def value(self, **labels: Any) -> float:
        with self._lock:
            return self._values.get(self._key(labels), 0.0)


class Gauge(_Family):
    kind = "gauge"

    def set(self, value: float, **labels: Any) -> None:
        key = self._key(labels)
        with self._lock:
            self._values[key] = float(value)


class Histogram(_Family):
    """Cumulative buckets plus `_sum` and `_count`, as Prometheus expects."""

    kind = "histogram"

    def __init__(self, name: str, help: str, buckets: Sequence[float], labels: Sequence[str] = ()) -> None:
        super().__init__(name, help, labels)
        self.buckets = tuple(sorted(buckets)) + (math.inf,)

    def observe(self, value: float, **labels: Any) -> None:
        key = self._key(labels)
        with self._lock:
            counts, total = self._values.get(key, ([0] * len(self.buckets), 0.0))
            for i, bound in enumerate(self.buckets):
                if value <= bound:
                    counts[i] += 1
            self._values[key] = (counts, total + value)

    def _sample_lines(self, key: tuple[str, ...], value: Any) -> list[str]:
        counts, total = value
        lines = [
            f"{self.name}_bucket{self._label_text(key, (('le', _number(bound)),))} {count}"
            for bound, count in zip(self.buckets, counts, strict=True)
        ]
        lines.append(f"{self.name}_sum{self._label_text(key)} {_number(total)}")
        lines.append(f"{self.name}_count{self._label_text(key)} {counts[-1]}")
        return lines


class ServerMetrics:
    """Every family the server exposes at /metrics."""

    def __init__(self) -> None:
        self.requests = Counter(
            "sliminfer_requests_total", "HTTP requests answered, by endpoint and status code.",
            ("endpoint", "status"),
        )
        self.generations = Counter(
            "sliminfer_generations_total",
            "Generations ended, by finish reason (stop, length, cancelled, error).", ("finish_reason",),
        )
        self.queue_depth = Gauge("sliminfer_queue_depth", "Requests admitted and waiting for the model.")
        self.running = Gauge("sliminfer_running", "Generations running now (0 or 1: one model thread).")
        self.ttft = Histogram(
            "sliminfer_time_to_first_token_seconds",
            "From admission to the first generated token, queue wait included.", SECONDS_BUCKETS, ("method",),
        )
        self.queue_wait = Histogram(
            "sliminfer_queue_wait_seconds", "Time a request waited for the model thread.", SECONDS_BUCKETS
        )
        self.prefill_rate = Histogram(
            "sliminfer_prefill_tokens_per_second", "Prompt tokens over model time to first token.",
            RATE_BUCKETS, ("method",),
        )
        self.decode_rate = Histogram(
            "sliminfer_decode_tokens_per_second", "Generated tokens per second after the first.",
            RATE_BUCKETS, ("method",),
        )
        self.prompt_tokens = Counter("sliminfer_prompt_tokens_total", "Prompt tokens processed.")
        self.completion_tokens = Counter("sliminfer_completion_tokens_total", "Tokens generated.")
        self.kept_tokens = Counter(
            "sliminfer_kept_tokens_total", "Prompt tokens kept, summed over layers and requests."
        )
        self.kept_fraction = Histogram(
            "sliminfer_kept_token_fraction",
            "Per request: prompt tokens kept summed over layers / (prompt tokens x layers).",
            FRACTION_BUCKETS, ("method",),
        )
        self.kv_bytes = Histogram(
            "sliminfer_kv_cache_bytes", "KV cache bytes held at the end of each generation.",
            BYTES_BUCKETS, ("method",),
        )
        self._families = [value for value in vars(self).values() if isinstance(value, _Family)]

    def observe_generation(self, result: Any, queue_s: float) -> None:
        """Record one finished `GenerationResult` (duck-typed) that waited `queue_s` in the queue."""
        method = result.method
        self.generations.inc(finish_reason=result.finish_reason)
        self.queue_wait.observe(queue_s)
        self.prompt_tokens.inc(result.prompt_tokens)
        self.completion_tokens.inc(result.new_tokens)
        if result.new_tokens:
            self.ttft.observe(queue_s + result.ttft_s, method=method)
            if result.ttft_s > 0:
                self.prefill_rate.observe(result.prompt_tokens / result.ttft_s, method=method)
        if result.decode_ms_per_token > 0:
            self.decode_rate.observe(1000.0 / result.decode_ms_per_token, method=method)
        kept = result.kept_tokens_per_layer
        self.kept_tokens.inc(sum(kept))
        if kept and result.prompt_tokens:
            self.kept_fraction.observe(sum(kept) / (result.prompt_tokens * len(kept)), method=method)
        self.kv_bytes.observe(result.kv_cache_bytes, method=method)

    def render(self) -> str:
        return "\n".join(line for family in self._families for line in family.render()) + "\n"


def _number(value: float) -> str:
    if math.isnan(value):
        return "NaN"
    if math.isinf(value):
        return "+Inf" if value > 0 else "-Inf"
    if float(value).is_integer():
        return str(int(value))
    return repr(float(value))


def _escape(value: str) -> str:
    return value.replace("\\", "\\\\").replace("\n", "\\n").replace('"', '\\"')


def _escape_help(text: str) -> str:
    return text.replace("\\", "\\\\").replace("\n", "\\n")
