"""The human view of results.json: table.md (task x length x method) and PNG plots.

Relative scores compare each method with `full` only on cells (task, length) where full scores
above 0, as a ratio of sums: a method that keeps full's answers scores 1.0 whatever full's
absolute level, and tasks the model cannot do at all do not dilute the comparison.
"""

from __future__ import annotations

import os
import random
from collections import defaultdict
from collections.abc import Iterable, Sequence
from statistics import mean
from typing import Any

from ..methods import Method, config_key
from ..report import line_plot, markdown_table
from ..schedule import UNPRUNED_NOTE

Cell = tuple[str, int]  # (task, length)
FULL = "full"
# (file, record field, x label): prefill token share is exact and machine-independent; TTFT is
# what a user feels, but only meaningful on a quiet machine.
PARETO_PLOTS = (
    ("pareto.png", "prefill_fraction", "prefill token share (1 = full)"),
    ("pareto_ttft.png", "ttft_s", "mean TTFT (s)"),
)


def current_records(records: Iterable[dict[str, Any]], methods: Sequence[Method]) -> list[dict[str, Any]]:
    """Records of the given methods with their current config (a resumed run may hold others)."""
    wanted = {(m.label, m.config_key) for m in methods}
    return [r for r in records if (r["method"], config_key(r["config"])) in wanted]


def cell_scores(records: Iterable[dict[str, Any]]) -> dict[str, dict[Cell, list[float]]]:
    """method -> (task, length) -> sample scores."""
    scores: dict[str, dict[Cell, list[float]]] = defaultdict(lambda: defaultdict(list))
    for record in records:
        scores[record["method"]][(record["task"], record["length"])].append(record["score"])
    return scores


def relative_score(
    scores: dict[str, dict[Cell, list[float]]], method: str, cells: Iterable[Cell]
) -> float | None:
    """Sum of `method`'s cell means over sum of full's, on cells where full > 0 (None if none)."""
    full = scores.get(FULL, {})
    used = [c for c in cells if full.get(c) and mean(full[c]) > 0 and scores[method].get(c)]
    if not used:
        return None
    return sum(mean(scores[method][c]) for c in used) / sum(mean(full[c]) for c in used)


def relative_interval(
    pairs: dict[Cell, list[tuple[float, float]]], level: float = 0.95, resamples: int = 2000, seed: int = 0
) -> tuple[float, float] | None:
    """Percentile bootstrap interval of `relative_score` from paired samples.

    `pairs` maps each cell to its prompts' (full's score, the method's score). Every resample
    draws each cell's prompts with replacement, the same prompts for both sides, and takes the
    ratio of sums of cell means: how far the ratio would move with other prompts of the same
    tasks. None if full scores 0 on every cell.
    """
    cells = [c for c, values in pairs.items() if values and mean(f for f, _ in values) > 0]
    if not cells:
        return None
    rng = random.Random(seed)
    ratios = []
    for _ in range(resamples):
        full_sum = method_sum = 0.0
        for cell in cells:
            drawn = rng.choices(pairs[cell], k=len(pairs[cell]))
            full_sum += mean(f for f, _ in drawn)
            method_sum += mean(m for _, m in drawn)
        if full_sum > 0:
            ratios.append(method_sum / full_sum)
    ratios.sort()
    tail = (1 - level) / 2
    return ratios[int(tail * (len(ratios) - 1))], ratios[int((1 - tail) * (len(ratios) - 1))]


def render_table(
    records: Sequence[dict[str, Any]],
    methods: Sequence[Method],
    tasks: Sequence[str],
    lengths: Sequence[int],
    title: str,
) -> str:
    """The markdown report: per-cell scores, averages per length, pass key by depth, cost."""
    scores = cell_scores(records)
    labels = [m.label for m in methods]
    others = [label for label in labels if label != FULL] if FULL in labels else []
    headers = [*labels, *(f"{label}/full" for label in others)]
    text = f"# {title}\n\nScores in [0, 1], mean over samples (n per cell in brackets).\n\n## By task and length\n\n"
    rows = []
    for task in tasks:
        for length in lengths:
            cell = (task, length)
            means = [_mean_n(scores[label].get(cell)) for label in labels]
            rows.append(
                [task, length, *means, *(_or_dash(relative_score(scores, o, [cell])) for o in others)]
            )
    text += markdown_table(["task", "length", *headers], rows)
    text += "\n## Average over tasks (relative: only cells where full > 0)\n\n"
    rows = []
    for group, group_lengths in [*((str(n), [n]) for n in lengths), ("all", list(lengths))]:
        cells = [(t, n) for t in tasks for n in group_lengths]
        means = [_or_dash(_mean_of_cells(scores[label], cells)) for label in labels]
        rows.append([group, *means, *(_or_dash(relative_score(scores, o, cells)) for o in others)])
    text += markdown_table(["length", *headers], rows)
    failed = [
        f"{t}@{n}"
        for t in tasks
        for n in lengths
        if scores[FULL].get((t, n)) and mean(scores[FULL][(t, n)]) == 0
    ]
    if FULL in labels:
        text += f"\nCells where full scores 0 (left out of relative scores): {', '.join(failed) or 'none'}.\n"
    text += _depth_table(records, labels)
    text += _cost_table(records, labels, lengths)
    return text


