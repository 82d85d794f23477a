"""Validation of OpenAI request bodies into one `GenerationRequest`.

Written by hand rather than with pydantic models so that each message names the field the way
the client sent it (`messages[2].content`, `sliminfer.keep_schedule`) and every failure is a 400
in OpenAI's error shape. Fields outside the honoured set are ignored, as OpenAI-compatible
servers do, so clients that send `n`, `user`, `logprobs`, ... keep working.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

from ..config import SlimConfig
from ..errors import ConfigError, UserError
from ..methods import GENERATE_KINDS, parse_method
from .errors import APIError, bad_request

DEFAULT_ALIAS = "default"
COMPLETION_MAX_TOKENS = 16
"""OpenAI's default `max_tokens` for /v1/completions."""
CHAT_MAX_TOKENS = 512
"""Default for /v1/chat/completions. OpenAI's is "up to the context", too long for a CPU server."""
MAX_TEMPERATURE = 2.0

Prompt = str | list[int] | list[dict[str, str]]


@dataclass(frozen=True)
class ModelInfo:
    """What validation needs to know about the one served model."""

    name: str
    base_config: SlimConfig
    num_layers: int
    vocab_size: int

    def accepts(self, model: str) -> bool:
        return model in (self.name, DEFAULT_ALIAS)


@dataclass(frozen=True)
class GenerationRequest:
    """One validated completion or chat request, independent of HTTP."""

    prompt: Prompt
    chat: bool
    method: str
    config: SlimConfig
    max_tokens: int
    temperature: float
    top_p: float
    seed: int | None
    stop: tuple[str, ...]
    stream: bool
    include_usage: bool

    @property
    def prompt_param(self) -> str:
        return "messages" if self.chat else "prompt"


def parse_completion(body: Any, info: ModelInfo) -> GenerationRequest:
    """Validate a /v1/completions body; raises `APIError` (400, or 404 for the model)."""
    body = _common(body, info)
    return _request(body, info, prompt=_completion_prompt(body, info), chat=False,
                    max_tokens=_opt_int(body, "max_tokens", COMPLETION_MAX_TOKENS, 1))


def parse_chat(body: Any, info: ModelInfo) -> GenerationRequest:
    """Validate a /v1/chat/completions body; `max_completion_tokens` wins over `max_tokens`."""
    body = _common(body, info)
    max_tokens = _opt_int(body, "max_tokens", CHAT_MAX_TOKENS, 1)
    max_tokens = _opt_int(body, "max_completion_tokens", max_tokens, 1)
    return _request(body, info, prompt=_messages(body), chat=True, max_tokens=max_tokens)


def _common(body: Any, info: ModelInfo) -> dict[str, Any]:
    if not isinstance(body, dict):
        raise bad_request(f"request body must be a JSON object, got {_kind(body)}")
    model = body.get("model")
    if model is not None:
        if not isinstance(model, str):
            raise bad_request(f"'model' must be a string, got {_kind(model)}", "model")
        if not info.accepts(model):
            raise APIError(
                404,
                f"model {model!r} does not exist: this server serves {info.name!r} (alias {DEFAULT_ALIAS!r})",
                param="model",
                code="model_not_found",
            )
    return body


def _request(
    body: dict[str, Any], info: ModelInfo, *, prompt: Prompt, chat: bool, max_tokens: int
) -> GenerationRequest:
    method, config = parse_overrides(body.get("sliminfer"), info)
    stream = _opt_bool(body, "stream", False)
    options = body.get("stream_options")
    if options is not None and not isinstance(options, dict):
        raise bad_request(f"'stream_options' must be an object, got {_kind(options)}", "stream_options")
    include_usage = _opt_bool(options or {}, "include_usage", False, "stream_options.include_usage")
    seed = body.get("seed")
    if seed is not None and not _is_int(seed):
        raise bad_request(f"'seed' must be an integer, got {_kind(seed)}", "seed")
    return GenerationRequest(
        prompt=prompt,
        chat=chat,
        method=method,
        config=config,
        max_tokens=max_tokens,
        temperature=_opt_number(body, "temperature", 1.0, 0.0, MAX_TEMPERATURE),
        top_p=_opt_number(body, "top_p", 1.0, 0.0, 1.0, low_open=True),
        seed=seed,
        stop=_stop(body.get("stop")),
        stream=stream,
        include_usage=include_usage,
    )


