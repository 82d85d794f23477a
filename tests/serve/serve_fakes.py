"""Test doubles for the server tests: a fake generator and loaded model, a Prometheus text parser."""

from __future__ import annotations

import re
import threading
from collections.abc import Callable
from types import SimpleNamespace

from sliminfer.config import SlimConfig
from sliminfer.errors import PromptTooLongError
from sliminfer.generate import GenerationResult
from sliminfer.serve.schemas import GenerationRequest

FAKE_NAME = "fake-model"
FAKE_CONTEXT = 64
FAKE_LAYERS = 4
FAKE_VOCAB = 100
FAKE_CONFIG = SlimConfig(preserve_layers=1, keep_schedule=((1, 0.5),))
SAMPLE = re.compile(r"^([a-zA-Z_:][a-zA-Z0-9_:]*)(\{[^{}]*\})? (\S+)$")


class FakeRunner:
    """Stands in for the model: answers ' w0 w1 w2 ...', one word per token.

    Prompt tokens are counted as words (or messages' words, or ids). `gate` holds every
    generation until set, to fill the queue; `fail` makes the next generations raise it, before
    any text or, with `fail_midway`, after the first piece.
    """

    def __init__(self) -> None:
        self.gate = threading.Event()
        self.gate.set()
        self.fail: Exception | None = None
        self.fail_midway = False
        self.requests: list[GenerationRequest] = []

    def __call__(
        self, request: GenerationRequest, on_text: Callable[[str], None] | None, should_stop: Callable[[], bool]
    ) -> GenerationResult:
        self.requests.append(request)
        if not self.gate.wait(timeout=30):
            raise TimeoutError("test gate never opened")
        if self.fail is not None and not self.fail_midway:
            raise self.fail
        prompt_tokens = _count_tokens(request.prompt)
        if prompt_tokens > FAKE_CONTEXT:
            raise PromptTooLongError(prompt_tokens, FAKE_CONTEXT)
        text, finish_reason = "", "length"
        for i in range(request.max_tokens):
            if should_stop():
                finish_reason = "cancelled"
                break
            candidate = text + f" w{i}"
            cut = min((candidate.find(s) for s in request.stop if s in candidate), default=None)
            delta, text = candidate[len(text) : cut], candidate[:cut]
            if on_text is not None and delta:
                on_text(delta)
            if self.fail is not None:
                raise self.fail
            if cut is not None:
                finish_reason = "stop"
                break
        new_tokens = len(text.split())
        return GenerationResult(
            text=text, token_ids=list(range(new_tokens)), prompt_tokens=prompt_tokens, new_tokens=new_tokens,
            finish_reason=finish_reason, ttft_s=0.01, total_s=0.02, decode_ms_per_token=1.0,
            method=request.method, config=request.config.to_dict(),
            kept_tokens_per_layer=[prompt_tokens] * FAKE_LAYERS, kv_cache_bytes=1024 * prompt_tokens,
        )


def _count_tokens(prompt: object) -> int:
    if isinstance(prompt, str):
        return len(prompt.split())
    if prompt and isinstance(prompt[0], dict):
        return sum(len(m["content"].split()) for m in prompt)
    return len(prompt)


def fake_loaded() -> SimpleNamespace:
    """The few attributes of a `LoadedModel` the app reads."""
    config = SimpleNamespace(num_hidden_layers=FAKE_LAYERS, vocab_size=FAKE_VOCAB)
    return SimpleNamespace(name=FAKE_NAME, max_context=FAKE_CONTEXT, model=SimpleNamespace(config=config))


def parse_metrics(text: str) -> dict[str, float]:
    """Samples of a Prometheus text exposition, keyed `name{labels}` as written; checks the syntax."""
    samples: dict[str, float] = {}
    for line in text.splitlines():
        if line.startswith("# HELP ") or line.startswith("# TYPE "):
            continue
        match = SAMPLE.match(line)
        assert match, f"not a Prometheus sample line: {line!r}"
        samples[match.group(1) + (match.group(2) or "")] = float(match.group(3))
    return samples


def generation_request(prompt: str, max_tokens: int = 3) -> GenerationRequest:
    """A validated request as the engine receives it (greedy, not streamed)."""
    return GenerationRequest(prompt=prompt, chat=False, method="slim", config=FAKE_CONFIG, max_tokens=max_tokens,
                             temperature=0.0, top_p=1.0, seed=None, stop=(), stream=False, include_usage=False)
