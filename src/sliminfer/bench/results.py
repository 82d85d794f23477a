"""The bench's results file: raw samples per (length, method) cell, derived rows, table and plots.

`results.json` is the single source of truth and is rewritten after every measured call, so a
run killed at any point loses at most one call. A cell is identified by its prompt length and
method and remembers the settings it was measured with (model, device, dtype, new tokens,
seed, and the slim config for `slim`); a rerun keeps a cell's samples when the settings match
and only measures the repeats still missing, so a long matrix can be split over invocations.
Rows (medians, FLOPs, floors, speedups) are derived from the cells on every write.
"""

from __future__ import annotations

import os
from typing import Any

from .. import parallel
from ..errors import UserError
from ..methods import KINDS, kind_of
from ..metrics import sparse_prefill_note
from ..models import ModelShape
from ..report import line_plot, markdown_table, read_json, write_json
from ..schedule import UNPRUNED_NOTE
from .flops import flop_floor_s, full_prefill_flops, prefill_flops
from .harness import summarize
from .measure import Measurement

FORMAT = "sliminfer-bench/1"
GIB = 2**30
MIB = 2**20


class BenchResults:
    """The contents of `<out>/results.json` for one model, plus how to render them."""

    def __init__(self, out_dir: str, model: str, shape: ModelShape, note: str | None) -> None:
        self.out_dir = out_dir
        self.path = os.path.join(out_dir, "results.json")
        self.data: dict[str, Any] = read_json(self.path) or {
            "format": FORMAT,
            "model": model,
            "note": note,
            "model_shape": shape.to_dict(),
            "invocations": [],
            "cells": {},
        }
        if self.data.get("model") != model:
            raise UserError(
                f"--out {out_dir!r} holds results for model {self.data.get('model')!r}, not {model!r}: "
                "use another --out directory"
            )
        self.shape = shape

    def start_invocation(self, record: dict[str, Any]) -> None:
        """Record who ran what, where (command, environment, speed of light)."""
        self.data["invocations"].append(record)
        self.data["environment"] = record["environment"]
        self.data["speed_of_light"] = record["speed_of_light"]

    def samples(self, length: int, method: str, settings: dict[str, Any]) -> list[dict[str, Any]]:
        """Samples already measured for this cell with the same settings ([] if none or stale)."""
        cell = self.data["cells"].get(cell_key(length, method))
        if cell is None or cell["settings"] != settings:
            return []
        return cell["samples"]

    def add_sample(self, length: int, method: str, settings: dict[str, Any], sample: Measurement) -> None:
        """Append one sample (dropping samples taken with other settings) and save."""
        key = cell_key(length, method)
        previous = self.samples(length, method, settings)
        self.data["cells"][key] = {
            "length": length,
            "method": method,
            "settings": settings,
            "samples": [*previous, sample.to_dict()],
        }
        self.save()

    def save(self) -> None:
        """Write results.json (rank 0 only under tensor parallelism: the ranks hold the same data)."""
        self.data["rows"] = self.rows()
        if parallel.is_main():
            write_json(self.path, self.data)

    def rows(self) -> list[dict[str, Any]]:
        """One row per measured cell, lengths ascending, then methods by kind (hf, full, slim) and label."""
        cells = self.data["cells"].values()
        order = sorted(cells, key=lambda c: (c["length"], _method_rank(c["method"]), c["method"]))
        return [self._row(cell) for cell in order if cell["samples"]]

    def _row(self, cell: dict[str, Any]) -> dict[str, Any]:
        samples = cell["samples"]
        length = cell["length"]
        ttft = summarize([s["ttft_s"] for s in samples])
        e2e = summarize([s["e2e_s"] for s in samples])
        decode = summarize([s["decode_ms_per_token"] for s in samples])
        kept = samples[-1]["kept_tokens_per_layer"]
        density = samples[-1].get("attention_density_per_layer")
        flops = prefill_flops(self.shape, kept, density)
        peaks = [s["peak_memory_bytes"] for s in samples if s["peak_memory_bytes"] is not None]
        row: dict[str, Any] = {
            "length": length,
            "method": cell["method"],
            "prompt_tokens": length,
            "repeats": len(samples),
            "ttft_s": ttft.median,
            "ttft_spread": ttft.to_dict(),
            "decode_ms_per_token": decode.median,
            "decode_spread": decode.to_dict(),
            "e2e_s": e2e.median,
            "e2e_spread": e2e.to_dict(),
            "new_tokens": samples[-1]["new_tokens"],
            "kept_tokens_per_layer": kept,
            "attention_density_per_layer": density,
            "peak_memory_bytes": max(peaks) if peaks else None,
            "kv_cache_bytes": samples[-1]["kv_cache_bytes"],
            "prefill_flops": flops,
            "achieved_tflops": flops / ttft.median / 1e12,
            "flop_ideal_speedup": full_prefill_flops(self.shape, length) / flops,
            "ttft_floor_s": None,
            "ttft_over_floor": None,
            "ttft_speedup_vs_hf": None,
            "e2e_speedup_vs_hf": None,
            "note": row_note(cell["method"], kept, length, self.data["note"], density),
        }
        light = self.data.get("speed_of_light")
        if light:
            devices = (self.data.get("environment") or {}).get("tp", 1)
            row["ttft_floor_s"] = flop_floor_s(flops, devices * light["matmul_tflops"] * 1e12)
            row["ttft_over_floor"] = ttft.median / row["ttft_floor_s"]
        hf = self.data["cells"].get(cell_key(length, "hf"))
        if hf and hf["samples"]:
            row["ttft_speedup_vs_hf"] = summarize([s["ttft_s"] for s in hf["samples"]]).median / ttft.median
            row["e2e_speedup_vs_hf"] = summarize([s["e2e_s"] for s in hf["samples"]]).median / e2e.median
        return row

    def write_views(self, title: str) -> list[str]:
        """Write table.md and the TTFT / speedup PNGs (rank 0 only); returns the paths written."""
        if not parallel.is_main():
            return []
        rows = self.rows()
        table_path = os.path.join(self.out_dir, "table.md")
        with open(table_path, "w", encoding="utf-8") as handle:
            handle.write(render_table(rows, title, self.data))
        written = [table_path]
        ttft_series, speedup_series = plot_series(rows)
        palette = list(dict.fromkeys([*ttft_series, *speedup_series]))
        plots = (
            ("ttft.png", ttft_series, f"TTFT: {title}", "TTFT (s)"),
            ("speedup.png", speedup_series, f"TTFT speedup over hf: {title}", "speedup (x)"),
        )
        for name, series, plot_title, ylabel in plots:
            path = os.path.join(self.out_dir, name)
            if series and line_plot(
                path, series, title=plot_title, xlabel="prompt tokens", ylabel=ylabel, token_axis=True, palette=palette
            ):
                written.append(path)
        return written


