"""`results.json` of an evaluation: every scored sample, saved after each one, resumable.

A result is identified by (task, length, sample index, method label, config). A rerun with
the same `--out` skips what is already there, so an interrupted run continues where it stopped
and a run can be extended with more tasks, lengths, samples or methods. Settings that change
what a sample *is* (model, suite, seed, chat, haystack, data) must match, or the run stops.
"""

from __future__ import annotations

import os
from typing import Any

from ..errors import UserError
from ..methods import config_key
from ..report import read_json, write_json

RESULTS_FILE = "results.json"
# Settings that change the prompts or the model: resuming with other values would mix results.
IDENTITY_SETTINGS = ("suite", "model", "seed", "chat", "haystack", "data", "newline_markers")

Key = tuple[str, int, int, str, str]


def record_key(record: dict[str, Any]) -> Key:
    return (record["task"], record["length"], record["index"], record["method"], config_key(record["config"]))


class ResultStore:
    """The records of one output folder, rewritten atomically after every added record."""

    def __init__(self, out_dir: str, settings: dict[str, Any], environment: dict[str, Any]) -> None:
        self.path = os.path.join(out_dir, RESULTS_FILE)
        self.settings = settings
        self.environment = environment
        previous = read_json(self.path, default=None)
        self.records: list[dict[str, Any]] = []
        if previous is not None:
            _check_same_run(self.path, previous.get("settings", {}), settings)
            self.records = list(previous.get("records", []))
        self._keys = {record_key(record) for record in self.records}

    def has(self, key: Key) -> bool:
        return key in self._keys

    def add(self, record: dict[str, Any]) -> None:
        self.records.append(record)
        self._keys.add(record_key(record))
        self.save()

    def save(self) -> None:
        write_json(
            self.path, {"settings": self.settings, "environment": self.environment, "records": self.records}
        )


def _check_same_run(path: str, old: dict[str, Any], new: dict[str, Any]) -> None:
    changed = [key for key in IDENTITY_SETTINGS if old.get(key) != new.get(key)]
    if changed:
        details = ", ".join(f"{key}: {old.get(key)!r} -> {new.get(key)!r}" for key in changed)
        raise UserError(f"{path} holds a different run ({details}): use another --out to start a new one")
