"""How the server says no: :class:`RequestError` (a refusal with its HTTP status), OpenAI-style error bodies, and
the mapping of engine errors and failed batch items onto HTTP answers (the caller's fault: 400; ours: 500).
"""

from __future__ import annotations

from typing import Any

from internvl_tools.errors import (
    ConfigError,
    ContextLengthError,
    MediaError,
    MediaPolicyError,
    StructuredOutputError,
    TemplateError,
)

__all__ = ["RequestError", "error_body", "error_result_to_request_error", "from_engine_error"]


class RequestError(Exception):
    """A request the server refuses: becomes an OpenAI-style error body with ``status``."""

    def __init__(self, message: str, status: int = 400, code: str | None = None, param: str | None = None):
        super().__init__(message)
        self.status, self.code, self.param = status, code, param


def error_body(message: str, status: int, code: str | None = None, param: str | None = None) -> dict[str, Any]:
    """The OpenAI-style JSON error body for ``status``.

    >>> error_body("Only n=1 is supported.", 400, param="n")["error"]["type"]
    'invalid_request_error'
    """
    kind = {
        401: "authentication_error",
        404: "not_found_error",
        413: "invalid_request_error",
        429: "rate_limit_error",
    }.get(status, "invalid_request_error" if status < 500 else "server_error")
    return {"error": {"message": message, "type": kind, "param": param, "code": code}}


def from_engine_error(exc: BaseException) -> RequestError:
    """Map an engine error to the HTTP answer: the caller's fault (400) or ours (500).

    >>> err = from_engine_error(ContextLengthError("prompt too long"))
    >>> err.status, err.code
    (400, 'context_length_exceeded')
    """
    text = f"{type(exc).__name__}: {exc}"
    if isinstance(exc, ContextLengthError):
        return RequestError(text, 400, "context_length_exceeded")
    if isinstance(exc, MediaPolicyError):
        return RequestError(text, 400, "image_refused")
    if isinstance(exc, MediaError):
        return RequestError(text, 400, "invalid_image")
    if isinstance(exc, (ConfigError, TemplateError, StructuredOutputError, ValueError)):
        return RequestError(text, 400, "invalid_request")
    return RequestError(text, 500, "generation_failed")


def error_result_to_request_error(error: str | None) -> RequestError:
    """The HTTP answer for a batch item that came back with ``ChatResult.error`` set (``"<ErrorType>: ..."``).

    >>> error_result_to_request_error("URLBlockedError: 10.0.0.1 is private").code
    'image_refused'
    """
    error = error or "the request could not be answered"
    if error.startswith("ContextLengthError"):
        return RequestError(error, 400, "context_length_exceeded")
    if error.startswith(("RemoteFetchDisabledError", "URLBlockedError", "PathNotAllowedError")):
        return RequestError(error, 400, "image_refused")
    return RequestError(error, 400, "invalid_request")