def cell_key(length: int, method: str) -> str:
    return f"{length}/{method}"


def _method_rank(label: str) -> int:
    kinds = list(KINDS)
    kind = kind_of(label)
    return kinds.index(kind) if kind in kinds else len(kinds)


TABLE_HEADERS = (
    "method", "prompt tokens", "TTFT s (min-max)", "decode ms/tok", "e2e s", "kept tokens/layer",
    "peak GiB", "KV MiB", "prefill TFLOP", "TFLOP/s", "TTFT floor s", "TTFT/floor",
    "TTFT x hf", "FLOP-ideal x", "e2e x hf", "note",
)  # fmt: skip


def render_table(rows: list[dict[str, Any]], title: str, data: dict[str, Any]) -> str:
    """table.md: a heading with model, device and date, then one line per row."""
    env = data.get("environment") or {}
    light = data.get("speed_of_light")
    lines = [
        f"# sliminfer bench: {title}",
        f"Device: {env.get('device')}; torch {env.get('torch')}, transformers {env.get('transformers')}; "
        f"{env.get('date')}; git {env.get('git')}.",
    ]
    if light:
        lines.append(
            f"Speed of light (measured in this run): dense bf16 matmul {light['matmul_tflops']:.0f} TFLOP/s, "
            f"pinned H2D copy {light['h2d_gbps']:.1f} GB/s. TTFT floor = analytic prefill FLOPs / matmul rate."
        )
    if data.get("note"):
        lines.append(
            f"**{data['note']}**: the model has random weights; only the speed numbers mean anything."
        )
    commands = dict.fromkeys(" ".join(run["command"]) for run in data.get("invocations", []))
    lines += [f"Command: `{command}`" for command in commands]
    body = [
        [
            row["method"],
            row["prompt_tokens"],
            f"{row['ttft_s']:.3g} ({row['ttft_spread']['min']:.3g}-{row['ttft_spread']['max']:.3g})",
            row["decode_ms_per_token"],
            row["e2e_s"],
            compress_runs(row["kept_tokens_per_layer"]),
            _scaled(row["peak_memory_bytes"], GIB),
            _scaled(row["kv_cache_bytes"], MIB),
            row["prefill_flops"] / 1e12,
            row["achieved_tflops"],
            _or_dash(row["ttft_floor_s"]),
            _or_dash(row["ttft_over_floor"]),
            _or_dash(row["ttft_speedup_vs_hf"]),
            row["flop_ideal_speedup"],
            _or_dash(row["e2e_speedup_vs_hf"]),
            row["note"] or "",
        ]
        for row in rows
    ]
    return "\n\n".join(lines) + "\n\n" + markdown_table(TABLE_HEADERS, body) + "\n" + TABLE_LEGEND


