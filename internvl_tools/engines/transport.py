"""The server client's HTTP layer, for servers it does not trust: one deadline, counted bytes, bounded lines.

:class:`~internvl_tools.engines.remote.RemoteInternVL` reads whatever an OpenAI-compatible server sends, so it
bounds it the way :mod:`internvl_tools.media.fetch` bounds an image download:

- **Bytes.** Bodies are read raw and counted as they arrive (:func:`read_body`, :func:`iter_lines`), against a cap
  on the whole answer and one on each line of an event stream. The client asks for ``Accept-Encoding: identity``
  and :func:`check_encoding` refuses any other ``Content-Encoding``: vLLM, LMDeploy and ``internvl-tools serve``
  send plain bodies, a proxy in between honours the header, and a few kilobytes of gzip, brotli or zstd can decode
  to gigabytes (httpx decodes each received chunk whole, so counting decoded bytes would come too late).
- **Time.** httpx's timeouts bound each socket operation, so a server that drips a byte at a time keeps a call
  alive for ever. :class:`DeadlineTransport` gives every connect, TLS handshake, write and read only the time left
  before the deadline of the current :func:`deadline_scope` (httpcore's documented network-backend interface), so
  headers dripped forever end on time too. With another transport (tests, proxies), :func:`iter_raw` still checks
  the deadline between chunks.

A limit raises :class:`~internvl_tools.errors.ServerError` naming the option that raises it; a deadline surfaces
as an ``httpx.TimeoutException`` for the caller to report along with its other transport failures. What the
server says is read defensively too: :func:`chat_result` and :class:`StreamAnswer` turn any JSON that is not an
OpenAI chat completion (or chunk) into a :class:`ServerError`, never a ``KeyError`` or a validation error.

>>> list(iter_lines([b"data: 1\\r\\n", b"\\ndata:", b" 2\\n\\n"], max_line_bytes=64, max_total_bytes=1024))
['data: 1', '', 'data: 2', '']
>>> parse_json(b'{"a": 1}', "GET /v1/models")
{'a': 1}
"""

from __future__ import annotations

import contextlib
import json
import math
import ssl
import time
from collections.abc import Callable, Iterable, Iterator
from contextvars import ContextVar
from dataclasses import dataclass, field
from typing import Any

import httpcore
import httpx

from internvl_tools.errors import ServerConnectionError, ServerError
from internvl_tools.results import ChatResult, Usage

__all__ = [
    "DeadlineTransport",
    "StreamAnswer",
    "chat_result",
    "check_encoding",
    "deadline_scope",
    "error_message",
    "iter_lines",
    "iter_raw",
    "parse_json",
    "read_body",
]

_DEADLINE: ContextVar[float | None] = ContextVar("internvl_tools_http_deadline", default=None)


@contextlib.contextmanager
def deadline_scope(deadline: float | None) -> Iterator[None]:
    """Bound every socket operation of a :class:`DeadlineTransport` run in this context by ``deadline`` (a
    :func:`time.monotonic` instant; ``None``: only the per-operation timeouts)."""
    token = _DEADLINE.set(deadline)
    try:
        yield
    finally:
        _DEADLINE.reset(token)


def _left(timeout: float | None, error: type[Exception]) -> float | None:
    deadline = _DEADLINE.get()
    if deadline is None:
        return timeout
    left = deadline - time.monotonic()
    if left <= 0:
        raise error("the call's deadline passed")
    return left if timeout is None else min(timeout, left)


class _DeadlineStream(httpcore.NetworkStream):
    def __init__(self, inner: httpcore.NetworkStream) -> None:
        self._inner = inner

    def read(self, max_bytes: int, timeout: float | None = None) -> bytes:
        return self._inner.read(max_bytes, _left(timeout, httpcore.ReadTimeout))

    def write(self, buffer: bytes, timeout: float | None = None) -> None:
        self._inner.write(buffer, _left(timeout, httpcore.WriteTimeout))

    def close(self) -> None:
        self._inner.close()

    def start_tls(
        self, ssl_context: ssl.SSLContext, server_hostname: str | None = None, timeout: float | None = None
    ) -> httpcore.NetworkStream:
        inner = self._inner.start_tls(ssl_context, server_hostname, _left(timeout, httpcore.ConnectTimeout))
        return _DeadlineStream(inner)

    def get_extra_info(self, info: str) -> Any:
        return self._inner.get_extra_info(info)


