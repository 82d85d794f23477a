"""The model thread: one worker runs generations in FIFO order from a bounded queue.

The model is not thread-safe and one generation keeps the CPU or GPU busy for seconds, so a
single thread runs them all while the event loop only admits jobs and awaits their events. A job
talks back through an `asyncio.Queue` fed with `loop.call_soon_threadsafe`: text deltas (when
streaming), then exactly one `done` (the `GenerationResult`) or `error` (the exception).

Admission is bounded: at most `max_queue` requests wait while one runs; beyond that `submit`
raises `QueueFullError` (the app answers 429 with Retry-After). Cancelling a job (its client went
away) makes a waiting job skip its turn and a running one stop at its next decode step.
"""

from __future__ import annotations

import asyncio
import logging
import math
import queue
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, NamedTuple

from ..errors import UserError
from .prometheus import ServerMetrics
from .schemas import GenerationRequest

log = logging.getLogger(__name__)

Runner = Callable[[GenerationRequest, Callable[[str], None] | None, Callable[[], bool]], Any]
"""`runner(request, on_text, should_stop) -> GenerationResult`: the one call into the model."""

TEXT, DONE, ERROR = "text", "done", "error"
DEFAULT_MAX_QUEUE = 8
"""Requests that may wait while one runs (`--max-queue`)."""
SERVICE_TIME_SMOOTHING = 0.3
"""Weight of the newest generation in the running mean used for Retry-After."""


class Event(NamedTuple):
    kind: str
    value: Any


class QueueFullError(Exception):
    def __init__(self, retry_after_s: int) -> None:
        super().__init__(f"the request queue is full; retry in {retry_after_s} s")
        self.retry_after_s = retry_after_s


@dataclass(eq=False)
class Job:
    """One admitted request; created on the event loop, run on the model thread."""

    request: GenerationRequest
    loop: asyncio.AbstractEventLoop
    events: asyncio.Queue[Event] = field(default_factory=asyncio.Queue)
    admitted_at: float = field(default_factory=time.perf_counter)
    queue_s: float = 0.0
    _cancelled: threading.Event = field(default_factory=threading.Event)

    def cancel(self) -> None:
        self._cancelled.set()

    def is_cancelled(self) -> bool:
        return self._cancelled.is_set()

    def emit(self, kind: str, value: Any) -> None:
        """Hand an event to the event loop; if the loop is gone nobody listens, so stop."""
        try:
            self.loop.call_soon_threadsafe(self.events.put_nowait, Event(kind, value))
        except RuntimeError:
            self.cancel()

    def emit_text(self, delta: str) -> None:
        self.emit(TEXT, delta)


class Engine:
    """Owns the model thread and the admission bound."""

    def __init__(self, runner: Runner, metrics: ServerMetrics, max_queue: int) -> None:
        if max_queue < 0:
            raise ValueError(f"max_queue={max_queue}: must be >= 0")
        self.max_queue = max_queue
        self._runner = runner
        self._metrics = metrics
        self._queue: queue.SimpleQueue[Job | None] = queue.SimpleQueue()
        self._lock = threading.Lock()
        self._waiting = 0
        self._running: Job | None = None
        self._stopping = False
        self._service_s = 0.0
        self._thread: threading.Thread | None = None

    @property
    def queue_depth(self) -> int:
        return self._waiting

    @property
    def busy(self) -> bool:
        return self._running is not None

    def start(self) -> None:
        self._thread = threading.Thread(target=self._work, name="sliminfer-model", daemon=True)
        self._thread.start()

    def stop(self, timeout_s: float) -> None:
        """Skip waiting jobs, stop the running one at its next step, and join the thread."""
        with self._lock:
            self._stopping = True
            if self._running is not None:
                self._running.cancel()
        self._queue.put(None)
        if self._thread is not None:
            self._thread.join(timeout_s)

    def submit(self, request: GenerationRequest) -> Job:
        """Admit a request on the event loop, or raise `QueueFullError`."""
        with self._lock:
            in_flight = self._waiting + (self._running is not None)
            if in_flight > self.max_queue:
                raise QueueFullError(self._retry_after_s())
            self._waiting += 1
            self._metrics.queue_depth.set(self._waiting)
        job = Job(request, asyncio.get_running_loop())
        self._queue.put(job)
        return job

    def _retry_after_s(self) -> int:
        """Whole seconds until a slot is likely free: one mean service time per job ahead."""
        return max(1, math.ceil(self._service_s * (self._waiting + 1)))

    def _work(self) -> None:
        while (job := self._queue.get()) is not None:
            with self._lock:
                self._waiting -= 1
                self._running = job
                self._metrics.queue_depth.set(self._waiting)
                self._metrics.running.set(1)
            job.queue_s = time.perf_counter() - job.admitted_at
            try:
                self._run(job)
            finally:
                with self._lock:
                    self._running = None
                    self._metrics.running.set(0)

    def _run(self, job: Job) -> None:
        if job.is_cancelled() or self._stopping:
            self._metrics.generations.inc(finish_reason="cancelled")
            return
        started = time.perf_counter()
        on_text = job.emit_text if job.request.stream else None
        try:
            result = self._runner(job.request, on_text, job.is_cancelled)
        except Exception as exc:  # the thread must survive anything one request does
            if not isinstance(exc, UserError):
                log.exception("generation failed")
            self._metrics.generations.inc(finish_reason="error")
            job.emit(ERROR, exc)
            return
        elapsed = time.perf_counter() - started
        self._service_s += SERVICE_TIME_SMOOTHING * (elapsed - self._service_s)
        self._metrics.observe_generation(result, job.queue_s)
        job.emit(DONE, result)


def model_runner(loaded: Any) -> Runner:
    """The production runner: `sliminfer.generate.generate` on the loaded model."""
    from ..generate import SamplingParams, generate

    def run(request: GenerationRequest, on_text: Callable[[str], None] | None, should_stop: Callable[[], bool]):
        sampling = SamplingParams(
            max_new_tokens=request.max_tokens,
            temperature=request.temperature,
            top_p=request.top_p,
            seed=request.seed,
            stop=request.stop,
        )
        return generate(
            loaded,
            request.prompt,
            method=request.method,
            config=request.config,
            sampling=sampling,
            chat=request.chat,
            on_text=on_text,
            should_stop=should_stop,
        )

    return run
