"""The FastAPI app: routes, authentication, error shapes and the bridge to the model thread.

`create_app` takes the loaded model and a `runner` (default: the real generator), so tests can
serve a fake generator through the same app. Request handling never touches the model: it
validates, admits a job to the `Engine`, and awaits the job's events while also watching for the
client to disconnect, which cancels the job.
"""

from __future__ import annotations

import asyncio
import hmac
import json
import time
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from typing import Any

from fastapi import APIRouter, Depends, FastAPI, Request
from fastapi.responses import JSONResponse, PlainTextResponse, Response, StreamingResponse
from starlette.exceptions import HTTPException
from starlette.requests import ClientDisconnect
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from ..config import SlimConfig
from . import responses
from .engine import (
    DEFAULT_MAX_QUEUE,
    DONE,
    ERROR,
    TEXT,
    Engine,
    Event,
    Job,
    QueueFullError,
    Runner,
    model_runner,
)
from .errors import APIError, bad_request, from_generation_error
from .prometheus import CONTENT_TYPE, ServerMetrics
from .schemas import GenerationRequest, ModelInfo, parse_chat, parse_completion

SHUTDOWN_TIMEOUT_S = 10.0
CLIENT_CLOSED_REQUEST = 499
"""Status recorded (nginx's convention) when the client left before the answer started."""
ENDPOINTS = ("/health", "/metrics", "/v1/models", "/v1/completions", "/v1/chat/completions")


def create_app(
    loaded: Any,
    base_config: SlimConfig,
    api_key: str | None = None,
    max_queue: int = DEFAULT_MAX_QUEUE,
    runner: Runner | None = None,
) -> FastAPI:
    """An app serving `loaded` (a `LoadedModel`, or any object with its `.name`, `.max_context`,
    `.model.config`) with `base_config` as the default for every request."""
    config = loaded.model.config
    info = ModelInfo(loaded.name, base_config, config.num_hidden_layers, config.vocab_size)
    metrics = ServerMetrics()
    engine = Engine(runner or model_runner(loaded), metrics, max_queue)
    started = int(time.time())

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        engine.start()
        yield
        await asyncio.to_thread(engine.stop, SHUTDOWN_TIMEOUT_S)

    app = FastAPI(title="sliminfer", lifespan=lifespan, docs_url=None, redoc_url=None, openapi_url=None)
    app.state.engine, app.state.metrics = engine, metrics
    app.add_middleware(RequestCounter, metrics=metrics)
    app.add_exception_handler(APIError, _api_error)
    app.add_exception_handler(HTTPException, _http_error)
    app.add_exception_handler(Exception, _internal_error)

    @app.get("/health")
    async def health() -> dict[str, Any]:
        return {"status": "ok", "model": info.name, "queue_depth": engine.queue_depth, "busy": engine.busy}

    router = APIRouter(dependencies=[Depends(_bearer_check(api_key))] if api_key else [])

    def model_card() -> dict[str, Any]:
        return {"id": info.name, "object": "model", "created": started, "owned_by": "sliminfer",
                "max_context": loaded.max_context}

    @router.get("/v1/models")
    async def models() -> dict[str, Any]:
        return {"object": "list", "data": [model_card()]}

    @router.get("/v1/models/{model:path}")
    async def retrieve_model(model: str) -> dict[str, Any]:
        if not info.accepts(model):
            raise APIError(404, f"model {model!r} does not exist", param="model", code="model_not_found")
        return model_card()

    @router.get("/metrics")
    async def prometheus() -> Response:
        return PlainTextResponse(metrics.render(), media_type=CONTENT_TYPE)

    @router.post("/v1/completions")
    async def completions(request: Request) -> Response:
        return await _serve(request, parse_completion(await _json_body(request), info), engine, info.name)

    @router.post("/v1/chat/completions")
    async def chat_completions(request: Request) -> Response:
        return await _serve(request, parse_chat(await _json_body(request), info), engine, info.name)

    app.include_router(router)
    return app


async def _serve(request: Request, req: GenerationRequest, engine: Engine, model_name: str) -> Response:
    """Admit, wait for the first event (so errors still get their status), then answer or stream."""
    try:
        job = engine.submit(req)
    except QueueFullError as exc:
        raise APIError(429, str(exc), type="rate_limit_error", code="queue_full",
                       headers={"Retry-After": str(exc.retry_after_s)}) from None
    first = await _first_event(job, request)
    if first is None:
        return Response(status_code=CLIENT_CLOSED_REQUEST)
    if first.kind == ERROR:
        raise from_generation_error(first.value, req.prompt_param)
    answer = responses.Answer(model_name, req.chat)
    if not req.stream:
        return JSONResponse(responses.body(answer, first.value, job.queue_s))
    return JobStream(_events(job, first, answer, req), job)


