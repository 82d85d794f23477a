"""benchmarks/iso_accuracy.py and the relative score's bootstrap interval it reports."""

from __future__ import annotations

import json

import pytest

from sliminfer.config import SlimConfig
from sliminfer.eval.summary import relative_interval
from sliminfer.methods import config_key
from sliminfer.models import ModelShape

SHAPE = ModelShape(hidden=64, layers=4, heads=4, kv_heads=2, head_dim=16, intermediate=128, vocab=256)
SLIM = SlimConfig(preserve_layers=2, keep_schedule=((2, 0.25),), min_prompt_tokens=0).to_dict()
SPARSE = dict(SLIM, sparse_prefill="adaptive", sparse_min_tokens=0)


def record(task, index, score, config, density=None):
    return {"task": task, "length": 4096, "index": index, "config": config, "score": score, "sparse_density": density}


def test_interval_is_a_point_when_the_method_equals_full_and_brackets_the_ratio_otherwise():
    same = {("a", 1): [(1.0, 1.0), (0.0, 0.0), (1.0, 1.0)]}
    assert relative_interval(same) == (1.0, 1.0)
    worse = {("a", 1): [(1.0, 1.0), (1.0, 0.0), (1.0, 1.0), (1.0, 1.0)], ("b", 1): [(1.0, 1.0)] * 4}
    low, high = relative_interval(worse)
    assert low < 7 / 8 < high <= 1.0
    assert relative_interval(worse) == (low, high)  # seeded: the same interval every time
    assert relative_interval({("a", 1): [(0.0, 1.0)]}) is None  # full never scores


def test_points_compare_each_config_with_full_on_shared_prompts_and_count_sparse_density(load_benchmark):
    script = load_benchmark("iso_accuracy")
    full = {("a", 4096, i): record("a", i, 1.0, None) for i in range(4)} | {("b", 4096, 0): record("b", 0, 0.5, None)}
    slim = {("a", 4096, i): record("a", i, 1.0 if i else 0.0, SLIM) for i in range(4)}  # task b not answered
    sparse = {k: record(k[0], k[2], full[k]["score"], SPARSE, density=0.25) for k in full}
    by_config = {config_key(None): full, config_key(SLIM): slim, config_key(SPARSE): sparse}
    peers = {"peer": {"sparse_prefill": "adaptive"}}
    found = {p.name: p for p in script.points(by_config, SHAPE, 4096, peers, SLIM, {config_key(SLIM): 1.5}, 1)}

    cut = found["2:0.25 by own"]
    assert (cut.relative, cut.lowest_task, cut.complete, cut.measured_speedup) == (0.75, ("a", 0.75), False, 1.5)
    assert found["peer"].peer and found["peer"].relative == 1.0 and found["peer"].complete
    assert found["full"].flop_speedup == 1.0
    # The sparse layers (before the cut) count a quarter of their attention: faster than the cut alone.
    assert found["peer"].flop_speedup > cut.flop_speedup > 1.0
    # The incomplete point is never the iso-accuracy pick, however fast; the complete sparse one is.
    assert script.iso_accuracy(list(found.values()), 0.7, "flop_speedup").name == "peer"
    assert script.iso_accuracy(list(found.values()), 1.01, "flop_speedup") is None


def test_measured_speedups_match_configs_and_skip_hf(tmp_path, load_benchmark):
    script = load_benchmark("iso_accuracy")
    cells = {f"{n}|{m}": {"length": n, "method": m, "settings": {"config": c}}
             for n in (16384, 32640) for m, c in (("hf", None), ("full", None), ("slim", SLIM))}
    rows = [{"length": n, "method": m, "ttft_speedup_vs_hf": s}
            for n, m, s in ((16384, "hf", 1.0), (16384, "full", 0.9), (16384, "slim", 1.5),
                            (32640, "hf", 1.0), (32640, "full", 0.95), (32640, "slim", 1.9))]
    path = tmp_path / "results.json"
    path.write_text(json.dumps({"cells": cells, "rows": rows}))
    assert script.measured_speedups(str(path), 32768) == {config_key(None): 0.95, config_key(SLIM): 1.9}


def test_peer_option_reads_values_as_the_config_does(load_benchmark):
    script = load_benchmark("iso_accuracy")
    assert script.parse_peer("last query=window=1;unit_size=1") == ("last query", {"window": 1, "unit_size": 1})
    with pytest.raises(Exception, match="NAME=key=value"):
        script.parse_peer("no-knobs")
