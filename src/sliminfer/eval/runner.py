"""The evaluation loop: build each sample once, answer it with every method, score, save.

The loop knows samples, methods and a `Backend` that answers; it knows nothing about models,
so it is tested with fakes. Work is ordered by length, then task, then sample, and for each
sample every method runs back to back, so a partial run compares methods on the same samples.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any, Protocol

from ..methods import Method
from .results import ResultStore
from .sample import Sample, text_digest
from .scorers import score


@dataclass(frozen=True)
class Answer:
    """What a backend returns for one sample and method.

    Attributes:
        prompt: the exact text given to the model (only its digest is stored).
        prefill_fraction: tokens computed per layer during prefill, summed over layers, over
            (layers x prompt tokens): 1.0 for full, the prefill cost share for slim.
        sparse_density: the mean share of causal attention the block-sparse prefill layers
            computed (None: no layer was block-sparse).
        decode_ms_per_token: mean wall time of a decode step (None: the backend does not time it).
        top_block_hit_rate: with decode-time selection, the share of managed layer-steps whose
            active set held the block their score layer ranked highest (`KVStats`); None without.
    """

    text: str
    prompt: str
    prompt_tokens: int
    new_tokens: int
    finish_reason: str
    ttft_s: float
    prefill_fraction: float
    sparse_density: float | None = None
    decode_ms_per_token: float | None = None
    top_block_hit_rate: float | None = None


class Backend(Protocol):
    def answer(self, sample: Sample, method: Method) -> Answer: ...


class SampleSource(Protocol):
    def available(self, task: str) -> int | None: ...

    def sample(self, task: str, length: int, index: int) -> Sample: ...


WorkItem = tuple[str, int, int]  # (task, length, sample index)


def plan_work(
    source: SampleSource, tasks: Sequence[str], lengths: Sequence[int], samples: int
) -> list[WorkItem]:
    """Every (task, length, index) to run, shortest lengths first; `samples` per cell at most."""
    counts = {task: source.available(task) for task in tasks}
    return [
        (task, length, index)
        for length in lengths
        for task in tasks
        for index in range(samples if counts[task] is None else min(samples, counts[task]))
    ]


def score_answer(sample: Sample, text: str) -> float:
    """The sample's metric on the generated text (first line only where LongBench says so)."""
    prediction = text.lstrip("\n").split("\n")[0] if sample.first_line_only else text
    return score(sample.metric, prediction, sample.expected, all_classes=sample.all_classes)


def make_record(sample: Sample, method: Method, answer: Answer) -> dict[str, Any]:
    """One line of results.json."""
    return {
        "task": sample.task,
        "length": sample.length,
        "index": sample.index,
        "depth": sample.depth,
        "haystack": sample.haystack,
        "prompt_tokens": answer.prompt_tokens,
        "prompt_sha": text_digest(answer.prompt),
        "method": method.label,
        "config": method.config_dict,
        "answer": answer.text,
        "expected": list(sample.expected),
        "score": score_answer(sample, answer.text),
        "ttft_s": answer.ttft_s,
        "new_tokens": answer.new_tokens,
        "finish_reason": answer.finish_reason,
        "prefill_fraction": answer.prefill_fraction,
        "sparse_density": answer.sparse_density,
        "decode_ms_per_token": answer.decode_ms_per_token,
        "top_block_hit_rate": answer.top_block_hit_rate,
    }


def run_eval(
    work: Sequence[WorkItem],
    methods: Sequence[Method],
    source: SampleSource,
    backend: Backend,
    store: ResultStore,
    on_step: Callable[[int, str], None] | None = None,
) -> None:
    """Answer and score every missing (work item, method), saving after each one.

    `on_step(count, description)` reports progress (count results done, skipped ones included).
    """
    for task, length, index in work:
        todo = [m for m in methods if not store.has((task, length, index, m.label, m.config_key))]
        if on_step is not None and len(todo) < len(methods):
            on_step(len(methods) - len(todo), f"{task} {length}")
        if not todo:
            continue
        sample = source.sample(task, length, index)
        for method in todo:
            store.add(make_record(sample, method, backend.answer(sample, method)))
            if on_step is not None:
                on_step(1, f"{task} {length}")