class _DeadlineBackend(httpcore.NetworkBackend):
    def __init__(self) -> None:
        self._inner = httpcore.SyncBackend()

    def connect_tcp(
        self,
        host: str,
        port: int,
        timeout: float | None = None,
        local_address: str | None = None,
        socket_options: Any = None,
    ) -> httpcore.NetworkStream:
        left = _left(timeout, httpcore.ConnectTimeout)
        return _DeadlineStream(self._inner.connect_tcp(host, port, left, local_address, socket_options))

    def connect_unix_socket(
        self, path: str, timeout: float | None = None, socket_options: Any = None
    ) -> httpcore.NetworkStream:
        left = _left(timeout, httpcore.ConnectTimeout)
        return _DeadlineStream(self._inner.connect_unix_socket(path, left, socket_options))

    def sleep(self, seconds: float) -> None:
        deadline = _DEADLINE.get()
        time.sleep(seconds if deadline is None else max(0.0, min(seconds, deadline - time.monotonic())))


# httpcore's errors as httpx's, most specific first (what httpx.HTTPTransport does).
_ERRORS: tuple[tuple[type[Exception], type[httpx.TransportError]], ...] = (
    (httpcore.ConnectTimeout, httpx.ConnectTimeout),
    (httpcore.ReadTimeout, httpx.ReadTimeout),
    (httpcore.WriteTimeout, httpx.WriteTimeout),
    (httpcore.PoolTimeout, httpx.PoolTimeout),
    (httpcore.TimeoutException, httpx.TimeoutException),
    (httpcore.ConnectError, httpx.ConnectError),
    (httpcore.ReadError, httpx.ReadError),
    (httpcore.WriteError, httpx.WriteError),
    (httpcore.NetworkError, httpx.NetworkError),
    (httpcore.ProxyError, httpx.ProxyError),
    (httpcore.UnsupportedProtocol, httpx.UnsupportedProtocol),
    (httpcore.LocalProtocolError, httpx.LocalProtocolError),
    (httpcore.RemoteProtocolError, httpx.RemoteProtocolError),
    (httpcore.ProtocolError, httpx.ProtocolError),
)


@contextlib.contextmanager
def _httpx_errors() -> Iterator[None]:
    try:
        yield
    except Exception as exc:
        for theirs, ours in _ERRORS:
            if isinstance(exc, theirs):
                raise ours(str(exc)) from exc
        raise


class _Body(httpx.SyncByteStream):
    def __init__(self, stream: Iterable[bytes]) -> None:
        self._stream = stream

    def __iter__(self) -> Iterator[bytes]:
        with _httpx_errors():
            yield from self._stream

    def close(self) -> None:
        close = getattr(self._stream, "close", None)
        if close is not None:
            close()


class DeadlineTransport(httpx.BaseTransport):
    """An HTTP/1.1 ``httpx`` transport over an httpcore pool whose every socket operation also ends at the
    deadline of the current :func:`deadline_scope`; no proxies (the client does not read the environment)."""

    def __init__(self, *, max_connections: int = 10, max_keepalive_connections: int = 20) -> None:
        self._pool = httpcore.ConnectionPool(
            ssl_context=httpx.create_ssl_context(trust_env=False),
            max_connections=max_connections,
            max_keepalive_connections=max_keepalive_connections,
            keepalive_expiry=5.0,
            network_backend=_DeadlineBackend(),
        )

    def handle_request(self, request: httpx.Request) -> httpx.Response:
        core = httpcore.Request(
            method=request.method,
            url=httpcore.URL(
                scheme=request.url.raw_scheme,
                host=request.url.raw_host,
                port=request.url.port,
                target=request.url.raw_path,
            ),
            headers=request.headers.raw,
            content=request.stream,  # type: ignore[arg-type]
            extensions=request.extensions,
        )
        with _httpx_errors():
            response = self._pool.handle_request(core)
        return httpx.Response(
            status_code=response.status,
            headers=response.headers,
            stream=_Body(response.stream),  # type: ignore[arg-type]
            extensions=response.extensions,
        )

    def close(self) -> None:
        self._pool.close()


def _where(response: httpx.Response) -> str:
    return f"{response.request.method} {response.request.url}"


