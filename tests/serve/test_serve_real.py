"""`sliminfer serve` as a real process on a loopback port, driven by the official `openai` client.

One server (with an API key and a `--set` override) is shared by the module; the concurrency
test starts its own with `--max-queue 4`. Prompts are short and answers at most 16 tokens,
except the disconnect test, whose long answer must be cut short. Every call has a timeout.
"""

from __future__ import annotations

import contextlib
import re
import socket
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass

import httpx
import openai
import pytest
from serve_fakes import parse_metrics

pytestmark = pytest.mark.slow

KEY = "test-key"
COUNTING = "1, 2, 3, 4,"  # greedy SmolLM2 keeps counting: no early EOS, so lengths are predictable
CALL_TIMEOUT_S = 60
QUEUED_CALL_TIMEOUT_S = 180  # the last admitted request waits for four others on a possibly busy CPU
START_TIMEOUT_S = 180


@dataclass
class Server:
    url: str
    process: subprocess.Popen
    log: tempfile.SpooledTemporaryFile

    def client(self, api_key: str = KEY) -> openai.OpenAI:
        return openai.OpenAI(base_url=f"{self.url}/v1", api_key=api_key, max_retries=0, timeout=CALL_TIMEOUT_S)

    def get(self, path: str) -> httpx.Response:
        return httpx.get(self.url + path, headers={"Authorization": f"Bearer {KEY}"}, timeout=CALL_TIMEOUT_S)

    def post(self, path: str, **kwargs) -> httpx.Response:
        return httpx.post(self.url + path, headers={"Authorization": f"Bearer {KEY}"}, timeout=CALL_TIMEOUT_S,
                          **kwargs)

    def metrics(self) -> dict[str, float]:
        return parse_metrics(self.get("/metrics").text)

    def output(self) -> str:
        self.log.seek(0)
        return self.log.read().decode(errors="replace")


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@contextlib.contextmanager
def running_server(*args: str) -> Iterator[Server]:
    """Start `sliminfer serve` with the default model, wait for /health, kill it on exit."""
    port = free_port()
    log = tempfile.SpooledTemporaryFile()
    command = [sys.executable, "-m", "sliminfer.cli.main", "serve", "--port", str(port), *args]
    process = subprocess.Popen(command, stdout=log, stderr=subprocess.STDOUT)
    server = Server(f"http://127.0.0.1:{port}", process, log)
    try:
        deadline = time.monotonic() + START_TIMEOUT_S
        while True:
            assert process.poll() is None, f"server exited with {process.returncode}:\n{server.output()}"
            assert time.monotonic() < deadline, f"server not up after {START_TIMEOUT_S} s:\n{server.output()}"
            with contextlib.suppress(httpx.TransportError):
                if httpx.get(server.url + "/health", timeout=1).status_code == 200:
                    break
            time.sleep(0.2)
        yield server
    finally:
        process.terminate()
        try:
            process.wait(timeout=15)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait(timeout=15)


@pytest.fixture(scope="module")
def server() -> Iterator[Server]:
    with running_server("--api-key", KEY, "--max-queue", "8", "--set", "gamma=0.5") as running:
        yield running


@pytest.fixture(scope="module")
def api(server: Server) -> openai.OpenAI:
    return server.client()


@pytest.fixture(scope="module")
def model(api: openai.OpenAI) -> str:
    ids = [card.id for card in api.models.list()]
    assert len(ids) == 1
    assert api.models.retrieve(ids[0]).id == ids[0]
    return ids[0]


def test_completion_fills_usage_and_the_sliminfer_field(api, model):
    response = api.completions.create(model=model, prompt=COUNTING, max_tokens=8, temperature=0)
    choice = response.choices[0]
    assert choice.finish_reason == "length" and choice.text.strip().startswith("5")
    usage = response.usage
    assert usage.completion_tokens == 8 and usage.prompt_tokens > 0
    assert usage.total_tokens == usage.prompt_tokens + usage.completion_tokens
    extra = response.model_extra["sliminfer"]
    assert extra["method"] == "slim" and extra["config"]["gamma"] == 0.5  # --set reached the server
    assert len(extra["kept_tokens_per_layer"]) == 30 and extra["kv_cache_bytes"] > 0 and extra["ttft_s"] > 0


