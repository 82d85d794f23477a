"""The methods an evaluation compares, parsed from `--methods`.

Grammar: a comma-separated list of `NAME` or `NAME[key=value;key=value]`.
- `full`: the model without pruning (takes no overrides);
- `slim`: the model's default config plus `--config` / `--set`, then the bracket's overrides.

So a sweep is one flag, e.g. `--methods "full,slim,slim[keep_schedule=8:0.1],slim[preserve_layers=6;keep_schedule=6:0.2]"`.
Commas inside brackets belong to the value (`keep_schedule=8:0.25,16:0.15`), and each method's
label is its spec as written, so tables show exactly what ran.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any

from ..config import SlimConfig
from ..errors import UserError
from .results import config_key

KINDS = ("full", "slim")
_SPEC = re.compile(r"^(\w+)(?:\[(.*)\])?$")


@dataclass(frozen=True)
class Method:
    """One column of the results: what `generate` runs and with which config."""

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


def parse_method(spec: str, base: SlimConfig) -> Method:
    """One `NAME[key=value;...]` spec; overrides are validated by `SlimConfig.with_overrides`."""
    match = _SPEC.match(spec)
    if not match or match.group(1) not in KINDS:
        raise UserError(
            f"--methods item {spec!r}: expected one of {list(KINDS)}, optionally with [key=value;...]"
        )
    kind, overrides = match.group(1), match.group(2)
    if kind == "full":
        if overrides:
            raise UserError(f"--methods item {spec!r}: full takes no config overrides")
        return Method(label=spec, kind=kind, config=None)
    assignments = [item.strip() for item in (overrides or "").split(";") if item.strip()]
    return Method(label=spec, kind=kind, config=base.with_overrides(assignments))


def parse_methods(text: str, base: SlimConfig) -> list[Method]:
    """All methods of `--methods`, in order; duplicate labels are an error."""
    methods = [parse_method(spec, base) for spec in split_top_level(text)]
    if not methods:
        raise UserError("--methods is empty: give e.g. full,slim")
    labels = [m.label for m in methods]
    duplicates = sorted({label for label in labels if labels.count(label) > 1})
    if duplicates:
        raise UserError(f"--methods lists {duplicates} more than once")
    return methods
