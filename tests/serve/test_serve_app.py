"""The app on a fake generator: answers, streams, error shapes, auth, queue bound, overrides."""

from __future__ import annotations

import asyncio
import json
import threading
import time
from types import SimpleNamespace

import pytest
from serve_fakes import FAKE_CONTEXT, FAKE_NAME, generation_request, parse_metrics

from sliminfer.serve.app import _first_event
from sliminfer.serve.engine import Engine
from sliminfer.serve.prometheus import ServerMetrics

ERROR_KEYS = {"message", "type", "param", "code"}


def complete(client, **body):
    return client.post("/v1/completions", json={"prompt": "one two three", "max_tokens": 4} | body)


def events(response) -> list:
    """The data of each server-sent event; `[DONE]` kept as a string."""
    lines = [line for line in response.text.split("\n\n") if line]
    assert all(line.startswith("data: ") for line in lines)
    return [line[6:] if line == "data: [DONE]" else json.loads(line[6:]) for line in lines]


def assert_error(response, status: int, param: str | None = None) -> dict:
    assert response.status_code == status, response.text
    error = response.json()["error"]
    assert set(error) == ERROR_KEYS
    assert isinstance(error["message"], str) and error["message"]
    if param is not None:
        assert error["param"] == param
    return error


def test_completion_body_usage_and_sliminfer_field(client, runner):
    response = complete(client, temperature=0, seed=3, top_p=0.5, user="ignored", n=1, logit_bias={})
    assert response.status_code == 200
    body = response.json()
    assert body["object"] == "text_completion" and body["model"] == FAKE_NAME
    assert body["choices"] == [{"index": 0, "text": " w0 w1 w2 w3", "logprobs": None, "finish_reason": "length"}]
    assert body["usage"] == {"prompt_tokens": 3, "completion_tokens": 4, "total_tokens": 7}
    extra = body["sliminfer"]
    assert extra["method"] == "slim" and extra["kept_tokens_per_layer"] == [3, 3, 3, 3]
    assert {"ttft_s", "queue_s", "kv_cache_bytes", "config"} <= set(extra)
    assert extra["pruned"] is False and extra["finish_detail"] is None  # the fake keeps every token
    request = runner.requests[-1]
    assert (request.temperature, request.seed, request.top_p, request.chat) == (0.0, 3, 0.5, False)


def test_chat_answer(client, runner):
    response = client.post("/v1/chat/completions", json={
        "model": "default", "messages": [{"role": "system", "content": "be brief"},
                                         {"role": "user", "content": [{"type": "text", "text": "hi there"}]}],
        "max_completion_tokens": 2})
    assert response.status_code == 200
    body = response.json()
    assert body["object"] == "chat.completion"
    assert body["choices"][0]["message"] == {"role": "assistant", "content": " w0 w1"}
    assert runner.requests[-1].prompt == [{"role": "system", "content": "be brief"},
                                          {"role": "user", "content": "hi there"}]


@pytest.mark.parametrize("path", ["/v1/completions", "/v1/chat/completions"])
def test_stream_concatenates_to_the_answer(client, path):
    body = {"prompt": "a b", "messages": [{"role": "user", "content": "a b"}], "max_tokens": 5}
    whole = client.post(path, json=body).json()
    streamed = client.post(path, json=body | {"stream": True, "stream_options": {"include_usage": True}})
    assert streamed.headers["content-type"].startswith("text/event-stream")
    data = events(streamed)
    assert data[-1] == "[DONE]"
    chunks, usage_chunk = data[:-2], data[-2]
    chat = path.endswith("chat/completions")
    deltas = [c["choices"][0]["delta"].get("content", "") if chat else c["choices"][0]["text"] for c in chunks]
    final = whole["choices"][0]["message"]["content"] if chat else whole["choices"][0]["text"]
    assert "".join(deltas) == final
    assert chunks[-1]["choices"][0]["finish_reason"] == "length" and "sliminfer" in chunks[-1]
    assert all(c["id"] == chunks[0]["id"] for c in chunks)
    if chat:
        assert chunks[0]["choices"][0]["delta"]["role"] == "assistant"
        assert chunks[0]["object"] == "chat.completion.chunk"
    assert usage_chunk["choices"] == [] and usage_chunk["usage"] == whole["usage"]


def test_stop_strings(client):
    body = complete(client, max_tokens=8, stop=["w3", "zzz"]).json()
    assert body["choices"][0]["text"] == " w0 w1 w2 "
    assert body["choices"][0]["finish_reason"] == "stop"
    assert complete(client, max_tokens=8, stop="w1").json()["choices"][0]["text"] == " w0 "