def test_chat(api, model):
    response = api.chat.completions.create(
        model="default", messages=[{"role": "user", "content": "What is the capital of France?"}],
        max_tokens=8, temperature=0,
    )
    message = response.choices[0].message
    assert message.role == "assistant" and message.content.strip()
    assert response.model == model and response.usage.completion_tokens <= 8


@pytest.mark.parametrize("chat", [False, True], ids=["completion", "chat"])
def test_stream_concatenates_to_the_non_streamed_text(api, model, chat):
    if chat:
        create, args = api.chat.completions.create, {"messages": [{"role": "user", "content": "Count to five."}]}
    else:
        create, args = api.completions.create, {"prompt": COUNTING}
    args |= {"model": model, "max_tokens": 12, "temperature": 0}
    whole = create(**args)
    chunks = list(create(**args, stream=True, stream_options={"include_usage": True}))
    texts = [c.choices[0].delta.content or "" if chat else c.choices[0].text for c in chunks if c.choices]
    final = whole.choices[0].message.content if chat else whole.choices[0].text
    assert len([t for t in texts if t]) > 1, "expected the answer in several chunks"
    assert "".join(texts) == final
    assert chunks[-1].usage.model_dump() == whole.usage.model_dump()


def test_stop_strings(api, model):
    free = api.completions.create(model=model, prompt=COUNTING, max_tokens=12, temperature=0).choices[0].text
    assert " 7" in free
    expected = free[: free.index(" 7")]
    stopped = api.completions.create(model=model, prompt=COUNTING, max_tokens=12, temperature=0, stop=[" 7", "xyz"])
    assert stopped.choices[0].text == expected and stopped.choices[0].finish_reason == "stop"
    chunks = api.completions.create(model=model, prompt=COUNTING, max_tokens=12, temperature=0, stop=" 7",
                                    stream=True)
    assert "".join(c.choices[0].text for c in chunks) == expected


def test_method_override(api, model):
    response = api.completions.create(model=model, prompt=COUNTING, max_tokens=2, temperature=0,
                                      extra_body={"sliminfer": {"method": "full"}})
    assert response.model_extra["sliminfer"]["method"] == "full"


def test_bad_inputs_get_their_status_and_the_server_stays_healthy(server, api, model):
    with pytest.raises(openai.NotFoundError):
        api.completions.create(model="gpt-4", prompt="hi", max_tokens=1)
    with pytest.raises(openai.AuthenticationError):
        server.client(api_key="wrong").completions.create(model=model, prompt="hi", max_tokens=1)
    with pytest.raises(openai.BadRequestError) as too_long:
        api.completions.create(model=model, prompt="hello " * 9000, max_tokens=1)
    numbers = [int(n) for n in re.findall(r"\d+", too_long.value.message)]
    assert 8192 in numbers and any(n > 8192 for n in numbers), too_long.value.message
    with pytest.raises(openai.BadRequestError) as bad_knob:
        api.completions.create(model=model, prompt="hi", max_tokens=1, extra_body={"sliminfer": {"bogus": 1}})
    assert bad_knob.value.param == "sliminfer.bogus"
    with pytest.raises(openai.BadRequestError):
        api.chat.completions.create(model=model, messages=[{"role": "user"}], max_tokens=1)
    for blank in ({"prompt": " \n "}, {"messages": [{"role": "user", "content": "  "}]}):
        response = server.post("/v1/chat/completions" if "messages" in blank else "/v1/completions",
                               json={"max_tokens": 1, **blank})
        assert response.status_code == 400 and "empty" in response.json()["error"]["message"], response.text
    for raw in (b"{oops", b'{"model": "default"}', b'{"prompt": "x", "max_tokens": "many"}'):
        response = server.post("/v1/completions", content=raw)
        assert response.status_code == 400 and set(response.json()["error"]) == {"message", "type", "param", "code"}
    assert httpx.get(server.url + "/health", timeout=CALL_TIMEOUT_S).json()["status"] == "ok"
    assert api.completions.create(model=model, prompt=COUNTING, max_tokens=2, temperature=0).usage.completion_tokens == 2


