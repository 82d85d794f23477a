"""`sliminfer eval` end to end on a tiny random Llama with a byte-level tokenizer (seconds)."""

from __future__ import annotations

import json

import pytest

from sliminfer.cli.main import main


def _eval(tiny_model_dir, out, *extra):
    return main(["eval", "--model", str(tiny_model_dir), "--device", "cpu", "--out", str(out), *extra])


def test_synthetic_run_writes_results_table_and_plot_then_resumes(tiny_model_dir, tmp_path, capsys):
    args = [
        "--tasks",
        "passkey",
        "--lengths",
        "1k",
        "--samples",
        "2",
        "--methods",
        "full,slim[keep_schedule=1:0.1]",
        "--set",
        "min_prompt_tokens=0",
        "--set",
        "min_keep_tokens=0",
    ]
    assert _eval(tiny_model_dir, tmp_path, *args) == 0
    out = capsys.readouterr().out
    assert "| passkey | 1024 |" in out and "slim[keep_schedule=1:0.1]/full" in out
    data = json.loads((tmp_path / "results.json").read_text())
    assert len(data["records"]) == 4
    assert data["settings"]["methods"]["slim[keep_schedule=1:0.1]"]["min_prompt_tokens"] == 0
    slim = [r for r in data["records"] if r["method"] != "full"]
    assert all(r["prefill_fraction"] < 1.0 and r["prompt_tokens"] <= 1024 - 16 for r in slim)
    assert (tmp_path / "table.md").exists() and (tmp_path / "score.png").exists()
    assert _eval(tiny_model_dir, tmp_path, *args) == 0
    assert json.loads((tmp_path / "results.json").read_text())["records"] == data["records"]


def test_longbench_run_on_fixtures_in_chat_style(tiny_model_dir, fixtures_dir, tmp_path):
    args = [
        "--suite",
        "longbench",
        "--data",
        str(fixtures_dir),
        "--tasks",
        "hotpotqa,trec",
        "--lengths",
        "1k",
        "--samples",
        "5",
        "--methods",
        "full",
        "--chat",
    ]
    assert _eval(tiny_model_dir, tmp_path, *args) == 0
    records = json.loads((tmp_path / "results.json").read_text())["records"]
    assert [(r["task"], r["index"]) for r in records] == [("hotpotqa", 0), ("hotpotqa", 1), ("trec", 0)]


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--tasks", "needle"], "synthetic task(s) ['needle']"),
        (["--lengths", "64k"], "longer than the model's context"),
        (["--suite", "longbench"], "--data None"),
        (["--suite", "bogus"], "--suite 'bogus'"),
        (["--suite", "ruler", "--tasks", "niah"], "ruler task(s) ['niah']"),
        (["--methods", "slim[window=0]"], "window=0"),
        (["--samples", "0"], "--samples 0"),
    ],
)
def test_bad_input_exits_2_with_one_line(tiny_model_dir, tmp_path, capsys, args, message):
    assert _eval(tiny_model_dir, tmp_path, *args) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert message in err[-1] and err[-1].startswith("sliminfer eval: error:")