def test_per_request_overrides_reach_the_generator(client, runner):
    body = complete(client, sliminfer={"method": "full", "keep_schedule": [[2, 0.2]], "gamma": 0.5}).json()
    request = runner.requests[-1]
    assert request.method == "full"
    assert request.config.keep_schedule == ((2, 0.2),) and request.config.gamma == 0.5
    assert request.config.preserve_layers == 1  # the rest comes from the server's config
    assert body["sliminfer"]["config"]["keep_schedule"] == [[2, 0.2]]
    complete(client, sliminfer={"method": "slim[keep_schedule=2:0.3;gamma=0.25]", "gamma": 0.5})
    request = runner.requests[-1]  # the --methods grammar, then the knobs on top
    assert request.method == "slim" and request.config.keep_schedule == ((2, 0.3),) and request.config.gamma == 0.5


@pytest.mark.parametrize(
    ("body", "param"),
    [
        ({"max_tokens": 4}, "prompt"),
        ({"prompt": 5}, "prompt"),
        ({"prompt": ["a", "b"]}, "prompt"),
        ({"prompt": [1, 2, 100]}, "prompt"),
        ({"prompt": "x", "max_tokens": "4"}, "max_tokens"),
        ({"prompt": "x", "max_tokens": 0}, "max_tokens"),
        ({"prompt": "x", "temperature": 2.5}, "temperature"),
        ({"prompt": "x", "temperature": True}, "temperature"),
        ({"prompt": "x", "top_p": 0}, "top_p"),
        ({"prompt": "x", "stop": [1]}, "stop"),
        ({"prompt": "x", "stop": ""}, "stop"),
        ({"prompt": "x", "seed": 1.5}, "seed"),
        ({"prompt": "x", "stream": "yes"}, "stream"),
        ({"prompt": "x", "stream_options": []}, "stream_options"),
        ({"prompt": "x", "model": 7}, "model"),
        ({"prompt": "x", "sliminfer": "full"}, "sliminfer"),
        ({"prompt": "x", "sliminfer": {"method": "fast"}}, "sliminfer.method"),
        ({"prompt": "x", "sliminfer": {"method": "hf"}}, "sliminfer.method"),
        ({"prompt": "x", "sliminfer": {"method": "full[gamma=0.5]"}}, "sliminfer.method"),
        ({"prompt": "x", "sliminfer": {"method": "slim[bogus=1]"}}, "sliminfer.method"),
        ({"prompt": "x", "sliminfer": {"method": 3}}, "sliminfer.method"),
        ({"prompt": "x", "sliminfer": {"gamma": 5}}, "sliminfer.gamma"),
        ({"prompt": "x", "sliminfer": {"bogus": 1}}, "sliminfer.bogus"),
        ({"prompt": "x", "sliminfer": {"keep_schedule": [[0, 0.2]]}}, "sliminfer.keep_schedule"),
        ({"prompt": "x", "sliminfer": {"keep_schedule": "8:0.2"}}, "sliminfer.keep_schedule"),
        ({"prompt": "x", "sliminfer": {"keep_schedule": [[9, 0.2]]}}, "sliminfer"),  # deeper than 4 layers
    ],
)
def test_bad_completion_fields_are_400_naming_the_field(client, runner, body, param):
    error = assert_error(client.post("/v1/completions", json=body), 400, param)
    assert error["type"] == "invalid_request_error"
    assert not runner.requests, "a bad request must not reach the generator"


@pytest.mark.parametrize(
    ("messages", "param"),
    [
        (None, "messages"),
        ([], "messages"),
        (["hi"], "messages[0]"),
        ([{"role": "user"}], "messages[0].content"),
        ([{"content": "hi"}], "messages[0].role"),
        ([{"role": "user", "content": [{"type": "image_url", "image_url": {"url": "x"}}]}], "messages[0].content"),
    ],
)
def test_bad_messages_are_400(client, messages, param):
    body = {} if messages is None else {"messages": messages}
    assert_error(client.post("/v1/chat/completions", json=body), 400, param)


@pytest.mark.parametrize(
    "raw", [b"{not json", b"", b"[1, 2]", b'"text"', b'{"prompt": "x", "temperature": NaN}', b"\xff\xfe{", b"[" * 100_000]
)
def test_malformed_bodies_are_400(client, raw):
    assert_error(client.post("/v1/completions", content=raw), 400)
    assert client.get("/health").status_code == 200


def test_unknown_model_is_404(client):
    error = assert_error(complete(client, model="gpt-4"), 404, "model")
    assert error["code"] == "model_not_found"
    assert_error(client.get("/v1/models/gpt-4"), 404)
    assert client.get(f"/v1/models/{FAKE_NAME}").json()["id"] == FAKE_NAME


def test_models_list(client):
    data = client.get("/v1/models").json()["data"]
    assert [(m["id"], m["object"], m["max_context"]) for m in data] == [(FAKE_NAME, "model", FAKE_CONTEXT)]


def test_unknown_route_and_method_keep_the_error_shape(client):
    assert_error(client.get("/v2/nothing"), 404)
    assert_error(client.get("/v1/completions"), 405)


