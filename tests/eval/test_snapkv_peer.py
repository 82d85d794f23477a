"""benchmarks/snapkv_peer.py export: the prompts and KV share of `sliminfer eval --suite ruler --chat`."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import pytest
import torch
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


@pytest.mark.parametrize(
    ("flags", "expected"),
    [((), ("cpu", "float32")), (("--device", "cuda:1", "--dtype", "bfloat16"), ("cuda:1", "bfloat16"))],
)
def test_answer_loads_the_model_on_the_device_and_dtype_given(
    flags, expected, tmp_path, monkeypatch, load_benchmark
):
    peer = load_benchmark("snapkv_peer")
    prompts, out = tmp_path / "prompts.jsonl", tmp_path / "answers.jsonl"
    prompts.write_text(
        json.dumps(dict(task="vt", length=2048, index=0, model="folder", kv_share=0.25)) + "\n"
    )
    loads = []
    monkeypatch.setattr(peer, "load_peer", lambda *args: loads.append(args) or (None, None))
    monkeypatch.setattr(
        peer,
        "snapkv_answer",
        lambda model, tokenizer, row, ratio: dict(row, kv_kept=1 - ratio, seconds=0, answer=""),
    )
    monkeypatch.setattr(
        sys, "argv", ["snapkv_peer.py", "answer", "--prompts", str(prompts), "--out", str(out), *flags]
    )
    peer.main()
    assert loads == [("folder", *expected)]
    assert json.loads(out.read_text())["kv_kept"] == 0.25


def test_load_peer_gives_the_model_in_the_dtype(tiny_model_dir, load_benchmark):
    _, model = load_benchmark("snapkv_peer").load_peer(str(tiny_model_dir), "cpu", "bfloat16")
    assert model.dtype == torch.bfloat16 and model.device.type == "cpu" and not model.training