TABLE_LEGEND = """\
Medians over the repeats. TTFT: time to the first new token; e2e: the whole call (prompt + all new
tokens); decode ms/tok: (e2e - TTFT) / (new tokens - 1), all three from the same call, for hf too
(one `model.generate`). x hf: hf's median over this row's, at the same length. Under tensor
parallelism (device "N x ...") the TTFT floor counts the matmul rate of all N GPUs. A "-" is a
number this run could not measure: peak GiB on CPU (no allocator statistics), TTFT floor and
TTFT/floor without the speed-of-light measurement (CUDA only), x hf without an hf row at that length.
"""


def row_note(
    method: str,
    kept_tokens_per_layer: list[int],
    length: int,
    model_note: str | None,
    attention_density: list[float] | None = None,
) -> str | None:
    """The note column: the model's note; for a slim row that pruned nothing, why (its prompt
    is below `min_prompt_tokens`), so a ~1x row is not read as slim being slow; and the
    attention density of block-sparse prefill layers (their FLOPs count only that share)."""
    notes = [model_note] if model_note else []
    if kind_of(method) == "slim" and all(k == length for k in kept_tokens_per_layer):
        notes.append(UNPRUNED_NOTE)
    sparse = sparse_prefill_note(attention_density)
    if sparse:
        notes.append(sparse)
    return "; ".join(notes) or None


def plot_series(
    rows: list[dict[str, Any]],
) -> tuple[dict[str, tuple[list[int], list[float]]], dict[str, tuple[list[int], list[float]]]]:
    """(TTFT per method, TTFT speedup over hf per method plus slim's FLOP-ideal), by prompt length."""
    ttft: dict[str, tuple[list[int], list[float]]] = {}
    speedup: dict[str, tuple[list[int], list[float]]] = {}
    for row in rows:
        _append(ttft, row["method"], row["length"], row["ttft_s"])
        if row["method"] != "hf" and row["ttft_speedup_vs_hf"] is not None:
            _append(speedup, row["method"], row["length"], row["ttft_speedup_vs_hf"])
        if kind_of(row["method"]) == "slim":
            _append(speedup, f"{row['method']} FLOP-ideal", row["length"], row["flop_ideal_speedup"])
    return ttft, speedup


def compress_runs(values: list[int]) -> str:
    """[8192]*8 + [2048]*24 -> '8192x8, 2048x24': per-layer counts, readable."""
    runs: list[list[int]] = []
    for value in values:
        if runs and runs[-1][0] == value:
            runs[-1][1] += 1
        else:
            runs.append([value, 1])
    return ", ".join(f"{value}x{count}" for value, count in runs)


def _append(series: dict[str, tuple[list[int], list[float]]], name: str, x: int, y: float) -> None:
    xs, ys = series.setdefault(name, ([], []))
    xs.append(x)
    ys.append(y)


def _scaled(value: int | None, unit: int) -> float | str:
    return "-" if value is None else value / unit


def _or_dash(value: float | None) -> float | str:
    return "-" if value is None else value
