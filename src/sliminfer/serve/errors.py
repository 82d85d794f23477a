"""HTTP errors in OpenAI's shape: `{"error": {"message", "type", "param", "code"}}`.

Every answer the server gives on failure goes through `APIError`, so clients written for
OpenAI (which read `error.message` and branch on the status) understand it.
"""

from __future__ import annotations

from typing import Any

from ..errors import EmptyPromptError, PromptTooLongError, UserError

INVALID_REQUEST = "invalid_request_error"


class APIError(Exception):
    """An error answer: HTTP status plus OpenAI's error fields."""

    def __init__(
        self,
        status: int,
        message: str,
        *,
        type: str = INVALID_REQUEST,
        param: str | None = None,
        code: str | None = None,
        headers: dict[str, str] | None = None,
    ) -> None:
        super().__init__(message)
        self.status = status
        self.message = message
        self.type = type
        self.param = param
        self.code = code
        self.headers = headers or {}

    def body(self) -> dict[str, Any]:
        return {"error": {"message": self.message, "type": self.type, "param": self.param, "code": self.code}}


def bad_request(message: str, param: str | None = None) -> APIError:
    return APIError(400, message, param=param, code="invalid_value" if param else None)


def from_generation_error(exc: BaseException, prompt_param: str) -> APIError:
    """Map an exception raised by the generator to an answer: user errors 400, the rest 500."""
    if isinstance(exc, PromptTooLongError):
        return APIError(400, str(exc), param=prompt_param, code="context_length_exceeded")
    if isinstance(exc, EmptyPromptError):
        return APIError(400, str(exc), param=prompt_param)
    if isinstance(exc, UserError):
        return APIError(400, str(exc))
    return APIError(500, f"internal error: {type(exc).__name__}: {exc}", type="server_error")
