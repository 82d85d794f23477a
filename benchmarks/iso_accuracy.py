"""Iso-accuracy speedup on a real model: every config it was evaluated with, score against cost.

Reads merged `results.json` files of `sliminfer eval` runs on one model and one suite (same
prompts: suite, seed and samples), gathers each distinct config's records (the `full` records
are the reference), and gives each config one point:
- its score relative to full over the prompts both answered (ratio of sums of cell means over
  cells where full scores above 0, as every eval table), a 95% paired bootstrap interval of it
  (prompts resampled within each cell), and its lowest task;
- its FLOP-ideal TTFT speedup at the reference length: full's prefill FLOPs over the config's
  `LayerPlan` FLOPs, the block-sparse layers counted at the mean density its records measured at
  that length;
- with `--ttft`, the TTFT speedup over plain HF that `sliminfer bench` measured for the same
  config (matched by config, the length nearest the reference).
The iso-accuracy speedup is the largest speedup among the points scoring at least `--floor` of
full that answered every task full answered (a point from a run with fewer tasks is listed, and
drawn hollow, but not compared). `--peer NAME=key=value;...` names the points whose config has
those values (peer selections expressed as configs) and draws them apart on the plot.

    python3 benchmarks/iso_accuracy.py --model Q.gguf --results a/results.json b/results.json \
        --ttft bench/results.json --peer "FastKV-style=window=8;unit_size=1" --out DIR

writes DIR/iso.md (the table) and DIR/iso.png (score against FLOP-ideal speedup).
"""

from __future__ import annotations

import argparse
import json
import os
from collections import defaultdict
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from statistics import mean
from typing import Any

from sliminfer.calibration.search import flop_fraction
from sliminfer.config import SlimConfig
from sliminfer.eval.summary import FULL, cell_scores, relative_interval, relative_score
from sliminfer.methods import config_key
from sliminfer.models import ModelShape
from sliminfer.report import markdown_table, read_json

Record = dict[str, Any]
PromptKey = tuple[str, int, int]  # (task, length, index)


@dataclass(frozen=True)
class Point:
    """One config's place on the plot (`complete`: it answered every task full answered)."""

    name: str
    peer: bool
    config: dict[str, Any] | None
    samples: int
    complete: bool
    relative: float
    interval: tuple[float, float] | None
    lowest_task: tuple[str, float]
    flop_speedup: float
    measured_speedup: float | None = None


def records_by_config(paths: Iterable[str]) -> dict[str, dict[PromptKey, Record]]:
    """config key -> prompt -> record, over all files (the first file holding a prompt wins)."""
    by_config: dict[str, dict[PromptKey, Record]] = defaultdict(dict)
    for path in paths:
        for record in read_json(path)["records"]:
            prompt = (record["task"], record["length"], record["index"])
            by_config[config_key(record["config"])].setdefault(prompt, record)
    return by_config


def relative_to_full(
    full: dict[PromptKey, Record], mine: dict[PromptKey, Record]
) -> tuple[float, tuple[float, float] | None, tuple[str, float]] | None:
    """(score relative to full, its 95% bootstrap interval, (lowest task, its relative score)) over
    the prompts both answered."""
    shared = [prompt for prompt in mine if prompt in full]
    records = [dict(full[p], method=FULL) for p in shared] + [dict(mine[p], method="x") for p in shared]
    scores = cell_scores(records)
    cells = sorted(scores[FULL])
    overall = relative_score(scores, "x", cells)
    if overall is None:
        return None
    per_task = {
        task: relative_score(scores, "x", [c for c in cells if c[0] == task]) for task in sorted({c[0] for c in cells})
    }
    lowest = min(((task, value) for task, value in per_task.items() if value is not None), key=lambda item: item[1])
    pairs: dict[tuple[str, int], list[tuple[float, float]]] = defaultdict(list)
    for prompt in shared:
        pairs[prompt[:2]].append((full[prompt]["score"], mine[prompt]["score"]))
    return overall, relative_interval(pairs), lowest


def flop_speedup(shape: ModelShape, config: dict[str, Any] | None, tokens: int, density: float | None) -> float:
    """Full's prefill FLOPs over the config's at `tokens`, its sparse layers at `density`."""
    return 1.0 if config is None else 1 / flop_fraction(shape, SlimConfig.from_dict(config), tokens, density)


