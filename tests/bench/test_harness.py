"""Timing helpers with fake clocks and fake methods: alternation order, spread, warm-up."""

from __future__ import annotations

import itertools

import pytest

from sliminfer.bench.harness import alternate, summarize, timed, warm_up


def test_alternate_interleaves_methods_round_by_round():
    log: list[str] = []
    calls = {name: (lambda name=name: log.append(name) or len(log)) for name in ("hf", "full", "slim")}
    seen: list[tuple[str, int]] = []
    results = alternate(calls, {"hf": 2, "full": 2, "slim": 2}, on_result=lambda n, r: seen.append((n, r)))
    assert log == ["hf", "full", "slim", "hf", "full", "slim"]
    assert results == {"hf": [1, 4], "full": [2, 5], "slim": [3, 6]}
    assert seen == list(zip(log, range(1, 7), strict=True))


def test_alternate_tops_up_unequal_counts_and_skips_zero():
    log: list[str] = []
    calls = {name: (lambda name=name: log.append(name)) for name in ("hf", "full", "slim")}
    results = alternate(calls, {"hf": 1, "full": 0, "slim": 3})
    assert log == ["hf", "slim", "slim", "slim"]
    assert [len(results[n]) for n in ("hf", "full", "slim")] == [1, 0, 3]


def test_warm_up_calls_each_function_the_given_times():
    log: list[str] = []
    warm_up({"a": lambda: log.append("a"), "b": lambda: log.append("b")}, times=2)
    assert log == ["a", "b", "a", "b"]


def test_timed_reads_the_clock_around_the_call():
    ticks = itertools.count(start=10.0, step=2.5)
    seconds, result = timed(lambda: "done", "cpu", clock=lambda: next(ticks))
    assert (seconds, result) == (2.5, "done")


def test_summarize_median_quartiles_and_range():
    spread = summarize([5.0, 1.0, 3.0, 2.0, 4.0])
    assert (spread.median, spread.q1, spread.q3, spread.min, spread.max, spread.n) == (
        3.0,
        2.0,
        4.0,
        1.0,
        5.0,
        5,
    )
    single = summarize([7.0])
    assert (single.median, single.q1, single.q3, single.min, single.max) == (7.0,) * 5
    with pytest.raises(ValueError):
        summarize([])


def test_unpruned_slim_rows_say_why():
    from sliminfer.bench.results import row_note

    assert row_note("slim", [1024] * 4, 1024, None) == "unpruned (< min_prompt_tokens)"
    assert row_note("slim", [1024, 256, 256, 256], 1024, None) is None
    assert row_note("hf", [1024] * 4, 1024, "random weights") == "random weights"
    assert row_note("slim", [1024] * 4, 1024, "random weights") == "random weights; unpruned (< min_prompt_tokens)"