def parse_overrides(value: Any, info: ModelInfo) -> tuple[str, SlimConfig]:
    """The per-request `sliminfer` object: `method` (`slim`, `full` or `slim[key=value;...]`, the
    grammar of `sliminfer.methods`) plus any `SlimConfig` knobs on top."""
    if value is None:
        return GENERATE_KINDS[0], info.base_config
    if not isinstance(value, dict):
        raise bad_request(f"'sliminfer' must be an object, got {_kind(value)}", "sliminfer")
    knobs = dict(value)
    spec = knobs.pop("method", GENERATE_KINDS[0])
    if not isinstance(spec, str):
        raise bad_request(f"sliminfer.method must be a string, got {_kind(spec)}", "sliminfer.method")
    try:
        method = parse_method(spec, info.base_config, source="sliminfer.method")
    except UserError as exc:
        raise bad_request(str(exc), "sliminfer.method") from None
    base = method.config or info.base_config
    for key, knob in knobs.items():
        try:
            SlimConfig.from_dict({key: knob}, base=base)
        except ConfigError as exc:
            raise bad_request(f"sliminfer.{key}: {exc}", f"sliminfer.{key}") from None
        except TypeError:
            raise bad_request(f"sliminfer.{key}={knob!r}: wrong type", f"sliminfer.{key}") from None
    try:
        config = SlimConfig.from_dict(knobs, base=base)
        config.check_model(info.num_layers)
    except (ConfigError, TypeError) as exc:
        raise bad_request(f"sliminfer: {exc}", "sliminfer") from None
    return method.kind, config


def _completion_prompt(body: dict[str, Any], info: ModelInfo) -> str | list[int]:
    """`prompt` as text, token ids, or a batch of exactly one of those."""
    if "prompt" not in body:
        raise bad_request("'prompt' is required", "prompt")
    prompt = body["prompt"]
    if isinstance(prompt, list) and prompt and isinstance(prompt[0], (str, list)):
        if len(prompt) != 1:
            raise bad_request(f"'prompt' holds {len(prompt)} prompts: this server takes one per request", "prompt")
        prompt = prompt[0]
    if isinstance(prompt, str):
        return prompt
    if isinstance(prompt, list) and all(_is_int(t) and 0 <= t < info.vocab_size for t in prompt):
        return prompt
    raise bad_request(f"'prompt' must be a string or a list of token ids in [0, {info.vocab_size})", "prompt")


def _messages(body: dict[str, Any]) -> list[dict[str, str]]:
    """OpenAI messages with string content; text parts are joined, other parts rejected."""
    if "messages" not in body:
        raise bad_request("'messages' is required", "messages")
    messages = body["messages"]
    if not isinstance(messages, list) or not messages:
        raise bad_request("'messages' must be a non-empty list of {role, content} objects", "messages")
    out = []
    for i, message in enumerate(messages):
        param = f"messages[{i}]"
        if not isinstance(message, dict):
            raise bad_request(f"{param} must be an object, got {_kind(message)}", param)
        role, content = message.get("role"), message.get("content")
        if not isinstance(role, str) or not role:
            raise bad_request(f"{param}.role must be a non-empty string", f"{param}.role")
        if isinstance(content, list):
            content = _text_parts(content, f"{param}.content")
        if not isinstance(content, str):
            raise bad_request(f"{param}.content must be a string, got {_kind(content)}", f"{param}.content")
        out.append({"role": role, "content": content})
    return out


def _text_parts(parts: list[Any], param: str) -> str:
    texts = []
    for part in parts:
        if not (isinstance(part, dict) and part.get("type") == "text" and isinstance(part.get("text"), str)):
            raise bad_request(f"{param}: only text parts ({{'type': 'text', 'text': ...}}) are supported", param)
        texts.append(part["text"])
    return "".join(texts)


def _stop(value: Any) -> tuple[str, ...]:
    stops = [value] if isinstance(value, str) else value
    if stops is None:
        return ()
    if not isinstance(stops, list) or not all(isinstance(s, str) and s for s in stops):
        raise bad_request("'stop' must be a non-empty string or a list of non-empty strings", "stop")
    return tuple(stops)


def _opt_int(body: dict[str, Any], key: str, default: int, minimum: int) -> int:
    value = body.get(key)
    if value is None:
        return default
    if not _is_int(value) or value < minimum:
        raise bad_request(f"'{key}' must be an integer >= {minimum}, got {value!r}", key)
    return value


def _opt_number(
    body: dict[str, Any], key: str, default: float, low: float, high: float, low_open: bool = False
) -> float:
    value = body.get(key)
    if value is None:
        return default
    ok = _is_number(value) and (value > low if low_open else value >= low) and value <= high
    if not ok:
        bounds = f"{'(' if low_open else '['}{low:g}, {high:g}]"
        raise bad_request(f"'{key}' must be a number in {bounds}, got {value!r}", key)
    return float(value)


def _opt_bool(body: dict[str, Any], key: str, default: bool, param: str | None = None) -> bool:
    value = body.get(key)
    if value is None:
        return default
    if not isinstance(value, bool):
        raise bad_request(f"'{param or key}' must be true or false, got {value!r}", param or key)
    return value


def _is_int(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _is_number(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)


def _kind(value: Any) -> str:
    """The JSON name of a value's type, for messages."""
    names = {dict: "object", list: "array", str: "string", bool: "boolean", type(None): "null"}
    return names.get(type(value), "number")
