"""`sliminfer bench` end to end on the tiny random model on CPU: outputs, resume, errors."""

from __future__ import annotations

import json

import pytest

from sliminfer.cli.main import main
from sliminfer.cli.options import parse_lengths
from sliminfer.config import SlimConfig
from sliminfer.errors import UserError
from sliminfer.methods import KINDS, parse_methods

TINY = ["--model", "tiny-llama", "--device", "cpu", "--new-tokens", "3", "--set", "min_prompt_tokens=0", "--set", "min_keep_tokens=0"]
ROW_KEYS = {
    "length", "method", "prompt_tokens", "repeats", "ttft_s", "ttft_spread", "decode_ms_per_token",
    "decode_spread", "e2e_s", "e2e_spread", "new_tokens", "kept_tokens_per_layer", "attention_density_per_layer", "peak_memory_bytes",
    "kv_cache_bytes", "prefill_flops", "achieved_tflops", "flop_ideal_speedup", "ttft_floor_s",
    "ttft_over_floor", "ttft_speedup_vs_hf", "e2e_speedup_vs_hf", "note",
}  # fmt: skip


def bench(out, *extra: str) -> int:
    return main(["bench", *TINY, "--out", str(out), *extra])


def sample_counts(out) -> dict[str, int]:
    data = json.loads((out / "results.json").read_text())
    return {key: len(cell["samples"]) for key, cell in data["cells"].items()}


def test_parse_lengths_and_methods():
    assert parse_lengths("8k, 128k,1000,8192") == [1000, 8192, 131072]
    methods = parse_methods("slim,hf,slim[window=16]", SlimConfig(), tuple(KINDS))
    assert [(m.label, m.kind) for m in methods] == [("slim", "slim"), ("hf", "hf"), ("slim[window=16]", "slim")]
    assert methods[1].config is None and methods[2].config.window == 16
    for bad in ("8x", "0", "", "1.5k"):
        with pytest.raises(UserError, match="--lengths"):
            parse_lengths(bad)
    with pytest.raises(UserError, match="--methods item 'vllm'"):
        parse_methods("hf,vllm", SlimConfig(), tuple(KINDS))
    with pytest.raises(UserError, match="'hf'"):
        parse_methods("hf", SlimConfig())  # eval and serve run sliminfer only


def test_bench_runs_slim_variants_side_by_side(tmp_path, capsys):
    out = tmp_path / "variants"
    variant = "slim[preserve_layers=2;keep_schedule=2:0.25]"
    assert bench(out, "--lengths", "192", "--repeats", "1", "--methods", f"slim,{variant}") == 0
    rows = json.loads((out / "results.json").read_text())["rows"]
    assert [r["method"] for r in rows] == ["slim", variant]
    assert rows[0]["kept_tokens_per_layer"] == [192, 128, 128, 128]
    assert rows[1]["kept_tokens_per_layer"] == [192, 192, 128, 128]
    assert f"| {variant} | 192 |" in capsys.readouterr().out


def test_bench_writes_results_table_and_plots_then_resumes(tmp_path, capsys):
    out = tmp_path / "run"
    assert bench(out, "--lengths", "192,256", "--repeats", "2") == 0
    assert "| slim | 256 |" in capsys.readouterr().out
    data = json.loads((out / "results.json").read_text())
    assert data["model"] == "tiny-llama (random weights, speed only)"
    assert data["note"] == "random weights, speed only" and data["model_shape"]["layers"] == 4
    (invocation,) = data["invocations"]
    assert invocation["command"][:4] == ["sliminfer", "bench", "--model", "tiny-llama"]
    assert invocation["speed_of_light"] is None and invocation["config"]["min_prompt_tokens"] == 0
    assert {"torch", "transformers", "device", "date"} <= set(data["environment"])
    assert [(r["length"], r["method"]) for r in data["rows"]] == [
        (n, m) for n in (192, 256) for m in ("hf", "full", "slim")
    ]
    for row in data["rows"]:
        assert set(row) == ROW_KEYS and row["repeats"] == 2 and row["new_tokens"] == 3
        assert row["note"] == "random weights, speed only" and row["ttft_speedup_vs_hf"] > 0
    for cell in data["cells"].values():  # TTFT, decode and e2e of one call, hf's too
        assert all(s["ttft_s"] <= s["e2e_s"] for s in cell["samples"])
    hf, full, slim = data["rows"][3:]
    assert hf["kept_tokens_per_layer"] == full["kept_tokens_per_layer"] == [256] * 4
    assert sum(slim["kept_tokens_per_layer"]) < sum(full["kept_tokens_per_layer"])
    assert slim["flop_ideal_speedup"] > 1.0 == full["flop_ideal_speedup"]
    assert slim["kv_cache_bytes"] < full["kv_cache_bytes"] == hf["kv_cache_bytes"]
    table = (out / "table.md").read_text()
    assert table.count("random weights, speed only |") == 6
    assert 'A "-" is a number this run could not measure: peak GiB on CPU' in table.replace("\n", " ")
    assert (out / "ttft.png").stat().st_size > 0 and (out / "speedup.png").stat().st_size > 0

    # Same command again: everything is measured already, nothing runs.
    assert bench(out, "--lengths", "192,256", "--repeats", "2") == 0
    assert len(json.loads((out / "results.json").read_text())["invocations"]) == 1
    # More repeats of one method at one length: only those cells are topped up.
    assert bench(out, "--lengths", "256", "--repeats", "3", "--methods", "slim") == 0
    counts = sample_counts(out)
    assert counts.pop("256/slim") == 3 and set(counts.values()) == {2}
    # Another slim config: the slim cells are measured afresh, the others kept.
    assert bench(out, "--lengths", "192,256", "--repeats", "2", "--set", "keep_schedule=1:0.5") == 0
    counts = sample_counts(out)
    assert counts == {f"{n}/{m}": 2 for n in (192, 256) for m in ("hf", "full", "slim")}
    assert len(json.loads((out / "results.json").read_text())["invocations"]) == 3


def test_user_errors_exit_2_with_one_line(tmp_path, capsys):
    assert bench(tmp_path / "a", "--lengths", "8k") == 2
    assert "prompt is 8192 tokens" in capsys.readouterr().err
    assert bench(tmp_path / "b", "--lengths", "2k", "--new-tokens", "1") == 2
    assert "--new-tokens 1" in capsys.readouterr().err
    (tmp_path / "c").mkdir()
    (tmp_path / "c" / "results.json").write_text(json.dumps({"model": "other", "cells": {}}))
    assert bench(tmp_path / "c", "--lengths", "64", "--repeats", "1") == 2
    assert "holds results for model 'other'" in capsys.readouterr().err