async def _first_event(job: Job, request: Request) -> Event | None:
    """The job's first event, or None if the client disconnected first (the job is then cancelled)."""
    event = asyncio.ensure_future(job.events.get())
    gone = asyncio.ensure_future(_disconnected(request.receive))
    try:
        await asyncio.wait({event, gone}, return_when=asyncio.FIRST_COMPLETED)
    finally:
        gone.cancel()
        if not event.done():
            event.cancel()
            job.cancel()
    return event.result() if event.done() and not event.cancelled() else None


async def _disconnected(receive: Receive) -> None:
    while (await receive())["type"] != "http.disconnect":
        pass


async def _events(job: Job, event: Event, answer: responses.Answer, req: GenerationRequest):
    """Server-sent events in OpenAI's chunk format, ending with `data: [DONE]`."""
    if answer.chat:
        yield responses.sse(responses.chunk(answer))
    while event.kind == TEXT:
        yield responses.sse(responses.chunk(answer, event.value))
        event = await job.events.get()
    if event.kind == DONE:
        yield responses.sse(responses.last_chunk(answer, event.value, job.queue_s))
        if req.include_usage:
            yield responses.sse(responses.usage_chunk(answer, event.value))
    else:
        yield responses.sse(from_generation_error(event.value, req.prompt_param).body())
    yield responses.DONE_EVENT


class JobStream(StreamingResponse):
    """A stream that cancels its job however it ends (done, error, or client disconnect)."""

    def __init__(self, content: Any, job: Job) -> None:
        super().__init__(content, media_type="text/event-stream", headers={"Cache-Control": "no-cache"})
        self.job = job

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        try:
            await super().__call__(scope, receive, send)
        finally:
            self.job.cancel()


async def _json_body(request: Request) -> Any:
    try:
        raw = await request.body()
        return json.loads(raw, parse_constant=_reject_constant)
    except ClientDisconnect:
        raise bad_request("client disconnected while sending the body") from None
    except (ValueError, RecursionError) as exc:
        raise bad_request(f"request body is not valid JSON: {exc}") from None


def _reject_constant(name: str) -> None:
    raise ValueError(f"{name} is not a JSON number")


def _bearer_check(api_key: str) -> Callable[[Request], None]:
    expected = api_key.encode()

    def check(request: Request) -> None:
        scheme, _, token = request.headers.get("authorization", "").partition(" ")
        if scheme.lower() != "bearer" or not hmac.compare_digest(token.strip().encode(), expected):
            raise APIError(401, "invalid API key: send the header 'Authorization: Bearer KEY'",
                           code="invalid_api_key")

    return check


def _error_response(error: APIError) -> JSONResponse:
    return JSONResponse(error.body(), status_code=error.status, headers=error.headers)


async def _api_error(request: Request, exc: APIError) -> Response:
    return _error_response(exc)


async def _http_error(request: Request, exc: HTTPException) -> Response:
    """Routing errors (unknown path 404, wrong method 405) in OpenAI's shape."""
    return _error_response(APIError(exc.status_code, str(exc.detail), headers=dict(exc.headers or {})))


async def _internal_error(request: Request, exc: Exception) -> Response:
    """A bug answered as a 500 in OpenAI's shape; Starlette re-raises it so uvicorn logs it."""
    return _error_response(APIError(500, f"internal error: {type(exc).__name__}", type="server_error"))


class RequestCounter:
    """ASGI middleware counting answers by endpoint and status, when the answer starts."""

    def __init__(self, app: ASGIApp, metrics: ServerMetrics) -> None:
        self.app = app
        self.metrics = metrics

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        endpoint = scope["path"] if scope["path"] in ENDPOINTS else "other"
        started = False

        async def counting_send(message: Message) -> None:
            nonlocal started
            if message["type"] == "http.response.start" and not started:
                started = True
                self.metrics.requests.inc(endpoint=endpoint, status=message["status"])
            await send(message)

        try:
            await self.app(scope, receive, counting_send)
        except Exception:
            if not started:
                self.metrics.requests.inc(endpoint=endpoint, status=500)
            raise
