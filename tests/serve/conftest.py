"""Fixtures for the server tests: the real app on a fake generator (`serve_fakes`)."""

from __future__ import annotations

from collections.abc import Callable, Iterator

import pytest
from fastapi.testclient import TestClient
from serve_fakes import FAKE_CONFIG, FakeRunner, fake_loaded

from sliminfer.serve.app import create_app


@pytest.fixture
def runner() -> FakeRunner:
    return FakeRunner()


@pytest.fixture
def make_client(runner: FakeRunner) -> Iterator[Callable[..., TestClient]]:
    """`make_client(api_key=None, max_queue=4)`: a started TestClient on the fake runner."""
    clients: list[TestClient] = []

    def make(api_key: str | None = None, max_queue: int = 4) -> TestClient:
        app = create_app(fake_loaded(), FAKE_CONFIG, api_key=api_key, max_queue=max_queue, runner=runner)
        client = TestClient(app, raise_server_exceptions=False)
        client.__enter__()
        clients.append(client)
        return client

    yield make
    runner.gate.set()
    for client in clients:
        client.__exit__(None, None, None)


@pytest.fixture
def client(make_client: Callable[..., TestClient]) -> TestClient:
    return make_client()
