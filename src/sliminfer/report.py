"""Machine-readable and human views of a run: JSON, markdown tables, PNG line plots.

Shared by `bench` and `eval` so every result file has the same shape.
"""

from __future__ import annotations

import json
import logging
import os
from collections.abc import Sequence
from typing import Any

logger = logging.getLogger(__name__)


def write_json(path: str, data: Any) -> None:
    """Write `data` as indented JSON atomically (a partial file never replaces a good one)."""
    tmp = f"{path}.tmp"
    with open(tmp, "w", encoding="utf-8") as handle:
        json.dump(data, handle, indent=2, default=str)
        handle.write("\n")
    os.replace(tmp, path)


def read_json(path: str, default: Any = None) -> Any:
    """Read JSON written by `write_json`, or `default` if the file does not exist."""
    if not os.path.exists(path):
        return default
    with open(path, encoding="utf-8") as handle:
        return json.load(handle)


def markdown_table(headers: Sequence[str], rows: Sequence[Sequence[Any]]) -> str:
    """A GitHub markdown table; floats are shown with 3 significant decimals."""

    def cell(value: Any) -> str:
        if isinstance(value, float):
            return f"{value:.3g}" if abs(value) < 1000 else f"{value:,.0f}"
        return str(value)

    lines = ["| " + " | ".join(headers) + " |", "|" + "---|" * len(headers)]
    lines += ["| " + " | ".join(cell(v) for v in row) + " |" for row in rows]
    return "\n".join(lines) + "\n"


def line_plot(
    path: str,
    series: dict[str, tuple[Sequence[float], Sequence[float]]],
    *,
    title: str,
    xlabel: str,
    ylabel: str,
    token_axis: bool = False,
    palette: Sequence[str] | None = None,
    marked: dict[str, tuple[float, float]] | None = None,
) -> bool:
    """Save a PNG with one line per series; returns False if matplotlib is not installed.

    Args:
        series: name -> (xs, ys).
        token_axis: x is a token count: a log2 axis with a tick at each x, labelled 1k, 2k, ...
        palette: every name a set of plots may show, in a fixed order: a series' colour is its
            place here, so plots given the same palette draw each method in the same colour
            (default: the order of `series`).
        marked: name -> (x, y) points drawn as stars (e.g. the default config on a Pareto plot).
    """
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        logger.warning("matplotlib is not installed: %s not written (pip install -e \".[plot]\")", os.path.basename(path))
        return False
    fig, ax = plt.subplots(figsize=(10, 4.5))
    colors = plt.get_cmap("tab20").colors
    order = list(dict.fromkeys([*(palette or ()), *series]))
    for name, (xs, ys) in series.items():
        index = order.index(name)
        # 20 colours x 4 markers: every series stays distinguishable in a long sweep.
        style = dict(color=colors[index % len(colors)], marker="osD^"[index // len(colors) % 4])
        ax.plot(list(xs), list(ys), label=name, **style)
    for index, (name, (x, y)) in enumerate((marked or {}).items()):
        ax.plot([x], [y], marker="*P"[index % 2], markersize=16, color="black", alpha=0.6, linestyle="none", label=name)
    if token_axis:
        ticks = sorted({x for xs, _ in series.values() for x in xs})
        ax.set_xscale("log", base=2)
        ax.set_xticks(ticks, [token_count_label(x) for x in ticks])
        ax.minorticks_off()
    ax.set_title(title)
    ax.set_xlabel(xlabel)
    ax.set_ylabel(ylabel)
    ax.grid(True, alpha=0.3)
    ax.legend(loc="upper left", bbox_to_anchor=(1.02, 1.0), fontsize="small")
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)
    return True


def token_count_label(tokens: float) -> str:
    """1024 -> '1k', 131072 -> '128k', 1536 -> '1.5k', 1000 -> '1000' (k = 1024, as `--lengths`)."""
    if tokens >= 1024 and (tokens * 2) % 1024 == 0:
        return f"{tokens / 1024:g}k"
    return f"{tokens:g}"
