"""Accuracy of slim vs full: RULER-style synthetic tasks, a LongBench reader, metrics and a runner.

Module map: `synthetic` (task generators) on `haystack` (filler text, needle placement, length
fitting) and `facts` (QA facts); `longbench` (JSONL reader, templates, truncation); `metrics`
(scorers); `methods` (`--methods` specs); `runner` (the loop) with `backend` (the model side);
`results` (resumable results.json); `summary` (table.md, plots); `evaluate` (one call for all).
"""

from __future__ import annotations

from .evaluate import EvalOutput, EvalSpec, evaluate
from .methods import Method, parse_methods
from .sample import Sample

__all__ = ["EvalOutput", "EvalSpec", "Method", "Sample", "evaluate", "parse_methods"]
