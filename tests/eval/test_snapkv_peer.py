"""benchmarks/snapkv_peer.py export: the prompts and KV share of `sliminfer eval --suite ruler --chat`."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import pytest
from test_ruler import CACHED, write_fixture_data

from sliminfer.cli.main import main
from sliminfer.eval import ruler, ruler_data

TASKS = "niah_single_2,qa_1"
SLIM = ("--set", "min_prompt_tokens=0", "--set", "min_keep_tokens=0")  # prune the 2k prompts


@pytest.fixture
def data(tmp_path, monkeypatch):
    for cached in CACHED:
        cached.cache_clear()
    write_fixture_data(tmp_path)
    monkeypatch.setenv(ruler_data.DATA_ENV, str(tmp_path))
    yield tmp_path
    for cached in CACHED:
        cached.cache_clear()


def test_ruler_chat_export_matches_the_eval_records(data, tiny_model_dir, tmp_path, monkeypatch, load_benchmark):
    common = ["--model", str(tiny_model_dir), "--suite", "ruler", "--tasks", TASKS, "--chat"]
    sizes = ["--lengths", "2k", "--samples", "2"]
    out = tmp_path / "eval"
    methods = ["--device", "cpu", "--methods", "full,slim", "--out", str(out)]
    assert main(["eval", *common, *sizes, *methods, *SLIM]) == 0
    records = {
        (r["method"], r["task"], r["length"], r["index"]): r
        for r in json.loads((out / "results.json").read_text())["records"]
    }
    prompts = tmp_path / "prompts.jsonl"
    monkeypatch.setattr(
        sys, "argv", ["snapkv_peer.py", "export", *common, *sizes, *SLIM, "--out", str(prompts)]
    )
    load_benchmark("snapkv_peer").main()

    rows = [json.loads(line) for line in prompts.read_text().splitlines()]
    assert [(r["task"], r["index"]) for r in rows] == [(t, i) for t in TASKS.split(",") for i in (0, 1)]
    for row in rows:
        full = records[("full", row["task"], row["length"], row["index"])]
        slim = records[("slim", row["task"], row["length"], row["index"])]
        assert row["prompt_sha"] == full["prompt_sha"] == slim["prompt_sha"]
        assert row["prompt_tokens"] == full["prompt_tokens"] and row["expected"] == full["expected"]
        assert row["kv_share"] == slim["prefill_fraction"] < 1.0
        assert row["text"].startswith("<|user|>") and "<|assistant|>" in row["text"]  # the chat template
        assert row["metric"] == ruler.TASKS[row["task"]].metric
        assert Path(row["model"]) == tiny_model_dir and (tiny_model_dir / "config.json").is_file()
