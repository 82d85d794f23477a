"""`sliminfer bench`: the (prompt length x method) matrix, alternated, resumable, with speed of light.

For each length with work left: one text-like prompt, an untimed warm-up of every pending
method with exactly the measured call, then the methods alternate call by call until each
cell has its repeats. The warm-up must generate all `--new-tokens`: HF's cache grows by
concatenation, so the first `generate` at a new length pays a fresh allocation per decode step
(several times its steady decode time), which a 2-token warm-up does not hide. Every call is
saved to results.json at once (see `results.py`), and table.md and the plots are rewritten
after each length.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any, Protocol

from ..config import SlimConfig
from ..envinfo import environment
from ..errors import PromptTooLongError, UserError
from ..loading import LoadedModel, load_model
from ..methods import Method
from ..models import ModelShape
from .harness import alternate, warm_up
from .measure import Measurement, method_call
from .prompts import TextPrompts
from .random_models import RANDOM_WEIGHTS_NOTE, build_random_model, is_random_architecture
from .results import BenchResults
from .speed_of_light import speed_of_light

logger = logging.getLogger(__name__)

PROCESS_WARMUP_TOKENS = 2048
PROCESS_WARMUP_NEW_TOKENS = 2
"""Once per process, every method first runs on a prompt this short (or the shortest length):
CUDA context, kernel loading and library handles are paid there, not in a measured cell."""


class Progress(Protocol):
    """The part of a tqdm bar the runner uses."""

    def update(self, n: int = 1) -> Any: ...
    def set_description(self, desc: str) -> Any: ...
    def close(self) -> Any: ...


@dataclass
class BenchSpec:
    """What to measure (the CLI's flags after parsing; `methods` from `sliminfer.methods.parse_methods`)."""

    lengths: list[int]
    methods: list[Method]
    new_tokens: int = 128
    repeats: int = 5
    warmup: int = 1
    seed: int = 0


def load_bench_model(source: str, device: str, dtype: str) -> LoadedModel:
    """A random-weight public architecture by name, else `loading.load_model(source)`."""
    if is_random_architecture(source):
        return build_random_model(source, device=device, dtype=dtype)
    return load_model(source, device=device, dtype=dtype)


def check_lengths(lengths: Sequence[int], loaded: LoadedModel, new_tokens: int) -> None:
    """Raise `PromptTooLongError` unless every prompt plus `new_tokens` fits the model."""
    positions = loaded.model.config.max_position_embeddings
    for length in lengths:
        if length > positions or length + new_tokens > loaded.max_context:
            raise PromptTooLongError(
                length,
                min(positions, loaded.max_context - new_tokens),
                detail=f"(with room for --new-tokens {new_tokens}): choose shorter --lengths",
            )


def run_bench(
    loaded: LoadedModel,
    config: SlimConfig,
    spec: BenchSpec,
    out_dir: str,
    *,
    command: list[str],
    progress: Callable[[int], Progress] | None = None,
) -> BenchResults:
    """Measure every (length, method) cell still missing in `out_dir`; returns the results.

    Args:
        config: the base SlimConfig: `full` runs with it, each `slim[...]` method carries its own.
        command: the command line, recorded in results.json.
        progress: given the number of calls to make, returns a progress bar.
    """
    check_spec(spec, loaded)
    for slim_config in [config, *(m.config for m in spec.methods if m.config is not None)]:
        slim_config.check_model(loaded.model.config.num_hidden_layers)
    shape = ModelShape.from_hf_config(loaded.model.config)
    results = BenchResults(
        out_dir, loaded.name, shape, RANDOM_WEIGHTS_NOTE if loaded.tokenizer is None else None
    )
    env = environment(loaded.device)
    title = f"{loaded.name} on {env['device']}"
    settings = {m.label: cell_settings(loaded, env, spec, m.config) for m in spec.methods}
    pending = pending_calls(results, spec, settings)
    if not pending:
        logger.info("every cell is already measured in %s", results.path)
        results.save()
        results.write_views(title)
        return results
    light = speed_of_light(loaded.device)
    spec_record = {**vars(spec), "methods": [m.label for m in spec.methods]}
    run = {"command": command, "environment": env, "speed_of_light": light, "spec": spec_record}
    results.start_invocation({**run, "config": config.to_dict()})
    prompts = TextPrompts(loaded.tokenizer, vocab_size=shape.vocab, seed=spec.seed)
    bar = progress(sum(sum(todo.values()) for todo in pending.values())) if progress else None
    try:
        methods = {m for todo in pending.values() for m in todo}
        warm_ids = prompts.ids(min(PROCESS_WARMUP_TOKENS, min(pending)))
        _warm_up(loaded, warm_ids, config, spec.methods, methods, PROCESS_WARMUP_NEW_TOKENS, 1)
        for length, todo in pending.items():
            if bar is not None:
                bar.set_description(f"{length} tokens")
            ids = prompts.ids(length)
            _warm_up(loaded, ids, config, spec.methods, set(todo), spec.new_tokens, spec.warmup)
            calls = {
                m.label: method_call(m, loaded, ids, spec.new_tokens, config) for m in spec.methods if m.label in todo
            }

            def save(method: str, sample: Measurement, length: int = length) -> None:
                results.add_sample(length, method, settings[method], sample)
                if bar is not None:
                    bar.update(1)

            alternate(calls, todo, on_result=save)
            results.write_views(title)
    finally:
        if bar is not None:
            bar.close()
    return results


def check_spec(spec: BenchSpec, loaded: LoadedModel) -> None:
    """Raise `UserError` for counts out of range or prompts that do not fit the model."""
    if spec.new_tokens < 2:
        raise UserError(f"--new-tokens {spec.new_tokens}: must be >= 2 to time decoding")
    if spec.repeats < 1 or spec.warmup < 0:
        raise UserError(f"--repeats {spec.repeats} / --warmup {spec.warmup}: need repeats >= 1, warmup >= 0")
    check_lengths(spec.lengths, loaded, spec.new_tokens)


def pending_calls(
    results: BenchResults, spec: BenchSpec, settings: dict[str, dict[str, Any]]
) -> dict[int, dict[str, int]]:
    """length -> method -> repeats still missing, for the cells that miss any."""
    pending = {}
    for length in spec.lengths:
        todo = {m.label: spec.repeats - len(results.samples(length, m.label, settings[m.label])) for m in spec.methods}
        todo = {m: count for m, count in todo.items() if count > 0}
        if todo:
            pending[length] = todo
    return pending


def cell_settings(
    loaded: LoadedModel, env: dict[str, Any], spec: BenchSpec, config: SlimConfig | None
) -> dict[str, Any]:
    """What a cell's samples depend on; samples taken under other settings are not reused."""
    return {
        "model": loaded.name,
        "device": env["device"],
        "dtype": str(loaded.model.dtype).removeprefix("torch."),
        "new_tokens": spec.new_tokens,
        "seed": spec.seed,
        "config": config.to_dict() if config is not None else None,
    }


def _warm_up(
    loaded: LoadedModel,
    ids: list[int],
    config: SlimConfig,
    methods: list[Method],
    labels: set[str],
    new_tokens: int,
    times: int,
) -> None:
    """Untimed calls of the methods named in `labels`, each exactly the call to be measured."""
    calls = {m.label: method_call(m, loaded, ids, new_tokens, config) for m in methods if m.label in labels}
    warm_up(calls, times)
