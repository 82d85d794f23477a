"""Shared fixtures: tiny random-config models (see tiny.py) and the embedded model."""

from __future__ import annotations

import pytest

from sliminfer.loading import LoadedModel
from tiny import build_tiny, wrap


@pytest.fixture(params=["llama", "qwen2"])
def tiny(request) -> LoadedModel:
    return wrap(build_tiny(request.param), name=f"tiny-{request.param}")


@pytest.fixture
def tiny_llama() -> LoadedModel:
    return wrap(build_tiny("llama"), name="tiny-llama")