@pytest.mark.parametrize("stream", [False, True])
def test_prompt_too_long_is_400_with_both_numbers(client, stream):
    error = assert_error(complete(client, prompt="w " * 100, stream=stream), 400, "prompt")
    assert error["code"] == "context_length_exceeded"
    assert "100" in error["message"] and str(FAKE_CONTEXT) in error["message"]


@pytest.mark.parametrize("stream", [False, True])
def test_generator_crash_is_500_and_the_server_keeps_serving(client, runner, stream):
    runner.fail = RuntimeError("boom")
    error = assert_error(complete(client, stream=stream), 500)
    assert error["type"] == "server_error"
    runner.fail = None
    assert complete(client).status_code == 200


def test_crash_mid_stream_ends_the_stream_with_an_error_event(client, runner):
    runner.fail, runner.fail_midway = RuntimeError("boom"), True
    data = events(complete(client, stream=True))
    assert data[0]["choices"][0]["text"] == " w0"
    assert set(data[1]["error"]) == ERROR_KEYS and data[1]["error"]["type"] == "server_error"
    assert data[2] == "[DONE]"


def test_api_key_guards_everything_but_health(make_client):
    client = make_client(api_key="sesame")
    assert client.get("/health").status_code == 200
    for path in ("/v1/models", "/metrics"):
        assert_error(client.get(path), 401)
        assert_error(client.get(path, headers={"Authorization": "Bearer wrong"}), 401)
        assert client.get(path, headers={"Authorization": "Bearer sesame"}).status_code == 200
    error = assert_error(complete(client, model="gpt-4"), 401)  # auth is checked before anything else
    assert error["code"] == "invalid_api_key"
    basic = client.post("/v1/completions", json={"prompt": "a"}, headers={"Authorization": "Basic sesame"})
    assert_error(basic, 401)
    good = client.post("/v1/completions", json={"prompt": "a"}, headers={"Authorization": "bearer sesame"})
    assert good.status_code == 200


def test_full_queue_answers_429_with_retry_after(make_client, runner):
    client = make_client(max_queue=1)
    engine = client.app.state.engine
    runner.gate.clear()
    answers: list = []
    workers = [threading.Thread(target=lambda: answers.append(complete(client))) for _ in range(2)]
    for worker in workers:
        worker.start()
    deadline = time.monotonic() + 10
    while not (engine.busy and engine.queue_depth == 1) and time.monotonic() < deadline:
        time.sleep(0.01)
    assert engine.busy and engine.queue_depth == 1, "one running and one waiting expected"
    rejected = complete(client)
    error = assert_error(rejected, 429)
    assert int(rejected.headers["Retry-After"]) >= 1 and error["code"] == "queue_full"
    runner.gate.set()
    for worker in workers:
        worker.join(timeout=10)
    assert [a.status_code for a in answers] == [200, 200]
    samples = parse_metrics(client.get("/metrics").text)
    assert samples['sliminfer_requests_total{endpoint="/v1/completions",status="200"}'] == 2
    assert samples['sliminfer_requests_total{endpoint="/v1/completions",status="429"}'] == 1
    assert samples["sliminfer_queue_depth"] == 0


def test_metrics_count_requests_and_generations(client):
    complete(client)
    complete(client, stream=True)
    complete(client, prompt=7)
    client.get("/nowhere")
    response = client.get("/metrics")
    assert response.headers["content-type"].startswith("text/plain; version=0.0.4")
    samples = parse_metrics(response.text)
    assert samples['sliminfer_requests_total{endpoint="/v1/completions",status="200"}'] == 2
    assert samples['sliminfer_requests_total{endpoint="/v1/completions",status="400"}'] == 1
    assert samples['sliminfer_requests_total{endpoint="other",status="404"}'] == 1
    assert samples['sliminfer_generations_total{finish_reason="length"}'] == 2
    assert samples['sliminfer_time_to_first_token_seconds_count{method="slim"}'] == 2
    assert samples["sliminfer_completion_tokens_total"] == 8
    assert samples['sliminfer_kept_token_fraction_sum{method="slim"}'] == 2.0


def test_client_leaving_before_the_first_token_cancels_the_job(runner):
    """`_first_event` watches the connection: a disconnect cancels the job, so it never runs."""

    async def receive():
        return {"type": "http.disconnect"}

    async def scenario():
        metrics = ServerMetrics()
        engine = Engine(runner, metrics, max_queue=1)
        runner.gate.clear()
        job = engine.submit(generation_request("a"))
        assert await _first_event(job, SimpleNamespace(receive=receive)) is None
        assert job.is_cancelled()
        engine.start()
        runner.gate.set()
        engine.stop(timeout_s=10)
        assert metrics.generations.value(finish_reason="cancelled") == 1 and not runner.requests

    asyncio.run(scenario())
