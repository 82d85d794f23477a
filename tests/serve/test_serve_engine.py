"""The model thread: FIFO order, the admission bound, cancellation of waiting and running jobs."""

from __future__ import annotations

import asyncio

import pytest
from serve_fakes import FakeRunner
from serve_fakes import generation_request as request

from sliminfer.serve.engine import DONE, Engine, QueueFullError
from sliminfer.serve.prometheus import ServerMetrics


async def wait_for(condition, timeout_s: float = 10.0) -> None:
    async def poll():
        while not condition():
            await asyncio.sleep(0.005)

    await asyncio.wait_for(poll(), timeout_s)


def run_engine(scenario, max_queue: int = 2):
    """Run `scenario(engine, runner, metrics)` on an event loop with a started engine."""
    runner, metrics = FakeRunner(), ServerMetrics()
    engine = Engine(runner, metrics, max_queue)

    async def main():
        engine.start()
        try:
            await asyncio.wait_for(scenario(engine, runner, metrics), 30)
        finally:
            runner.gate.set()
            engine.stop(timeout_s=10)

    asyncio.run(main())


def test_fifo_and_bound():
    async def scenario(engine, runner, metrics):
        runner.gate.clear()
        jobs = [engine.submit(request(f"p{i}")) for i in range(3)]  # 1 running + 2 waiting
        with pytest.raises(QueueFullError) as full:
            engine.submit(request("rejected"))
        assert full.value.retry_after_s >= 1
        runner.gate.set()
        results = [await job.events.get() for job in jobs]
        assert [event.kind for event in results] == [DONE] * 3
        assert [r.prompt for r in runner.requests] == ["p0", "p1", "p2"]
        await wait_for(lambda: not engine.busy)
        engine.submit(request("admitted again"))

    run_engine(scenario)


def test_cancelled_waiting_job_is_skipped_and_running_job_stops():
    async def scenario(engine, runner, metrics):
        runner.gate.clear()
        running = engine.submit(request("long", max_tokens=10_000))
        waiting = engine.submit(request("never"))
        await wait_for(lambda: engine.busy)
        waiting.cancel()
        running.cancel()
        runner.gate.set()
        event = await running.events.get()
        assert event.kind == DONE and event.value.finish_reason == "cancelled"
        await wait_for(lambda: metrics.generations.value(finish_reason="cancelled") == 2)
        assert [r.prompt for r in runner.requests] == ["long"]
        assert waiting.events.empty()

    run_engine(scenario)


def test_max_queue_zero_admits_one_at_a_time():
    async def scenario(engine, runner, metrics):
        runner.gate.clear()
        engine.submit(request("only"))
        with pytest.raises(QueueFullError):
            engine.submit(request("second"))

    run_engine(scenario, max_queue=0)
