"""Accuracy of slim vs full: RULER-style synthetic tasks, a LongBench reader, metrics and a runner.

Module map: `synthetic` (task generators) on `haystack` (filler text, needle placement, length
fitting) and `facts` (QA facts); `longbench` (JSONL reader, templates, truncation); `scorers`
(answer metrics); `methods` (`--methods`, in the grammar of `sliminfer.methods`); `runner` (the
loop) with `backend` (the model side); `results` (resumable results.json); `summary` (table.md,
plots); `evaluate` (one call for all).
"""

from __future__ import annotations

from ..methods import Method, parse_methods
from .evaluate import EvalOutput, EvalSpec, evaluate
from .sample import Sample

__all__ = ["EvalOutput", "EvalSpec", "Method", "Sample", "evaluate", "parse_methods"]