def test_disconnect_stops_the_generation(server, api, model):
    before = server.metrics()
    max_tokens = 400
    stream = api.completions.create(model=model, prompt=COUNTING, max_tokens=max_tokens, temperature=0, stream=True)
    for i, _ in enumerate(stream):
        if i == 2:
            break
    stream.close()
    cancelled = 'sliminfer_generations_total{finish_reason="cancelled"}'
    deadline = time.monotonic() + 30
    while (after := server.metrics()).get(cancelled, 0) == before.get(cancelled, 0):
        assert time.monotonic() < deadline, "the abandoned generation was never cancelled"
        time.sleep(0.1)
    assert after[cancelled] == before.get(cancelled, 0) + 1
    generated = after["sliminfer_completion_tokens_total"] - before["sliminfer_completion_tokens_total"]
    assert 0 < generated < max_tokens
    assert api.completions.create(model=model, prompt=COUNTING, max_tokens=2, temperature=0).choices[0].text


def test_bounded_concurrency_answers_or_429_and_metrics_agree():
    clients, max_queue, max_tokens = 16, 4, 8
    with running_server("--max-queue", str(max_queue)) as server:
        api = server.client(api_key="unused").with_options(timeout=QUEUED_CALL_TIMEOUT_S)
        barrier = threading.Barrier(clients)

        def one(_: int) -> tuple[str, object]:
            barrier.wait(timeout=CALL_TIMEOUT_S)
            try:
                return "ok", api.completions.create(model="default", prompt=COUNTING, max_tokens=max_tokens,
                                                    temperature=0)
            except openai.RateLimitError as exc:
                return "429", exc.response.headers.get("retry-after")

        with ThreadPoolExecutor(clients) as pool:
            outcomes = list(pool.map(one, range(clients), timeout=2 * QUEUED_CALL_TIMEOUT_S))
        answered = [value for kind, value in outcomes if kind == "ok"]
        rejected = [value for kind, value in outcomes if kind == "429"]
        assert len(answered) + len(rejected) == clients
        assert len(answered) >= max_queue + 1, "one running plus a full queue must be admitted"
        assert rejected, "16 simultaneous clients should overflow a queue of 4"
        assert all(r.usage.completion_tokens == max_tokens and r.choices[0].text for r in answered)
        assert all(int(retry_after) >= 1 for retry_after in rejected)
        samples = server.metrics()
        assert samples['sliminfer_requests_total{endpoint="/v1/completions",status="200"}'] == len(answered)
        assert samples['sliminfer_requests_total{endpoint="/v1/completions",status="429"}'] == len(rejected)
        assert samples['sliminfer_generations_total{finish_reason="length"}'] == len(answered)
        assert samples['sliminfer_time_to_first_token_seconds_count{method="slim"}'] == len(answered)
        assert samples["sliminfer_completion_tokens_total"] == len(answered) * max_tokens
        assert samples["sliminfer_queue_depth"] == 0 and samples["sliminfer_running"] == 0


@pytest.mark.parametrize("flags", [["--max-queue", "-1"], ["--model", "/nonexistent/model"]])
def test_cli_rejects_bad_flags_with_exit_code_2(flags):
    done = subprocess.run([sys.executable, "-m", "sliminfer.cli.main", "serve", *flags], capture_output=True,
                          text=True, timeout=CALL_TIMEOUT_S)
    assert done.returncode == 2, done.stderr
    assert done.stderr.strip().count("\n") == 0 and "error" in done.stderr
