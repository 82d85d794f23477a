"""benchmarks/eval_parallel.py: seeding method folders from earlier runs, and the merge."""

from __future__ import annotations

import json
from pathlib import Path

from sliminfer.config import SlimConfig

SLIM = SlimConfig(preserve_layers=2, keep_schedule=((2, 0.5),)).to_dict()
SETTINGS = {"suite": "synthetic", "model": "m", "seed": 0, "chat": False, "haystack": "noise", "data": None,
            "newline_markers": None, "tasks": ["passkey"], "lengths": [1024], "samples": 2}


def record(method, index, score, config):
    return {"task": "passkey", "length": 1024, "index": index, "depth": 0.5, "haystack": "noise", "prompt_tokens": 1000,
            "prompt_sha": f"{index:016x}", "method": method, "config": config, "answer": "a", "expected": ["a"],
            "score": score, "ttft_s": 0.1, "new_tokens": 1, "finish_reason": "stop", "prefill_fraction": 1.0 if config is None else 0.6}


def run_file(path, records, methods):
    commands = {label: ["sliminfer", "eval"] for label in methods}
    path.write_text(json.dumps({"settings": dict(SETTINGS, methods=methods, method_commands=commands, command=[]),
                                "environment": {"device": "test"}, "records": records}))
    return str(path)


def test_seeding_takes_each_key_once_first_file_first_and_the_merge_keeps_current_configs(tmp_path, load_benchmark):
    script = load_benchmark("eval_parallel")
    stale = dict(SLIM, window=SLIM["window"] + 1)
    first = run_file(tmp_path / "a.json", [record("full", 0, 1.0, None), record("slim", 0, 0.0, SLIM)], {"full": None, "slim": SLIM})
    second = run_file(
        tmp_path / "b.json",
        [record("full", 0, 0.5, None), record("full", 1, 1.0, None), record("slim", 1, 1.0, stale)],
        {"full": None, "slim": stale},
    )
    out = tmp_path / "out"
    script.seed_from([first, second], ["full", "slim", "slim[window=8]"], str(out))
    full = json.loads(Path(script.method_folder(str(out), "full"), "results.json").read_text())
    assert sorted((r["index"], r["score"]) for r in full["records"]) == [(0, 1.0), (1, 1.0)]  # a.json's index 0
    assert not Path(script.method_folder(str(out), "slim[window=8]")).exists()  # no records of that label

    slim_path = Path(script.method_folder(str(out), "slim"), "results.json")
    seeded = json.loads(slim_path.read_text())
    assert len(seeded["records"]) == 2 and seeded["settings"]["methods"] == {"slim": SLIM}
    script.seed_from([second], ["slim"], str(out))  # a folder with results is left alone
    assert json.loads(slim_path.read_text()) == seeded

    script.merge(str(out), ["test"])
    merged = json.loads((out / "results.json").read_text())["records"]
    assert sorted((r["method"], r["index"]) for r in merged) == [("full", 0), ("full", 1), ("slim", 0)]  # stale slim gone
