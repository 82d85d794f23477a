"""Method specs, the run loop, resuming an interrupted run, and the summary's relative scores."""

from __future__ import annotations

import json

import pytest

from sliminfer.config import SlimConfig
from sliminfer.errors import ConfigError, UserError
from sliminfer.eval.results import ResultStore
from sliminfer.eval.runner import Answer, plan_work, run_eval
from sliminfer.eval.summary import cell_scores, current_records, relative_score, render_table, write_plots
from sliminfer.eval.synthetic import SyntheticSource
from sliminfer.methods import parse_methods

BASE = SlimConfig(preserve_layers=4, keep_schedule=((4, 0.3),))
SETTINGS = {"suite": "synthetic", "model": "fake", "seed": 0, "chat": False}


def test_parse_methods_with_inline_overrides():
    methods = parse_methods("full, slim, slim[keep_schedule=8:0.25,16:0.15;preserve_layers=6]", BASE)
    assert [m.label for m in methods] == [
        "full",
        "slim",
        "slim[keep_schedule=8:0.25,16:0.15;preserve_layers=6]",
    ]
    assert methods[0].config is None and methods[1].config == BASE
    assert (
        methods[2].config.keep_schedule == ((8, 0.25), (16, 0.15)) and methods[2].config.preserve_layers == 6
    )
    assert methods[1].config_key != methods[2].config_key


@pytest.mark.parametrize(
    ("text", "error", "match"),
    [
        ("full,h2o", UserError, "expected one of"),
        ("full[window=8]", UserError, "no config overrides"),
        ("slim,slim", UserError, "more than once"),
        ("slim[nonsense=1]", ConfigError, "unknown config key"),
        ("slim[keep_schedule=2:0.5]", ConfigError, "preserve_layers"),
        (" , ", UserError, "empty"),
    ],
)
def test_parse_methods_errors(text, error, match):
    with pytest.raises(error, match=match):
        parse_methods(text, BASE)


class Interrupted(Exception):
    pass


class FakeBackend:
    """Answers with the first expected item (full) or nothing (slim); can fail after n answers."""

    def __init__(self, fail_after: int | None = None):
        self.calls = 0
        self.fail_after = fail_after

    def answer(self, sample, method):
        if self.fail_after is not None and self.calls >= self.fail_after:
            raise Interrupted()
        self.calls += 1
        text = sample.expected[0] if method.kind == "full" else "no idea"
        return Answer(text, sample.prompt, 100, 3, "stop", 0.5, 1.0 if method.kind == "full" else 0.4)


def _run(tmp_path, words, backend, samples=2):
    methods = parse_methods("full,slim", BASE)
    source = SyntheticSource(words)
    work = plan_work(source, ["passkey", "qa"], [512, 1024], samples)
    store = ResultStore(str(tmp_path), SETTINGS, {"device": "test"})
    run_eval(work, methods, source, backend, store)
    return store


def test_interrupted_run_resumes_where_it_stopped(tmp_path, words):
    with pytest.raises(Interrupted):
        _run(tmp_path, words, FakeBackend(fail_after=5))
    saved = json.loads((tmp_path / "results.json").read_text())["records"]
    assert len(saved) == 5
    resumed = FakeBackend()
    store = _run(tmp_path, words, resumed)
    assert resumed.calls == 16 - 5
    keys = [(r["task"], r["length"], r["index"], r["method"]) for r in store.records]
    assert len(keys) == len(set(keys)) == 16
    again = FakeBackend()
    _run(tmp_path, words, again, samples=3)  # extending the run only adds the new samples
    assert again.calls == 2 * 2 * 2


def test_resume_reuses_records_older_than_a_knob_but_not_a_changed_config(tmp_path, words):
    store = _run(tmp_path, words, FakeBackend(), samples=1)
    path = tmp_path / "results.json"
    saved = json.loads(path.read_text())
    for record in saved["records"]:
        if record["config"] is not None:
            del record["config"]["pin_scores"]  # as written before the knob existed
    path.write_text(json.dumps(saved))
    again = FakeBackend()
    _run(tmp_path, words, again, samples=1)
    assert again.calls == 0 and len(store.records) == 8
    for record in saved["records"]:
        if record["config"] is not None:
            record["config"]["window"] += 1  # another config: those answers run again
    path.write_text(json.dumps(saved))
    changed = FakeBackend()
    _run(tmp_path, words, changed, samples=1)
    assert changed.calls == 4


