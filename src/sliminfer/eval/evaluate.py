"""`evaluate`: one call that runs a suite on a loaded model and writes results, table and plots."""

from __future__ import annotations

import os
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

from ..envinfo import environment
from ..errors import UserError
from ..loading import LoadedModel
from ..methods import Method
from . import longbench, ruler, synthetic
from .backend import ModelBackend
from .results import ResultStore
from .runner import SampleSource, plan_work, run_eval
from .summary import current_records, render_table, write_plots

SUITES = ("synthetic", "ruler", "longbench")
GENERATED_SUITES = {"synthetic": synthetic.TASKS, "ruler": ruler.TASKS}
DEFAULT_TASKS = {"synthetic": tuple(synthetic.TASKS), "ruler": ruler.DEFAULT_TASKS}
SYNTHETIC_LENGTHS = (1024, 2048, 4096, 8192)


@dataclass(frozen=True)
class EvalSpec:
    """What to run. `tasks` empty means the suite's default (all synthetic tasks, RULER's
    `ruler.DEFAULT_TASKS`, every LongBench task with a file in `data`). `chat` is the effective
    choice (see `default_chat`); results.json records it so a resumed run keeps the format."""

    suite: str
    lengths: tuple[int, ...]
    samples: int
    methods: tuple[Method, ...]
    tasks: tuple[str, ...] = ()
    seed: int = 0
    chat: bool = False
    haystack: str | None = None
    data: str | None = None
    newline_markers: bool = False
    command: list[str] = field(default_factory=list)


@dataclass(frozen=True)
class EvalOutput:
    results_path: str
    table_path: str
    table: str
    plots: list[str]


def default_chat(suite: str, loaded: LoadedModel) -> bool:
    """On for ruler when the model's tokenizer has a chat template (RULER runs chat models with
    their template); off for the other suites, whose prompts are completion style."""
    tokenizer = loaded.tokenizer
    return suite == "ruler" and tokenizer is not None and bool(tokenizer.chat_template)


def default_lengths(suite: str, max_context: int) -> tuple[int, ...]:
    """ruler: RULER's 4k-32k, those within the model's context (else the context itself);
    synthetic: 1k-8k; longbench: the model's context."""
    if suite == "ruler":
        return tuple(n for n in ruler.DEFAULT_LENGTHS if n <= max_context) or (max_context,)
    return SYNTHETIC_LENGTHS if suite == "synthetic" else (max_context,)


def resolve_tasks(spec: EvalSpec) -> tuple[str, ...]:
    """The spec's tasks, or the suite's defaults; unknown names raise `UserError`."""
    if spec.suite not in SUITES:
        raise UserError(f"--suite {spec.suite!r}: must be one of {list(SUITES)}")
    known = GENERATED_SUITES.get(spec.suite, longbench.TASKS)
    if spec.tasks:
        unknown = [t for t in spec.tasks if t not in known]
        if unknown:
            raise UserError(f"{spec.suite} task(s) {unknown}: choose from {list(known)}")
        return spec.tasks
    if spec.suite in DEFAULT_TASKS:
        return DEFAULT_TASKS[spec.suite]
    found = tuple(t for t in longbench.TASKS if os.path.exists(os.path.join(spec.data or "", f"{t}.jsonl")))
    if not found:
        raise UserError(
            f"--data {spec.data!r} holds no LongBench <task>.jsonl file: expected one of {list(known)}"
        )
    return found


def make_source(spec: EvalSpec, backend: ModelBackend) -> SampleSource:
    if spec.suite == "synthetic":
        return synthetic.SyntheticSource(backend.count_tokens, seed=spec.seed, haystack=spec.haystack)
    if spec.suite == "ruler":
        return ruler.ruler_source(backend.count_tokens, seed=spec.seed)
    if not spec.data or not os.path.isdir(spec.data):
        raise UserError(f"--data {spec.data!r}: the longbench suite needs a folder of <task>.jsonl files")
    return longbench.LongBenchSource(spec.data, backend.codec, backend.count_tokens, spec.newline_markers)


def settings(spec: EvalSpec, tasks: tuple[str, ...], model: str) -> dict[str, Any]:
    """What results.json records about the run; `results.IDENTITY_SETTINGS` must match to resume."""
    is_synthetic = spec.suite == "synthetic"
    return {
        "suite": spec.suite,
        "model": model,
        "seed": spec.seed if spec.suite in GENERATED_SUITES else None,
        "chat": spec.chat,
        "haystack": spec.haystack if is_synthetic else None,
        "data": os.path.abspath(spec.data or "") if spec.suite == "longbench" else None,
        "newline_markers": spec.newline_markers if spec.suite == "longbench" else None,
        "tasks": list(tasks),
        "lengths": list(spec.lengths),
        "samples": spec.samples,
        "methods": {m.label: m.config_dict for m in spec.methods},
        "command": spec.command,
    }


def evaluate(
    loaded: LoadedModel,
    spec: EvalSpec,
    out_dir: str,
    progress: Callable[[int], Callable[[int, str], None]] | None = None,
) -> EvalOutput:
    """Run `spec` on `loaded`, resuming from `out_dir/results.json`, and write the reports.

    Args:
        progress: called once with the total number of results; returns the `on_step`
            callback of `run_eval` (the CLI passes a tqdm bar).

    The table and plots are written even if the run is interrupted, from what is saved.
    """
    tasks = resolve_tasks(spec)
    too_long = [n for n in spec.lengths if n > loaded.max_context]
    if too_long:
        raise UserError(
            f"--lengths {too_long}: longer than the model's context of {loaded.max_context} tokens"
        )
    backend = ModelBackend(loaded, chat=spec.chat)
    source = make_source(spec, backend)
    work = plan_work(source, tasks, spec.lengths, spec.samples)
    os.makedirs(out_dir, exist_ok=True)
    store = ResultStore(out_dir, settings(spec, tasks, loaded.name), environment(loaded.device))
    store.save()  # this run's settings (its methods' configs) even if every answer is reused
    on_step = progress(len(work) * len(spec.methods)) if progress else None
    try:
        run_eval(work, spec.methods, source, backend, store, on_step)
    finally:
        title = f"sliminfer eval: {spec.suite} on {loaded.name}"
        table_path, table, plots = write_reports(out_dir, store.records, spec.methods, tasks, spec.lengths, title)
    return EvalOutput(results_path=store.path, table_path=table_path, table=table, plots=plots)


def write_reports(
    out_dir: str,
    records: list[dict[str, Any]],
    methods: Sequence[Method],
    tasks: Sequence[str],
    lengths: Sequence[int],
    title: str,
) -> tuple[str, str, list[str]]:
    """table.md and the plots of `out_dir` from the `records` of `methods` on `tasks` x `lengths`
    (other records are left out): returns the table's path, its text and the plots' paths."""
    current = [r for r in current_records(records, methods) if r["task"] in tasks and r["length"] in lengths]
    table = render_table(current, methods, tasks, lengths, title=title)
    table_path = os.path.join(out_dir, "table.md")
    with open(table_path, "w", encoding="utf-8") as handle:
        handle.write(table)
    return table_path, table, write_plots(out_dir, current, methods, tasks, lengths)