def check_encoding(response: httpx.Response) -> None:
    """Refuse a body sent with any ``Content-Encoding`` but ``identity`` (the client asks for identity)."""
    encoding = response.headers.get("content-encoding", "identity").strip().lower()
    if encoding not in ("", "identity"):
        raise ServerError(
            f"{_where(response)} answered with Content-Encoding {encoding!r} though only 'identity' was asked for; "
            "compressed answers are refused, since a small one can decode to gigabytes. Turn compression off in "
            "the server or the proxy in front of it."
        )


def iter_raw(response: httpx.Response, deadline: Callable[[], float | None]) -> Iterator[bytes]:
    """The body's raw bytes as they arrive, every read ending by ``deadline()`` (asked before each read, so a
    stream can move it); past it, ``httpx.ReadTimeout``."""
    if response.is_stream_consumed:  # already in memory (httpx.MockTransport answers)
        yield response.content
        return
    chunks = response.iter_raw()
    while True:
        limit = deadline()
        with deadline_scope(limit):
            chunk = next(chunks, None)
        if chunk is None:
            return
        if limit is not None and time.monotonic() > limit:
            raise httpx.ReadTimeout("the call's deadline passed", request=response.request)
        yield chunk


def read_body(response: httpx.Response, *, max_bytes: int, deadline: float | None) -> bytes | bytearray:
    """The whole body, refused as soon as it (or its ``Content-Length``) passes ``max_bytes``."""
    check_encoding(response)
    too_big = (
        f"{_where(response)} answered with more than max_response_bytes={max_bytes:,} bytes; refusing to read "
        "on (raise max_response_bytes=... if the server is trusted)."
    )
    declared = response.headers.get("content-length", "").strip()
    if declared.isdigit() and int(declared) > max_bytes:
        raise ServerError(f"{too_big} (Content-Length: {int(declared):,})")
    body = bytearray()
    for chunk in iter_raw(response, lambda: deadline):
        body += chunk
        if len(body) > max_bytes:
            raise ServerError(too_big)
    return body  # a bytearray: json.loads reads it without a second copy


def parse_json(body: bytes | bytearray, where: str) -> Any:
    """``body`` as JSON, or a :class:`ServerError` (never a ``ValueError`` or ``RecursionError``)."""
    try:
        return json.loads(body)
    except (ValueError, RecursionError) as exc:
        shown = body[:200].decode("utf-8", "replace")
        raise ServerError(f"{where} answered with a body that is not JSON ({type(exc).__name__}): {shown!r}") from exc


def iter_lines(chunks: Iterable[bytes], *, max_line_bytes: int, max_total_bytes: int) -> Iterator[str]:
    """Lines (``\\n``, ``\\r\\n`` or ``\\r`` ended, as in server-sent events) of a byte stream, decoded as UTF-8;
    a line over ``max_line_bytes`` or a stream over ``max_total_bytes`` is a :class:`ServerError`."""
    pending = bytearray()
    total = 0
    for chunk in chunks:
        total += len(chunk)
        if total > max_total_bytes:
            raise ServerError(
                f"The server's event stream passed max_response_bytes={max_total_bytes:,} bytes; refusing to read "
                "on (raise max_response_bytes=... for longer answers)."
            )
        pending += chunk
        if b"\n" in chunk or b"\r" in chunk:
            lines = pending.splitlines(keepends=True)
            # The last piece waits: it is unfinished, or ends with a \r that a \n may follow in the next chunk.
            pending = bytearray(lines.pop()) if not lines[-1].endswith(b"\n") else bytearray()
            for line in lines:
                yield _line(line.rstrip(b"\r\n"), max_line_bytes)
        if len(pending) > max_line_bytes:
            _line(pending, max_line_bytes)
    for line in pending.splitlines():
        yield _line(line, max_line_bytes)


def _line(line: bytes | bytearray, max_line_bytes: int) -> str:
    if len(line) > max_line_bytes:
        raise ServerError(
            f"The server sent an event-stream line longer than max_event_bytes={max_line_bytes:,} bytes "
            f"(it starts {bytes(line[:60])!r}); refusing to read on (raise max_event_bytes=... if that is expected)."
        )
    return bytes(line).decode("utf-8", "replace")


def error_message(body: bytes | bytearray, reason: str) -> tuple[str, str | None]:
    """The server's own error message in an error body (OpenAI, vLLM, LMDeploy and FastAPI shapes) and its code."""
    try:
        parsed = json.loads(body)
    except (ValueError, RecursionError):
        return body.decode("utf-8", "replace").strip()[:500] or reason, None
    if isinstance(parsed, dict):
        err = parsed.get("error", parsed)
        if isinstance(err, dict):
            message = err.get("message") or err.get("detail") or json.dumps(err)[:500]
            return str(message), err.get("code") if isinstance(err.get("code"), str) else err.get("type")
        if isinstance(err, str):
            return err, None
        if "detail" in parsed:
            return str(parsed["detail"])[:500], None
    return str(parsed)[:500], None