def test_records_hold_what_was_asked_and_scored(tmp_path, words):
    store = _run(tmp_path, words, FakeBackend(), samples=1)
    full = next(r for r in store.records if r["method"] == "full" and r["task"] == "passkey")
    slim = next(r for r in store.records if r["method"] == "slim" and r["task"] == "passkey")
    assert full["score"] == 1.0 and slim["score"] == 0.0
    assert full["config"] is None and slim["config"]["keep_schedule"] == [[4, 0.3]]
    assert full["depth"] == 0.1 and full["haystack"] == "noise" and len(full["prompt_sha"]) == 16
    expected_keys = {
        "task",
        "length",
        "index",
        "depth",
        "prompt_tokens",
        "method",
        "config",
        "answer",
        "expected",
        "score",
        "ttft_s",
    }
    assert expected_keys <= set(full)


def test_resuming_another_run_is_refused(tmp_path, words):
    _run(tmp_path, words, FakeBackend(), samples=1)
    with pytest.raises(UserError, match="model: 'fake' -> 'other'"):
        ResultStore(str(tmp_path), {**SETTINGS, "model": "other"}, {})


def _record(task, length, method, score, config=None):
    return {
        "task": task,
        "length": length,
        "index": 0,
        "method": method,
        "config": config,
        "score": score,
        "depth": None,
        "prompt_tokens": length,
        "prefill_fraction": 1.0,
        "ttft_s": 1.0,
    }


def test_relative_score_ignores_cells_where_full_fails():
    records = [
        _record("passkey", 1024, "full", 1.0),
        _record("passkey", 1024, "slim", 1.0),
        _record("qa", 1024, "full", 0.5),
        _record("qa", 1024, "slim", 0.25),
        _record("cwe", 1024, "full", 0.0),
        _record("cwe", 1024, "slim", 0.3),
    ]
    scores = cell_scores(records)
    cells = [(t, 1024) for t in ("passkey", "qa", "cwe")]
    assert relative_score(scores, "slim", cells) == pytest.approx(1.25 / 1.5)
    assert relative_score(scores, "slim", [("cwe", 1024)]) is None
    methods = parse_methods("full,slim", SlimConfig())
    slim_config = methods[1].config_dict
    records = [dict(r, config=slim_config) if r["method"] == "slim" else r for r in records]
    table = render_table(records, methods, ["passkey", "qa", "cwe"], [1024], title="t")
    assert "| all | 0.500 | 0.517 | 0.833 |" in table
    assert "left out of relative scores): cwe@1024" in table
    # The cost table's active-set diagnostic: the mean where records carry it, "-" where not.
    held = [dict(r, top_block_hit_rate=0.5 if r["task"] == "qa" else 1.0) if r["method"] == "slim" else r for r in records]
    table = render_table(held, methods, ["passkey", "qa", "cwe"], [1024], title="t")
    assert "| 1024 | full | 1024 | 1 | 1 | - |  |" in table
    assert "| 1024 | slim | 1024 | 1 | 1 | 0.833 |" in table


def test_current_records_drop_results_of_an_older_config():
    methods = parse_methods("slim", SlimConfig())
    old = _record("qa", 1024, "slim", 1.0, config=SlimConfig(window=16).to_dict())
    new = _record("qa", 1024, "slim", 0.0, config=SlimConfig().to_dict())
    assert current_records([old, new], methods) == [new]


def test_plots_for_a_sweep(tmp_path):
    methods = parse_methods("full,slim,slim[window=16]", SlimConfig())
    records = [
        _record("qa", n, m.label, s)
        for n in (1024, 2048)
        for m, s in zip(methods, (1.0, 1.0, 0.5), strict=True)
    ]
    written = write_plots(str(tmp_path), records, methods, ["qa"], [1024, 2048])
    assert [p.rsplit("/", 1)[1] for p in written] == ["score.png", "pareto.png", "pareto_ttft.png"]
    assert (
        len(write_plots(str(tmp_path), records, methods[:2], ["qa"], [1024, 2048])) == 1
    )  # no sweep, no pareto
