"""Errors that sliminfer raises on bad input.

Every `UserError` carries a one-line message naming the bad value and what is allowed; the CLI
turns it into exit code 2 and the server into an OpenAI-style 4xx answer.
"""

from __future__ import annotations


class SlimError(Exception):
    """Base class of every error sliminfer raises on purpose."""


class UserError(SlimError, ValueError):
    """The caller asked for something invalid; the message says what and what is allowed."""


class ConfigError(UserError):
    """A `SlimConfig` value is out of range or unknown."""


class UnsupportedModelError(UserError):
    """The model's architecture is not one sliminfer can drive."""


class ModelNotFoundError(UserError):
    """A model path does not exist or holds no loadable model."""


class PromptTooLongError(UserError):
    """The prompt (plus requested new tokens) exceeds the model's context length."""

    def __init__(self, prompt_tokens: int, max_tokens: int, detail: str = "") -> None:
        self.prompt_tokens = prompt_tokens
        self.max_tokens = max_tokens
        extra = f" {detail}" if detail else ""
        super().__init__(
            f"prompt is {prompt_tokens} tokens but the model's context is {max_tokens} tokens.{extra}"
        )


class HostMemoryError(UserError):
    """`kv_offload="cpu"` needs more host memory than the machine has available."""


class EmptyPromptError(UserError):
    """The prompt tokenizes to nothing."""

    def __init__(self) -> None:
        super().__init__("prompt is empty: give at least one token of text")
