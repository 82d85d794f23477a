"""The methods sliminfer runs and compares, and the one grammar that names them.

`bench --methods`, `eval --methods` and the server's per-request `sliminfer.method` all read
`NAME` or `NAME[key=value;key=value]`, a comma-separated list where a list is allowed:
- `slim`: the base config (the model's default plus `--config` / `--set`), then the bracket's
  overrides, e.g. `slim[keep_schedule=8:0.1]` or `slim[preserve_layers=6;keep_schedule=6:0.2]`;
- `full`: sliminfer without pruning (takes no overrides);
- `hf`: plain transformers `model.generate`, no sliminfer code (bench only: it takes no config).

Commas inside brackets belong to the value (`keep_schedule=8:0.25,16:0.15`), and a method's
label is its spec as written, so tables show exactly what ran.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from typing import Any

from .config import SlimConfig
from .errors import UserError

KINDS = {
    "hf": "plain transformers model.generate with SDPA, no sliminfer code",
    "full": "sliminfer without pruning",
    "slim": "sliminfer with the config's pruning",
}
"""Every method kind, in the order tables list them."""
GENERATE_KINDS = ("slim", "full")
"""The kinds `sliminfer.generate.generate` runs (the first is the default)."""
_SPEC = re.compile(r"^(\w+)(?:\[(.*)\])?$")


@dataclass(frozen=True)
class Method:
    """One column of the results: which kind runs, under which label, with which config."""

    label: str
    kind: str
    config: SlimConfig | None

    @property
    def config_dict(self) -> dict[str, Any] | None:
        return self.config.to_dict() if self.config else None

    @property
    def config_key(self) -> str:
        """The config as canonical JSON ("null" for full): part of a result's identity."""
        return config_key(self.config_dict)


def config_key(config: dict[str, Any] | None) -> str:
    """A config dict as canonical JSON ("null" for full), every acting knob spelled out
    (`SlimConfig.acting_dict`): a record written before a knob existed matches the same config
    today (a new knob's default keeps the old behaviour), and one written before a preset set a
    knob its config does not use (a sparse-prefill knob with sparse prefill off) still matches."""
    return json.dumps(SlimConfig.from_dict(config).acting_dict() if config is not None else None, sort_keys=True)


def split_top_level(text: str) -> list[str]:
    """Split at commas that are not inside [...]."""
    parts, depth, current = [], 0, ""
    for char in text:
        depth += {"[": 1, "]": -1}.get(char, 0)
        if char == "," and depth == 0:
            parts.append(current)
            current = ""
        else:
            current += char
    parts.append(current)
    return [part.strip() for part in parts if part.strip()]


def parse_method(
    spec: str, base: SlimConfig, kinds: tuple[str, ...] = GENERATE_KINDS, source: str = "--methods item"
) -> Method:
    """One `NAME[key=value;...]` spec whose NAME is in `kinds`; overrides are validated by
    `SlimConfig.with_overrides`. Only `slim` has a config; `source` names the spec in errors."""
    spec = spec.strip()
    match = _SPEC.match(spec)
    if not match or match.group(1) not in kinds:
        raise UserError(f"{source} {spec!r}: expected one of {list(kinds)}, optionally slim[key=value;...]")
    kind, overrides = match.group(1), match.group(2)
    if kind != "slim":
        if overrides:
            raise UserError(f"{source} {spec!r}: {kind} takes no config overrides")
        return Method(label=spec, kind=kind, config=None)
    assignments = [item.strip() for item in (overrides or "").split(";") if item.strip()]
    return Method(label=spec, kind=kind, config=base.with_overrides(assignments))


def kind_of(label: str) -> str:
    """The kind a method label names: 'slim[window=16]' -> 'slim'."""
    return label.split("[", 1)[0].strip()


def parse_methods(text: str, base: SlimConfig, kinds: tuple[str, ...] = GENERATE_KINDS) -> list[Method]:
    """All methods of a `--methods` list, in order; duplicate labels are an error."""
    methods = [parse_method(spec, base, kinds) for spec in split_top_level(text)]
    if not methods:
        raise UserError(f"--methods is empty: give e.g. {','.join(reversed(kinds))}")
    labels = [m.label for m in methods]
    duplicates = sorted({label for label in labels if labels.count(label) > 1})
    if duplicates:
        raise UserError(f"--methods lists {duplicates} more than once")
    return methods