def mean_density(records: Iterable[Record], length: int) -> float | None:
    """Mean recorded block-sparse density of the prompts of `length` (None: none was sparse)."""
    values = [r["sparse_density"] for r in records if r["length"] == length and r.get("sparse_density") is not None]
    return mean(values) if values else None


def describe(config: dict[str, Any] | None, reference: dict[str, Any] | None) -> str:
    """A short name: the schedule with its score layers, then the knobs that differ from `reference`."""
    if config is None:
        return "full"
    slim = SlimConfig.from_dict(config).to_dict()
    schedule = slim["keep_schedule"]
    scorers = slim["score_layers"] or [[] for _ in schedule]  # none given: each cut's own default
    cuts = ", ".join(
        f"{layer}:{keep:g} by {'+'.join(map(str, layers)) or 'own'}"
        for (layer, keep), layers in zip(schedule, scorers, strict=True)
    )
    base = SlimConfig.from_dict(reference).to_dict() if reference else {}
    skip = {"keep_schedule", "score_layers", "preserve_layers"}
    extras = [f"{k}={_short(v)}" for k, v in slim.items() if k not in skip and base.get(k) != v]
    return f"{cuts} [{';'.join(extras)}]" if extras else cuts


def _short(value: Any) -> str:
    return json.dumps(value).replace(" ", "") if isinstance(value, list | dict) else str(value)


def peer_name(config: dict[str, Any] | None, peers: dict[str, dict[str, Any]]) -> str | None:
    """The first peer whose every given knob has the config's value."""
    if config is None:
        return None
    slim = SlimConfig.from_dict(config).to_dict()
    return next((name for name, knobs in peers.items() if all(slim.get(k) == v for k, v in knobs.items())), None)


def parse_peer(text: str) -> tuple[str, dict[str, Any]]:
    """'NAME=key=value;key=value' -> (NAME, {key: value}), values read as `SlimConfig` reads them."""
    name, _, assignments = text.partition("=")
    items = [item.strip() for item in assignments.split(";") if item.strip()]
    if not name or not items:
        raise argparse.ArgumentTypeError(f"--peer {text!r}: expected NAME=key=value;key=value")
    knobs = SlimConfig().with_overrides(items).to_dict()
    return name, {item.split("=", 1)[0]: knobs[item.split("=", 1)[0]] for item in items}


def measured_speedups(path: str, length: int) -> dict[str, float]:
    """config key -> bench's `ttft_speedup_vs_hf` at the measured length nearest `length`
    (`hf` has no config either: its row is the baseline, not `full`'s)."""
    data = read_json(path)
    rows = [row for row in data["rows"] if row["method"] != "hf" and row.get("ttft_speedup_vs_hf") is not None]
    configs = {(c["length"], c["method"]): c["settings"].get("config") for c in data["cells"].values()}
    found: dict[str, tuple[int, float]] = {}
    for row in rows:
        key = config_key(configs[(row["length"], row["method"])])
        distance = abs(row["length"] - length)
        if key not in found or distance < found[key][0]:
            found[key] = (distance, row["ttft_speedup_vs_hf"])
    return {key: speedup for key, (_, speedup) in found.items()}


def points(
    by_config: dict[str, dict[PromptKey, Record]],
    shape: ModelShape,
    tokens: int,
    peers: dict[str, dict[str, Any]],
    reference: dict[str, Any] | None,
    measured: dict[str, float],
    min_samples: int,
) -> list[Point]:
    """A point per config with at least `min_samples` prompts shared with full, by speedup."""
    full = by_config.get(config_key(None), {})
    found = []
    for key, records in by_config.items():
        config = json.loads(key)
        shared = sum(1 for p in records if p in full)
        if config is not None and shared < min_samples:
            continue
        result = relative_to_full(full, records)
        if result is None:
            continue
        peer = peer_name(config, peers)
        found.append(
            Point(
                name=peer or describe(config, reference),
                peer=peer is not None,
                config=config,
                samples=shared,
                complete={p[0] for p in records} >= {p[0] for p in full},
                relative=result[0],
                interval=result[1],
                lowest_task=result[2],
                flop_speedup=flop_speedup(shape, config, tokens, mean_density(records.values(), tokens)),
                measured_speedup=measured.get(key),
            )
        )
    return sorted(found, key=lambda p: (p.flop_speedup, p.relative))