# --- what the server says ----------------------------------------------------------------------------------------


def _usage(raw: Any) -> Usage:
    raw = raw if isinstance(raw, dict) else {}

    def count(key: str) -> int:
        value = raw.get(key)
        ok = isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value) and value >= 0
        return int(value) if ok else 0

    return Usage(
        prompt_tokens=count("prompt_tokens"),
        completion_tokens=count("completion_tokens"),
        image_tokens=count("image_tokens"),
        num_tiles=count("num_tiles"),
    )


def _finish_reason(value: Any) -> Any:
    return "length" if value == "length" else "stop"


def _model(value: Any, default: str | None) -> str | None:
    return value if isinstance(value, str) and value else default


def chat_result(body: Any, model: str | None) -> ChatResult:
    """A ``chat.completion`` answer as a :class:`ChatResult` (``model`` when the answer names none).

    >>> chat_result({"choices": [{"message": {"content": "hi"}, "finish_reason": "length"}]}, "m").finish_reason
    'length'
    """
    try:
        choice = body["choices"][0]
        text = choice["message"].get("content") or ""
        if not isinstance(text, str):
            raise TypeError(f"content is a {type(text).__name__}")
        finish = choice.get("finish_reason")
    except (KeyError, IndexError, TypeError, AttributeError) as exc:
        raise ServerError(f"The server's answer is not an OpenAI chat completion: {str(body)[:300]}") from exc
    return ChatResult(
        text=text, usage=_usage(body.get("usage")), finish_reason=_finish_reason(finish),
        model=_model(body.get("model"), model),
    )  # fmt: skip


@dataclass
class StreamAnswer:
    """What a stream of ``chat.completion.chunk`` events has said so far (:meth:`add` one ``data:`` payload)."""

    pieces: list[str] = field(default_factory=list)
    received: int = 0  # characters of text
    finished: bool = False  # a finish reason or [DONE] arrived
    done: bool = False  # [DONE] arrived: nothing more to read
    finish_reason: Any = None
    usage: Any = None
    model: Any = None

    def add(self, data: str) -> list[str]:
        """Take one event's payload; return its text deltas. A malformed event or an error event raises."""
        if data == "[DONE]":
            self.finished = self.done = True
            return []
        try:
            chunk = json.loads(data)
        except (ValueError, RecursionError) as exc:
            raise ServerError(f"The server sent a malformed stream event: {data[:200]!r}") from exc
        if not isinstance(chunk, dict):
            raise ServerError(f"The server sent a stream event that is not a JSON object: {data[:200]!r}")
        if chunk.get("error"):
            error = chunk["error"]
            message = error.get("message") if isinstance(error, dict) else error
            raise ServerError(f"The server failed mid-stream after {self.received} characters: {message}")
        self.usage = chunk.get("usage") or self.usage
        self.model = chunk.get("model") or self.model
        choices = chunk.get("choices") or []
        if not isinstance(choices, list) or not all(isinstance(c, dict) for c in choices):
            raise ServerError(f"The server sent a stream event with malformed choices: {data[:200]!r}")
        deltas: list[str] = []
        for choice in choices:
            delta = choice.get("delta") or {}
            text = delta.get("content") if isinstance(delta, dict) else None
            if text and isinstance(text, str):
                self.received += len(text)
                self.pieces.append(text)
                deltas.append(text)
            if choice.get("finish_reason") is not None:
                self.finished = True
                self.finish_reason = choice["finish_reason"]
        return deltas

    def result(self, model: str | None) -> ChatResult:
        """The whole answer; a stream that ended without a finish reason or [DONE] is a
        :class:`~internvl_tools.errors.ServerConnectionError`."""
        if not self.finished:
            raise ServerConnectionError(
                f"The stream ended after {self.received} characters without a finish reason or [DONE]; the server "
                "stopped mid-answer."
            )
        return ChatResult(
            text="".join(self.pieces), usage=_usage(self.usage), finish_reason=_finish_reason(self.finish_reason),
            model=_model(self.model, model),
        )  # fmt: skip