def _depth_table(records: Sequence[dict[str, Any]], labels: Sequence[str]) -> str:
    by_depth: dict[tuple[int, float], dict[str, list[float]]] = defaultdict(lambda: defaultdict(list))
    for r in records:
        if r["task"] == "passkey" and r["depth"] is not None:
            by_depth[(r["length"], r["depth"])][r["method"]].append(r["score"])
    if not by_depth:
        return ""
    rows = [
        [length, depth, *(_mean_n(by_depth[(length, depth)].get(label)) for label in labels)]
        for length, depth in sorted(by_depth)
    ]
    return "\n## Pass key by needle depth\n\n" + markdown_table(["length", "depth", *labels], rows)


def is_unpruned_slim(group: Sequence[dict[str, Any]]) -> bool:
    """Slim records that computed every token: their prompts were below `min_prompt_tokens`."""
    return all(r["config"] is not None and r["prefill_fraction"] == 1.0 for r in group)


def _cost_table(records: Sequence[dict[str, Any]], labels: Sequence[str], lengths: Sequence[int]) -> str:
    rows = []
    for length in lengths:
        for label in labels:
            group = [r for r in records if r["length"] == length and r["method"] == label]
            if group:
                hits = [r["top_block_hit_rate"] for r in group if r.get("top_block_hit_rate") is not None]
                rows.append(
                    [
                        length,
                        label,
                        round(mean(r["prompt_tokens"] for r in group)),
                        mean(r["prefill_fraction"] for r in group),
                        mean(r["ttft_s"] for r in group),
                        mean(hits) if hits else "-",
                        UNPRUNED_NOTE if is_unpruned_slim(group) else "",
                    ]
                )
    # "top block held": with decode-time selection, the share of layer-steps whose active set
    # held the block their score layer ranked highest (records before this field show "-").
    header = ["length", "method", "prompt tokens", "prefill token share", "TTFT s", "top block held", "note"]
    return "\n## Cost (TTFT is wall time on the machine that ran it; see environment)\n\n" + markdown_table(
        header, rows
    )


def write_plots(
    out_dir: str,
    records: Sequence[dict[str, Any]],
    methods: Sequence[Method],
    tasks: Sequence[str],
    lengths: Sequence[int],
) -> list[str]:
    """score.png (average score vs length per method) and, for sweeps, the `PARETO_PLOTS`."""
    scores = cell_scores(records)
    labels = [m.label for m in methods]
    series = {}
    for label in labels:
        points = [(n, _mean_of_cells(scores[label], [(t, n) for t in tasks])) for n in lengths]
        points = [(n, value) for n, value in points if value is not None]
        if points:
            series[label] = ([n for n, _ in points], [value for _, value in points])
    written = []
    path = os.path.join(out_dir, "score.png")
    if series and line_plot(
        path, series, title="Average score over tasks", xlabel="length (tokens)", ylabel="score", token_axis=True,
        palette=labels,
    ):
        written.append(path)
    others = [label for label in labels if label != FULL]
    if FULL in labels and len(others) >= 2:
        cells = [(t, n) for t in tasks for n in lengths]
        for name, field, xlabel in PARETO_PLOTS:
            path = os.path.join(out_dir, name)
            if _pareto_plot(path, records, scores, others, cells, field, xlabel, palette=labels):
                written.append(path)
    return written


def _pareto_plot(
    path: str,
    records: Sequence[dict[str, Any]],
    scores: dict[str, dict[Cell, list[float]]],
    labels: Sequence[str],
    cells: Sequence[Cell],
    field: str,
    xlabel: str,
    palette: Sequence[str],
) -> bool:
    """One point per method: mean `field` (a cost) against the score relative to full."""
    points = {}
    for label in labels:
        costs = [r[field] for r in records if r["method"] == label]
        relative = relative_score(scores, label, cells)
        if costs and relative is not None:
            points[label] = ([mean(costs)], [relative])
    if not points:
        return False
    marked = {"default (slim)": (points["slim"][0][0], points["slim"][1][0])} if "slim" in points else {}
    full_costs = [r[field] for r in records if r["method"] == FULL]
    if full_costs:
        marked["full (reference)"] = (mean(full_costs), 1.0)
    title = "Accuracy vs cost (star: the default config, plus: full)"
    return line_plot(
        path, points, title=title, xlabel=xlabel, ylabel="score relative to full", palette=palette, marked=marked
    )


def _mean_of_cells(cells_scores: dict[Cell, list[float]], cells: Sequence[Cell]) -> float | None:
    values = [mean(cells_scores[c]) for c in cells if cells_scores.get(c)]
    return mean(values) if values else None


def _mean_n(values: list[float] | None) -> str:
    return f"{mean(values):.3f} ({len(values)})" if values else "—"


def _or_dash(value: float | None) -> str:
    return "—" if value is None else f"{value:.3f}"
