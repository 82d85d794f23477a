"""The hand-written Prometheus exposition: syntax, cumulative buckets, escaping, server families."""

from __future__ import annotations

import math

import pytest
from serve_fakes import parse_metrics

from sliminfer.generate import GenerationResult
from sliminfer.serve.prometheus import Counter, Gauge, Histogram, ServerMetrics


def test_histogram_buckets_are_cumulative_with_sum_and_count():
    histogram = Histogram("t_seconds", "help", buckets=(0.1, 1.0), labels=("method",))
    for value in (0.05, 0.5, 0.5, 7.0):
        histogram.observe(value, method="slim")
    samples = parse_metrics("\n".join(histogram.render()))
    assert samples['t_seconds_bucket{method="slim",le="0.1"}'] == 1
    assert samples['t_seconds_bucket{method="slim",le="1"}'] == 3
    assert samples['t_seconds_bucket{method="slim",le="+Inf"}'] == 4
    assert samples['t_seconds_count{method="slim"}'] == 4
    assert math.isclose(samples['t_seconds_sum{method="slim"}'], 8.05)


def test_header_lines_and_label_escaping():
    counter = Counter("c_total", "a help\nline", labels=("path",))
    counter.inc(path='a"b\\c\nd')
    counter.inc(2, path='a"b\\c\nd')
    lines = counter.render()
    assert lines[:2] == ["# HELP c_total a help\\nline", "# TYPE c_total counter"]
    assert lines[2] == 'c_total{path="a\\"b\\\\c\\nd"} 3'


def test_counters_only_go_up_and_labels_must_match():
    counter = Counter("c_total", "h", labels=("status",))
    with pytest.raises(ValueError):
        counter.inc(-1, status="200")
    with pytest.raises(ValueError):
        counter.inc(code="200")


def test_gauge_and_special_values():
    gauge = Gauge("g", "h")
    gauge.set(float("nan"))
    assert gauge.render()[-1] == "g NaN"
    gauge.set(2.5)
    assert gauge.render()[-1] == "g 2.5"


def test_server_metrics_render_every_family_and_parse():
    metrics = ServerMetrics()
    result = GenerationResult(
        text="x", token_ids=[1, 2], prompt_tokens=100, new_tokens=2, finish_reason="length", ttft_s=0.5,
        total_s=0.6, decode_ms_per_token=100.0, method="slim", config={}, kept_tokens_per_layer=[100, 20],
        kv_cache_bytes=4096,
    )
    metrics.observe_generation(result, queue_s=0.25)
    metrics.requests.inc(endpoint="/v1/completions", status=200)
    text = metrics.render()
    samples = parse_metrics(text)
    types = {line.split()[2] for line in text.splitlines() if line.startswith("# TYPE")}
    assert {"sliminfer_requests_total", "sliminfer_queue_depth", "sliminfer_time_to_first_token_seconds",
            "sliminfer_decode_tokens_per_second", "sliminfer_kept_token_fraction", "sliminfer_kv_cache_bytes",
            "sliminfer_kept_tokens_total"} <= types
    assert samples['sliminfer_time_to_first_token_seconds_sum{method="slim"}'] == 0.75
    assert samples['sliminfer_prefill_tokens_per_second_sum{method="slim"}'] == 200
    assert samples['sliminfer_decode_tokens_per_second_sum{method="slim"}'] == 10
    assert samples['sliminfer_kept_token_fraction_sum{method="slim"}'] == 0.6
    assert samples["sliminfer_kept_tokens_total"] == 120
    assert samples['sliminfer_kv_cache_bytes_sum{method="slim"}'] == 4096
