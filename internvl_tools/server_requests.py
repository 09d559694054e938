"""What ``internvl-tools serve`` accepts: its settings, OpenAI-style request parsing and error mapping.

Requests are checked here before any work (messages, image parts under the media policy and tile cap, generation
options, ``response_format``); anything refused becomes a :class:`RequestError` with an OpenAI-style error body.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from internvl_tools.errors import (
    ConfigError,
    ContextLengthError,
    InternVLError,
    MediaError,
    MediaPolicyError,
    StructuredOutputError,
    TemplateError,
)

__all__ = [
    "ChatRequest",
    "RequestError",
    "ServerSettings",
    "build_media_policy",
    "error_body",
    "error_result_to_request_error",
    "from_engine_error",
    "parse_messages",
    "parse_options",
    "parse_schema",
]


@dataclass
class ServerSettings:
    """How the server behaves; ``main`` fills it from the command line.

    ``max_tiles`` caps the tiles of one image (a request's per-image ``max_tiles`` may only lower it).
    """

    model_name: str
    aliases: tuple[str, ...] = ()
    api_key: str | None = None
    batching: bool = True
    max_batch_size: int = 8
    batch_window_ms: float = 5.0
    allow_remote_images: bool = False
    allow_private_hosts: tuple[str, ...] = ()
    max_request_bytes: int = 32 * 1024 * 1024
    max_images: int = 8
    max_tiles: int | None = None
    media_timeout: float = 10.0
    extra: dict[str, Any] = field(default_factory=dict)


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
    kind = {401: "authentication_error", 404: "not_found_error", 413: "invalid_request_error",
            429: "rate_limit_error"}.get(status, "invalid_request_error" if status < 500 else "server_error")
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


@dataclass
class ChatRequest:
    """One parsed ``/v1/chat/completions`` request: core messages, generation options and how to answer."""

    messages: list[Any]
    options: dict[str, Any]
    stream: bool
    schema: dict[str, Any] | None
    include_usage: bool


def build_media_policy(settings: ServerSettings) -> Any:
    """The :class:`~internvl_tools.media.MediaPolicy` for clients' images: never the server's own files.

    >>> build_media_policy(ServerSettings(model_name="tiny")).allow_local_files
    False
    """
    from internvl_tools.media import MediaPolicy

    return MediaPolicy(
        allow_remote=settings.allow_remote_images,
        allow_local_files=False,
        max_bytes=settings.max_request_bytes,
        timeout=settings.media_timeout,
        allow_private_hosts=frozenset(settings.allow_private_hosts),
    )


def _image_part(raw: dict[str, Any], where: str, settings: ServerSettings, policy: Any, cap: int) -> Any:
    from internvl_tools.media import load_image
    from internvl_tools.messages import ImagePart

    value = raw.get("image_url")
    url = value.get("url") if isinstance(value, dict) else value
    if not isinstance(url, str) or not url:
        raise RequestError(f"{where}: an image_url part needs {{'url': 'data:image/...;base64,...'}}.",
                           param="messages")
    scheme = url.split(":", 1)[0].lower() if ":" in url[:10] else ""
    if scheme in ("http", "https"):
        if not settings.allow_remote_images:
            raise RequestError(
                f"{where}: remote image URLs are refused by this server; send the image as a data: URI (base64), "
                "or start the server with --allow-remote-images.", code="image_refused", param="messages")
    elif scheme != "data":
        raise RequestError(f"{where}: image_url must be a data: URI (or an http(s) URL where enabled), got "
                           f"{url[:40]!r}.", code="invalid_image", param="messages")
    tiles = raw.get("max_tiles") if raw.get("max_tiles") is not None else (
        value.get("max_tiles") if isinstance(value, dict) else None)
    if tiles is not None and (not isinstance(tiles, int) or isinstance(tiles, bool) or not 1 <= tiles <= cap):
        raise RequestError(f"{where}: max_tiles must be an integer from 1 to this server's limit {cap}, got {tiles!r}.",
                           param="messages")
    try:
        image = load_image(url, policy=policy)
    except InternVLError as exc:
        raise from_engine_error(exc) from exc
    return ImagePart(image=image, max_tiles=tiles)


def parse_messages(raw: Any, settings: ServerSettings, policy: Any, cap: int) -> list[Any]:
    """OpenAI ``messages`` → core :class:`~internvl_tools.messages.Message` list (images under ``policy``, at most
    ``cap`` tiles each); raises :class:`RequestError` naming the bad field.

    >>> from internvl_tools.media import MediaPolicy
    >>> [m.role for m in parse_messages([{"role": "user", "content": "Hi"}], ServerSettings("tiny"), MediaPolicy(), 6)]
    ['user']
    """
    from internvl_tools.messages import Message, TextPart

    if not isinstance(raw, list) or not raw:
        raise RequestError("'messages' must be a non-empty list.", param="messages")
    messages, n_images = [], 0
    for i, msg in enumerate(raw):
        where = f"messages[{i}]"
        if not isinstance(msg, dict):
            raise RequestError(f"{where} must be an object with 'role' and 'content'.", param="messages")
        role = {"developer": "system"}.get(msg.get("role"), msg.get("role"))
        if role not in ("system", "user", "assistant"):
            raise RequestError(f"{where}: role must be system, user or assistant, got {msg.get('role')!r}.",
                               param="messages")
        content = msg.get("content")
        parts: list[Any] = []
        if isinstance(content, str):
            parts.append(TextPart(text=content))
        elif isinstance(content, list):
            for j, part in enumerate(content):
                kind = part.get("type") if isinstance(part, dict) else None
                if kind == "text" and isinstance(part.get("text"), str):
                    parts.append(TextPart(text=part["text"]))
                elif kind == "image_url":
                    n_images += 1
                    if n_images > settings.max_images:
                        raise RequestError(f"The request has more than {settings.max_images} images, this server's "
                                           "limit (--max-images).", param="messages")
                    parts.append(_image_part(part, f"{where}.content[{j}]", settings, policy, cap))
                else:
                    raise RequestError(f"{where}.content[{j}]: unsupported part {kind!r}; use 'text' or 'image_url'.",
                                       param="messages")
        elif content is not None:
            raise RequestError(f"{where}: content must be a string or a list of parts.", param="messages")
        messages.append(Message(role=role, content=parts))
    if messages[-1].role == "assistant":
        raise RequestError("The last message must be a user (or system) turn.", param="messages")
    return messages


def _number(body: dict[str, Any], key: str, kind: type, low: float | None = None) -> Any:
    value = body.get(key)
    if value is None:
        return None
    ok = isinstance(value, (int, float)) and not isinstance(value, bool)
    if ok and kind is int:
        ok = float(value).is_integer()
    if not ok or (low is not None and value < low):
        raise RequestError(f"'{key}' must be a {'integer' if kind is int else 'number'}"
                           f"{f' >= {low:g}' if low is not None else ''}, got {value!r}.", param=key)
    return kind(value)


def parse_options(body: dict[str, Any]) -> dict[str, Any]:
    """The engine's generation options from a request body (an omitted temperature means greedy).

    >>> parse_options({"max_tokens": 16, "stop": "END"})
    {'max_new_tokens': 16, 'temperature': 0.0, 'do_sample': False, 'stop': ['END']}
    """
    if body.get("n") not in (None, 1):
        raise RequestError("Only n=1 is supported.", param="n")
    for unsupported in ("tools", "functions", "logprobs", "top_logprobs"):
        if body.get(unsupported):
            raise RequestError(f"'{unsupported}' is not supported by this server; leave it out of the request.",
                               param=unsupported)
    options: dict[str, Any] = {}
    max_tokens = _number(body, "max_completion_tokens", int, 1)
    if max_tokens is None:
        max_tokens = _number(body, "max_tokens", int, 1)
    if max_tokens is not None:
        options["max_new_tokens"] = max_tokens
    temperature = _number(body, "temperature", float, 0)
    # Unlike OpenAI (default 1.0), an omitted temperature means greedy decoding, as the local engine does.
    options["temperature"] = temperature or 0.0
    options["do_sample"] = bool(temperature and temperature > 0)
    if options["do_sample"]:
        for key, kind in (("top_p", float), ("top_k", int)):
            value = _number(body, key, kind, 0)
            if value is not None and not (key == "top_k" and value <= 0):
                options[key] = value
    penalty = _number(body, "repetition_penalty", float, 0)
    if penalty is not None:
        options["repetition_penalty"] = penalty
    seed = _number(body, "seed", int)
    if seed is not None:
        options["seed"] = seed
    stop = body.get("stop")
    if isinstance(stop, str):
        stop = [stop]
    if stop is not None:
        if not isinstance(stop, list) or not all(isinstance(s, str) for s in stop) or len(stop) > 8:
            raise RequestError("'stop' must be a string or a list of up to 8 strings.", param="stop")
        if stop:
            options["stop"] = stop
    return options


def parse_schema(body: dict[str, Any]) -> dict[str, Any] | None:
    """The JSON schema that ``response_format`` asks for, or ``None`` for free text.

    >>> parse_schema({"response_format": {"type": "json_object"}})
    {'type': 'object'}
    """
    fmt = body.get("response_format")
    if fmt is None:
        return None
    kind = fmt.get("type") if isinstance(fmt, dict) else None
    if kind == "text":
        return None
    if kind == "json_object":
        return {"type": "object"}
    if kind == "json_schema":
        spec = fmt.get("json_schema")
        schema = spec.get("schema") if isinstance(spec, dict) else None
        if not isinstance(schema, dict) or not schema:
            raise RequestError("response_format.json_schema.schema must be a non-empty JSON schema object.",
                               param="response_format")
        return schema
    raise RequestError("response_format.type must be 'text', 'json_object' or 'json_schema'.", param="response_format")