def iso_accuracy(found: Sequence[Point], floor: float, field: str) -> Point | None:
    """The complete point with the largest `field` among those scoring at least `floor` of full."""
    kept = [p for p in found if p.complete and p.relative >= floor and getattr(p, field) is not None]
    return max(kept, key=lambda p: getattr(p, field)) if kept else None


def render(found: Sequence[Point], floor: float, tokens: int, title: str) -> str:
    rows = [
        [
            p.name,
            "peer" if p.peer else "",
            p.samples if p.complete else f"{p.samples} (some tasks)",
            f"{p.relative:.3f}",
            "-" if p.interval is None else f"{p.interval[0]:.3f}-{p.interval[1]:.3f}",
            f"{p.lowest_task[0]} {p.lowest_task[1]:.2f}",
            f"{p.flop_speedup:.2f}",
            "-" if p.measured_speedup is None else f"{p.measured_speedup:.2f}",
            "yes" if p.relative >= floor else "",
        ]
        for p in found
    ]
    header = ["config", "", "prompts", "of full", "95% interval", "lowest task", f"FLOP-ideal x at {tokens}", "measured TTFT x", f">= {floor}"]
    text = f"# {title}\n\n" + markdown_table(header, rows)
    for field, what in (("flop_speedup", "FLOP-ideal"), ("measured_speedup", "measured TTFT")):
        best = iso_accuracy(found, floor, field)
        if best is not None:
            text += f"\nIso-accuracy ({what}): **{getattr(best, field):.2f}x** at {best.relative:.3f} of full: {best.name}\n"
    return text


def plot(path: str, found: Sequence[Point], floor: float, title: str) -> bool:
    """Score against FLOP-ideal speedup, one marker per config, peers as squares."""
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        return False
    fig, ax = plt.subplots(figsize=(10, 5 + 0.22 * len(found)))
    for index, p in enumerate(found):
        style = dict(marker="s" if p.peer else ("P" if p.config is None else "o"), markersize=9, linestyle="none")
        if not p.complete:
            style["fillstyle"] = "none"
        ax.plot([p.flop_speedup], [p.relative], label=f"{index + 1}. {p.name}", **style)
        ax.annotate(str(index + 1), (p.flop_speedup, p.relative), textcoords="offset points", xytext=(6, 4), fontsize=8)
    ax.axhline(floor, color="grey", linestyle="--", linewidth=1)
    ax.set_title(title)
    ax.set_xlabel("FLOP-ideal TTFT speedup over full (prefill FLOPs ratio)")
    ax.set_ylabel("RULER score relative to full")
    ax.grid(True, alpha=0.3)
    ax.legend(loc="upper left", bbox_to_anchor=(0.0, -0.12), fontsize="x-small")  # long names: below
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)
    return True


def model_shape(source: str) -> ModelShape:
    from sliminfer.loading import load_config

    return ModelShape.from_hf_config(load_config(source))


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--model", required=True, help="the evaluated model (.gguf or HF folder): its shape gives FLOPs")
    parser.add_argument("--results", nargs="+", required=True, help="merged eval results.json files (same suite)")
    parser.add_argument("--ttft", help="a `sliminfer bench` results.json with the same configs")
    parser.add_argument("--peer", type=parse_peer, action="append", default=[], help="NAME=key=value;... (repeatable)")
    parser.add_argument("--tokens", type=int, default=32768, help="reference prompt length (default 32768)")
    parser.add_argument("--floor", type=float, default=0.98, help="score relative to full that counts as kept")
    parser.add_argument("--min-samples", type=int, default=100, help="skip configs with fewer prompts")
    parser.add_argument("--title", default="Accuracy vs prefill FLOPs")
    parser.add_argument("--out", required=True)
    args = parser.parse_args(argv)
    by_config = records_by_config(args.results)
    newest = read_json(args.results[0])["settings"]["methods"].get("slim")
    found = points(
        by_config,
        model_shape(args.model),
        args.tokens,
        dict(args.peer),
        newest,
        measured_speedups(args.ttft, args.tokens) if args.ttft else {},
        args.min_samples,
    )
    os.makedirs(args.out, exist_ok=True)
    text = render(found, args.floor, args.tokens, args.title)
    with open(os.path.join(args.out, "iso.md"), "w", encoding="utf-8") as handle:
        handle.write(text)
    if not plot(os.path.join(args.out, "iso.png"), found, args.floor, args.title):
        print("iso.png not written: matplotlib is not installed (pip install -e \".[plot]\")")
    print(text)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
