"""OpenAI response bodies and server-sent-event chunks, built from a `GenerationResult`.

The result is duck-typed (text, prompt_tokens, new_tokens, finish_reason, timings, kept tokens,
KV bytes) so the unit tests can drive the app with a fake generator.
"""

from __future__ import annotations

import json
import time
import uuid
from dataclasses import dataclass, field
from typing import Any

DONE_EVENT = "data: [DONE]\n\n"


@dataclass(frozen=True)
class Answer:
    """The identity every chunk of one response repeats."""

    model: str
    chat: bool
    id: str = ""
    created: int = field(default_factory=lambda: int(time.time()))

    def __post_init__(self) -> None:
        if not self.id:
            prefix = "chatcmpl" if self.chat else "cmpl"
            object.__setattr__(self, "id", f"{prefix}-{uuid.uuid4().hex}")

    def head(self, stream: bool) -> dict[str, Any]:
        kind = ("chat.completion.chunk" if stream else "chat.completion") if self.chat else "text_completion"
        return {"id": self.id, "object": kind, "created": self.created, "model": self.model}


def usage(result: Any) -> dict[str, int]:
    return {
        "prompt_tokens": result.prompt_tokens,
        "completion_tokens": result.new_tokens,
        "total_tokens": result.prompt_tokens + result.new_tokens,
    }


def sliminfer_field(result: Any, queue_s: float) -> dict[str, Any]:
    """What sliminfer adds to every answer: timings (model side, plus queue wait) and pruning
    (`pruned` is false for a slim prompt below `min_prompt_tokens`; `finish_detail` says when the
    context, not `max_tokens`, ended the answer)."""
    return {
        "ttft_s": result.ttft_s,
        "queue_s": queue_s,
        "total_s": result.total_s,
        "decode_ms_per_token": result.decode_ms_per_token,
        "kept_tokens_per_layer": list(result.kept_tokens_per_layer),
        "kv_cache_bytes": result.kv_cache_bytes,
        "method": result.method,
        "pruned": result.pruned,
        "finish_detail": result.finish_detail,
        "config": result.config,
    }


def body(answer: Answer, result: Any, queue_s: float) -> dict[str, Any]:
    """A complete (non-streamed) completion or chat completion."""
    if answer.chat:
        choice = {"index": 0, "message": {"role": "assistant", "content": result.text}}
    else:
        choice = {"index": 0, "text": result.text}
    choice |= {"logprobs": None, "finish_reason": result.finish_reason}
    return answer.head(False) | {
        "choices": [choice],
        "usage": usage(result),
        "sliminfer": sliminfer_field(result, queue_s),
    }


def chunk(answer: Answer, text: str | None = None, finish_reason: str | None = None) -> dict[str, Any]:
    """One stream chunk. For chat, `text=None` with no finish reason is the opening role chunk."""
    if answer.chat:
        if text is None and finish_reason is None:
            delta: dict[str, Any] = {"role": "assistant", "content": ""}
        else:
            delta = {} if text is None else {"content": text}
        choice = {"index": 0, "delta": delta}
    else:
        choice = {"index": 0, "text": text or ""}
    choice |= {"logprobs": None, "finish_reason": finish_reason}
    return answer.head(True) | {"choices": [choice]}


def last_chunk(answer: Answer, result: Any, queue_s: float) -> dict[str, Any]:
    """The chunk carrying the finish reason, and sliminfer's timings and pruning."""
    return chunk(answer, finish_reason=result.finish_reason) | {"sliminfer": sliminfer_field(result, queue_s)}


def usage_chunk(answer: Answer, result: Any) -> dict[str, Any]:
    """Sent after the last chunk when the client asked `stream_options.include_usage`."""
    return answer.head(True) | {"choices": [], "usage": usage(result)}


def sse(data: dict[str, Any]) -> str:
    return f"data: {json.dumps(data)}\n\n"
