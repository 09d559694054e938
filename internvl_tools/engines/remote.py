"""The same API over an OpenAI-compatible server: vLLM, LMDeploy ``api_server`` or ``internvl-tools serve``.

The server does the tiling, so images travel as lossless PNG data URIs of the original image (EXIF orientation
applied, size-capped before anything is sent). ``ask``, ``extract``, ``ground``, ``detect``, ``describe_region``
and ``read_pdf`` come from :class:`~internvl_tools.engines.base.VisionLanguageModel` and use the same prompts and
parsers as the local engine.

>>> vlm = RemoteInternVL("http://127.0.0.1:23333", model="OpenGVLab/InternVL3-1B")   # cheap: nothing is sent yet
>>> vlm.base_url
'http://127.0.0.1:23333/v1'
>>> RemoteInfo().image_size, RemoteInfo().max_dynamic_patch     # what info reports when the server does not say
(448, 12)

Requests are retried with exponential backoff on HTTP 429 and 5xx and on connection failures; other 4xx answers
raise :class:`~internvl_tools.errors.ServerRequestError` (401/403: :class:`~internvl_tools.errors.ServerAuthError`).
The server is not trusted (:mod:`~internvl_tools.engines.transport`): answers are read uncompressed and capped
(``max_response_bytes``, ``max_event_bytes`` per stream line), a call ends by ``total_timeout`` and a stream by
``timeout`` without a complete event, however slowly the server drips bytes; every failure is a
:class:`~internvl_tools.errors.ServerError`.
"""

from __future__ import annotations

import base64
import os
import random
import re
import threading
import time
import urllib.parse
import warnings
from collections.abc import Generator, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any

import httpx

from internvl_tools.constants import (
    API_KEY_ENV,
    LEGACY_API_KEY_ENVS,
    MAX_TILES_LIMIT,
    REMOTE_MAX_EVENT_BYTES,
    REMOTE_MAX_RESPONSE_BYTES,
)
from internvl_tools.engines.base import VisionLanguageModel
from internvl_tools.engines.transport import (
    DeadlineTransport,
    StreamAnswer,
    chat_result,
    check_encoding,
    deadline_scope,
    error_message,
    iter_lines,
    iter_raw,
    parse_json,
    read_body,
)
from internvl_tools.errors import (
    ConfigError,
    ContextLengthError,
    ImageTooLargeError,
    InternVLError,
    ServerAuthError,
    ServerConnectionError,
    ServerError,
    ServerRequestError,
    ServerTimeoutError,
)
from internvl_tools.generation.options import GenerationOptions
from internvl_tools.generation.stream import TextStream
from internvl_tools.messages import ImagePart, TextPart, VideoPart, normalize_messages
from internvl_tools.results import ChatResult

__all__ = ["OpenAIBackend", "RemoteInfo", "RemoteInternVL", "api_key_from_env"]

_RETRY_STATUS = frozenset({408, 429, 500, 502, 503, 504})
_CONTEXT_RE = re.compile(r"context length|maximum context|context window|too long|max_model_len", re.IGNORECASE)
_MAX_ERROR_BYTES = 64 * 1024  # of an error answer: enough for any server's message


def api_key_from_env(environ: Any = None) -> str | None:
    """The server API key from ``INTERNVL_TOOLS_API_KEY``; the older ``INTERNVL_API_KEY`` still works, with a warning.

    >>> api_key_from_env({"INTERNVL_TOOLS_API_KEY": "k"})
    'k'
    >>> api_key_from_env({}) is None
    True
    """
    env = os.environ if environ is None else environ
    value = env.get(API_KEY_ENV)
    if value:
        return str(value)
    for legacy in LEGACY_API_KEY_ENVS:
        if env.get(legacy):
            warnings.warn(f"{legacy} is deprecated; set {API_KEY_ENV} instead.", DeprecationWarning, stacklevel=2)
            return str(env[legacy])
    return None


@dataclass(frozen=True)
class RemoteInfo:
    """What the pipelines need to know about a served checkpoint (read from ``/v1/models`` where the server says).

    ``read_pdf`` sizes pages from ``image_size`` × the tile budget; ``context_length`` is ``None`` when unknown.
    """

    image_size: int = 448
    max_dynamic_patch: int = 12
    dynamic_image_size: bool = True
    use_thumbnail: bool = True
    template: str | None = None
    context_length: int | None = None
    tokens_per_tile: int | None = None


def _normalize_base_url(base_url: str) -> str:
    if not isinstance(base_url, str) or not base_url.strip():
        raise ConfigError("base_url must be the server's URL, e.g. 'http://127.0.0.1:23333/v1'.")
    url = base_url.strip().rstrip("/")
    parts = urllib.parse.urlsplit(url)
    if parts.scheme not in ("http", "https") or not parts.netloc:
        raise ConfigError(f"base_url {base_url!r} must be an http(s) URL such as 'http://127.0.0.1:23333/v1'.")
    # Servers mount the OpenAI API under /v1; a bare host:port means that.
    if parts.path in ("", "/"):
        url += "/v1"
    return url


class RemoteInternVL(VisionLanguageModel):
    """An InternVL model behind an OpenAI-compatible server, with the API of :class:`~internvl_tools.InternVL`.

    Args:
        base_url: the server, e.g. ``"http://127.0.0.1:23333/v1"`` (``/v1`` is added to a bare host:port).
        model: the served model name; discovered from ``/v1/models`` on first use when ``None``.
        api_key: sent as ``Authorization: Bearer``; defaults to the ``INTERNVL_TOOLS_API_KEY`` environment variable.
        timeout: seconds to wait for the server's next bytes; in a stream, also for its next complete event (a
            server dripping bytes without finishing one is stopped).
        total_timeout: seconds for a whole call: connecting, retries, headers and the body (of a stream, until its
            headers). Default: ``2 * timeout``.
        connect_timeout: seconds to open a connection.
        max_response_bytes: most bytes read for one answer (a JSON body or a whole event stream), default 64 MiB.
        max_event_bytes: most bytes in one line of an event stream, default 1 MiB.
        max_retries: retries after 429/5xx answers and connection failures (read timeouts are not retried:
            the server may still be generating).
        backoff: first retry delay in seconds, doubled each retry (jittered, capped by ``max_backoff``);
            a ``Retry-After`` header wins when it is shorter than ``max_backoff``.
        max_concurrency: most requests ``batch`` keeps in flight at once.
        max_image_bytes: largest encoded image (PNG bytes) that will be sent; larger ones raise
            :class:`~internvl_tools.errors.ImageTooLargeError` before any request.
        image_size, max_dynamic_patch, dynamic_image_size, template, context_length: override what ``info``
            reports (otherwise read from ``/v1/models`` where the server reports it, else InternVL defaults).
        max_tiles: tile budget per image sent as an extension field (honoured by ``internvl-tools serve``).
        media_policy: how local images are loaded (:class:`~internvl_tools.MediaPolicy`).
        headers: extra HTTP headers.
        transport: an ``httpx`` transport (tests, proxies); only the default one bounds each socket read by
            ``total_timeout`` (others are checked between chunks).

    Answers are asked for and read uncompressed (``Accept-Encoding: identity``): vLLM, LMDeploy and
    ``internvl-tools serve`` never compress, and a compressed answer is refused rather than decoded.
    """

    def __init__(
        self,
        base_url: str,
        model: str | None = None,
        api_key: str | None = None,
        *,
        timeout: float = 300.0,
        total_timeout: float | None = None,
        connect_timeout: float = 10.0,
        max_response_bytes: int = REMOTE_MAX_RESPONSE_BYTES,
        max_event_bytes: int = REMOTE_MAX_EVENT_BYTES,
        max_retries: int = 3,
        backoff: float = 0.5,
        max_backoff: float = 20.0,
        max_concurrency: int = 8,
        max_image_bytes: int = 16 * 1024 * 1024,
        image_size: int | None = None,
        max_dynamic_patch: int | None = None,
        dynamic_image_size: bool | None = None,
        template: str | None = None,
        context_length: int | None = None,
        max_tiles: int | None = None,
        media_policy: Any = None,
        headers: dict[str, str] | None = None,
        transport: httpx.BaseTransport | None = None,
    ) -> None:
        if not timeout > 0 or not connect_timeout > 0:
            raise ConfigError(f"timeout and connect_timeout must be positive, got {timeout} and {connect_timeout}.")
        if total_timeout is not None and not total_timeout > 0:
            raise ConfigError(f"total_timeout must be positive, got {total_timeout}.")
        if max_response_bytes < 1 or max_event_bytes < 1:
            raise ConfigError(
                f"max_response_bytes and max_event_bytes must be positive, got {max_response_bytes} "
                f"and {max_event_bytes}."
            )
        if max_retries < 0:
            raise ConfigError(f"max_retries must be >= 0, got {max_retries}.")
        if max_concurrency < 1:
            raise ConfigError(f"max_concurrency must be >= 1, got {max_concurrency}.")
        if max_image_bytes < 1:
            raise ConfigError(f"max_image_bytes must be positive, got {max_image_bytes}.")
        if max_tiles is not None and not 1 <= int(max_tiles) <= MAX_TILES_LIMIT:
            raise ConfigError(f"max_tiles must be between 1 and {MAX_TILES_LIMIT}, got {max_tiles}.")
        self.base_url = _normalize_base_url(base_url)
        self._model = model
        self.api_key = api_key if api_key is not None else api_key_from_env()
        self.timeout = float(timeout)
        self.total_timeout = float(total_timeout) if total_timeout is not None else 2 * self.timeout
        self.connect_timeout = float(connect_timeout)
        self.max_response_bytes = int(max_response_bytes)
        self.max_event_bytes = int(max_event_bytes)
        self.max_retries = int(max_retries)
        self.backoff = float(backoff)
        self.max_backoff = float(max_backoff)
        self.max_concurrency = int(max_concurrency)
        self.max_image_bytes = int(max_image_bytes)
        self.max_tiles = max_tiles
        self.media_policy = media_policy
        self._overrides = {
            k: v
            for k, v in {
                "image_size": image_size,
                "max_dynamic_patch": max_dynamic_patch,
                "dynamic_image_size": dynamic_image_size,
                "template": template,
                "context_length": context_length,
            }.items()
            if v is not None
        }
        self._model_entry: dict[str, Any] | None = None
        self._info: RemoteInfo | None = None
        self._lock = threading.Lock()
        all_headers = {"Accept": "application/json", **(headers or {}), "Accept-Encoding": "identity"}
        if self.api_key:
            all_headers["Authorization"] = f"Bearer {self.api_key}"
        self._client = httpx.Client(
            timeout=httpx.Timeout(self.timeout, connect=self.connect_timeout),
            headers=all_headers,
            transport=transport or DeadlineTransport(max_connections=max(self.max_concurrency, 10)),
            trust_env=False,
        )

    def __repr__(self) -> str:
        return f"RemoteInternVL({self.base_url!r}, model={self._model!r})"

    def close(self) -> None:
        """Close the connection pool."""
        self._client.close()

    def __enter__(self) -> RemoteInternVL:
        return self

    def __exit__(self, *exc: Any) -> None:
        self.close()

    # ------------------------------------------------------------------------------------------------ discovery

    def list_models(self) -> list[dict[str, Any]]:
        """The server's ``/v1/models`` entries."""
        body = self._call("GET", "/models")
        data = body.get("data") if isinstance(body, dict) else None
        if not isinstance(data, list):
            raise ServerError(f"{self.base_url}/models did not return an OpenAI model list: {str(body)[:200]}")
        return [d for d in data if isinstance(d, dict)]

    def _entry(self) -> dict[str, Any]:
        with self._lock:
            if self._model_entry is None:
                models = self.list_models()
                if self._model is None:
                    if not models:
                        raise ServerError(f"{self.base_url}/models lists no model; pass model=... explicitly.")
                    self._model = str(models[0].get("id"))
                self._model_entry = next((m for m in models if m.get("id") == self._model), {})
            return self._model_entry

    @property
    def model_name(self) -> str:  # type: ignore[override]
        """The served model name (asks ``/v1/models`` once when it was not given)."""
        if self._model is None:
            self._entry()
        return str(self._model)

    @property
    def info(self) -> RemoteInfo:
        """Facts for the pipelines: constructor overrides, then the server's report (``internvl-tools serve``
        reports all; vLLM reports ``max_model_len``), then InternVL defaults (448 px tiles, 12 tiles)."""
        if self._info is not None:
            return self._info
        try:
            entry = self._entry()
        except ServerError:
            if self._model is None:
                raise
            return RemoteInfo(**self._overrides)  # not cached: asked again once the server answers
        reported: dict[str, Any] = {}
        extra = entry.get("internvl") if isinstance(entry.get("internvl"), dict) else {}
        for key in RemoteInfo.__dataclass_fields__:
            if extra.get(key) is not None:
                reported[key] = extra[key]
        if "context_length" not in reported and isinstance(entry.get("max_model_len"), int):
            reported["context_length"] = entry["max_model_len"]
        self._info = RemoteInfo(**{**reported, **self._overrides})
        return self._info

    @property
    def context_length(self) -> int | None:
        return self.info.context_length

    # ------------------------------------------------------------------------------------------------ HTTP

    def _delay(self, attempt: int, response: httpx.Response | None) -> float:
        delay = min(self.max_backoff, self.backoff * (2**attempt)) * (0.5 + random.random() / 2)
        if response is not None:
            retry_after = response.headers.get("retry-after")
            try:
                if retry_after is not None and 0 <= float(retry_after) <= self.max_backoff:
                    delay = float(retry_after)
            except ValueError:
                pass
        return delay

    def _raise_for_status(self, response: httpx.Response, path: str, retries: int, deadline: float) -> None:
        if response.status_code < 400:
            return
        try:  # the error body, capped: enough for any server's message
            body = read_body(response, max_bytes=_MAX_ERROR_BYTES, deadline=deadline)
        except (ServerError, httpx.HTTPError):
            body = b""
        message, code = error_message(body, response.reason_phrase)
        status = response.status_code
        where = f"{response.request.method} {self.base_url}{path}"
        if status in (401, 403):
            hint = "pass api_key=... (or set INTERNVL_TOOLS_API_KEY)" if not self.api_key else "check api_key"
            raise ServerAuthError(f"{where} was refused with HTTP {status} ({message}); {hint}.", status)
        if status == 400 and (code == "context_length_exceeded" or _CONTEXT_RE.search(message)):
            raise ContextLengthError(f"{where}: HTTP 400: {message}")
        if status == 404 and path == "/chat/completions":
            raise ServerRequestError(
                f"{where} answered HTTP 404 ({message}); check the model name ({self._model!r}) and that base_url "
                "ends with the server's API prefix (usually /v1).",
                status,
            )
        if 400 <= status < 500:
            raise ServerRequestError(f"{where} refused the request with HTTP {status}: {message}", status)
        raise ServerError(f"{where} failed with HTTP {status} after {retries} retries: {message}", status)

    def _timeout_error(self, where: str, exc: Exception, deadline: float) -> ServerTimeoutError:
        if time.monotonic() >= deadline:
            message = (
                f"{where} timed out: no complete answer within total_timeout={self.total_timeout:g}s; raise "
                "total_timeout=... for long answers."
            )
        else:
            message = (
                f"{where} timed out ({type(exc).__name__}, timeout={self.timeout:g}s, "
                f"connect_timeout={self.connect_timeout:g}s); raise timeout=... for long answers."
            )
        return ServerTimeoutError(message)

    def _send(self, method: str, path: str, payload: Any, deadline: float) -> httpx.Response:
        """Send with retries on 429/5xx and connection failures, all before ``deadline``; returns a successful
        response whose body is unread."""
        url = self.base_url + path
        attempt = 0
        while True:
            response: httpx.Response | None = None
            failure: httpx.TransportError | None = None
            try:
                request = self._client.build_request(method, url, json=payload)
                with deadline_scope(deadline):
                    response = self._client.send(request, stream=True)
            except httpx.TimeoutException as exc:
                # A read timeout means the server has the request; retrying would queue it twice.
                if not isinstance(exc, httpx.ConnectTimeout):
                    raise self._timeout_error(f"{method} {url}", exc, deadline) from exc
                failure = exc
            except httpx.TransportError as exc:
                failure = exc
            delay = self._delay(attempt, response)
            last = attempt >= self.max_retries or time.monotonic() + delay >= deadline
            if isinstance(failure, httpx.TimeoutException) and last:
                raise self._timeout_error(f"{method} {url}", failure, deadline) from failure
            if failure is not None and last:
                raise ServerConnectionError(
                    f"Could not reach {url} after {attempt + 1} attempt(s): {type(failure).__name__}: {failure}. "
                    "Is the server running, and is base_url right?"
                ) from failure
            if response is not None:
                if response.status_code not in _RETRY_STATUS or last:
                    if response.status_code >= 400:
                        try:
                            self._raise_for_status(response, path, attempt, deadline)
                        finally:
                            response.close()
                    return response
                response.close()
            time.sleep(delay)
            attempt += 1

    def _call(self, method: str, path: str, payload: Any = None) -> Any:
        """One JSON call: the answer read within ``total_timeout`` and ``max_response_bytes``, then parsed."""
        deadline = time.monotonic() + self.total_timeout
        response = self._send(method, path, payload, deadline)
        where = f"{method} {self.base_url}{path}"
        try:
            body = read_body(response, max_bytes=self.max_response_bytes, deadline=deadline)
        except httpx.TimeoutException as exc:
            raise self._timeout_error(where, exc, deadline) from exc
        except httpx.TransportError as exc:
            raise ServerConnectionError(
                f"{where}: the server closed the connection mid-answer ({type(exc).__name__}: {exc})."
            ) from exc
        finally:
            response.close()
        return parse_json(body, where)

    # ------------------------------------------------------------------------------------------------ payloads

    def _image_url(self, part: ImagePart) -> dict[str, Any]:
        from internvl_tools.media.images import encode_image, load_image
        from internvl_tools.media.policy import describe_source

        # The server tiles; send the original pixels losslessly (EXIF orientation applied, metadata dropped).
        pil = load_image(part.image, policy=self.media_policy)
        data = encode_image(pil, "PNG")
        if len(data) > self.max_image_bytes:
            raise ImageTooLargeError(
                f"{describe_source(part.image)} ({pil.width}x{pil.height}) encodes to {len(data):,} bytes of PNG, "
                f"over max_image_bytes={self.max_image_bytes:,}; downscale it or raise max_image_bytes (and the "
                "server's request limit)."
            )
        url = {"url": "data:image/png;base64," + base64.b64encode(data).decode("ascii")}
        out: dict[str, Any] = {"type": "image_url", "image_url": url}
        tiles = part.max_tiles if part.max_tiles is not None else self.max_tiles
        if tiles is not None:
            out["max_tiles"] = int(tiles)  # extension: internvl-tools serve honours it, others ignore it
        return out

    def _openai_messages(self, messages: Any) -> list[dict[str, Any]]:
        out: list[dict[str, Any]] = []
        for index, msg in enumerate(normalize_messages(messages)):
            if all(isinstance(p, TextPart) for p in msg.content):
                out.append({"role": msg.role, "content": msg.text})
                continue
            parts: list[dict[str, Any]] = []
            for part in msg.content:
                if isinstance(part, TextPart):
                    parts.append({"type": "text", "text": part.text})
                elif isinstance(part, ImagePart):
                    parts.append(self._image_url(part))
                elif isinstance(part, VideoPart):
                    raise ConfigError(
                        f"message {index}: videos cannot be sent to an OpenAI-compatible server; sample frames "
                        "with internvl_tools.load_video locally, or send them as images."
                    )
            out.append({"role": msg.role, "content": parts})
        return out

    def _payload(self, messages: Any, generation: dict[str, Any], *, stream: bool = False) -> dict[str, Any]:
        options = GenerationOptions.from_kwargs(dict(generation))
        if options.num_beams != 1:
            raise ConfigError("num_beams > 1 is not part of the OpenAI API; use the local engine for beam search.")
        payload: dict[str, Any] = {
            "model": self.model_name,
            "messages": self._openai_messages(messages),
            "max_tokens": options.max_new_tokens,
            # The local engine decodes greedily unless sampling is asked for; so does the server then.
            "temperature": (options.temperature if options.temperature else 1.0) if options.sampling else 0.0,
        }
        if options.sampling and options.top_p is not None:
            payload["top_p"] = options.top_p
        if options.sampling and options.top_k is not None:
            payload["top_k"] = options.top_k  # vLLM / LMDeploy / our server extension
        if options.repetition_penalty is not None:
            payload["repetition_penalty"] = options.repetition_penalty
        if options.stop:
            payload["stop"] = list(options.stop)
        if options.seed is not None:
            payload["seed"] = options.seed
        if stream:
            payload["stream"] = True
            payload["stream_options"] = {"include_usage": True}  # the token counts in a last chunk (OpenAI API)
        return payload

    # ------------------------------------------------------------------------------------------------ primitives

    def chat(self, messages: Any, **generation: Any) -> ChatResult:
        """Answer a conversation (``POST /chat/completions``); same messages and options as the local engine."""
        payload = self._payload(messages, generation)
        return chat_result(self._call("POST", "/chat/completions", payload), self._model)

    def stream(self, messages: Any, **generation: Any) -> TextStream:
        """Yield text deltas from server-sent events; a connection lost mid-answer raises
        :class:`~internvl_tools.errors.ServerConnectionError` (a stalled one :class:`ServerTimeoutError`).

        Once exhausted, ``result`` holds the whole answer with the server's finish reason and token counts (zero
        counts when the server sends none, as for :meth:`chat`)."""
        payload = self._payload(messages, generation, stream=True)
        return TextStream(self._stream(payload))

    def _stream(self, payload: dict[str, Any]) -> Generator[str, None, ChatResult]:
        response = self._send("POST", "/chat/completions", payload, time.monotonic() + self.total_timeout)
        idle_until = time.monotonic() + self.timeout  # moved on by each complete event, not by stray bytes
        answer = StreamAnswer()
        try:
            check_encoding(response)
            chunks = iter_raw(response, lambda: idle_until)
            for line in iter_lines(
                chunks, max_line_bytes=self.max_event_bytes, max_total_bytes=self.max_response_bytes
            ):
                if line.startswith("data:"):
                    idle_until = time.monotonic() + self.timeout
                    yield from answer.add(line[5:].strip())
                    if answer.done:
                        break
        except httpx.TimeoutException as exc:
            raise ServerTimeoutError(
                f"The server sent no complete event for {self.timeout:g}s (timeout) mid-stream (after "
                f"{answer.received} characters); raise timeout=... if it is slow."
            ) from exc
        except httpx.TransportError as exc:
            raise ServerConnectionError(
                f"The server closed the connection mid-stream after {answer.received} characters "
                f"({type(exc).__name__}: {exc}); the answer is incomplete."
            ) from exc
        finally:
            response.close()
        return answer.result(self._model)

    def batch(self, conversations: Sequence[Any], *, batch_size: int = 8, **generation: Any) -> list[ChatResult]:
        """Answer several conversations with up to ``min(batch_size, max_concurrency)`` requests in flight.

        A conversation the server refuses (bad image, too long, HTTP 4xx or 5xx after retries) comes back with
        ``finish_reason="error"``; an unreachable server, a timeout or a bad API key raise, as they concern all.
        """
        if isinstance(conversations, (str, dict)):
            raise ConfigError("batch() takes a list of conversations; for one conversation use chat().")
        if batch_size < 1:
            raise ConfigError(f"batch_size must be >= 1, got {batch_size}.")
        GenerationOptions.from_kwargs(dict(generation))  # bad options fail once, not per item
        fatal = (ServerAuthError, ServerConnectionError, ServerTimeoutError)

        def one(conversation: Any) -> ChatResult:
            try:
                return self.chat(conversation, **generation)
            except fatal:
                raise
            except InternVLError as exc:
                return ChatResult.from_error(exc, self._model or "")

        if not conversations:
            return []
        workers = min(batch_size, self.max_concurrency, len(conversations))
        with ThreadPoolExecutor(max_workers=workers, thread_name_prefix="internvl-remote") as pool:
            futures = [pool.submit(one, c) for c in conversations]
            try:
                return [f.result() for f in futures]
            except BaseException:
                for f in futures:
                    f.cancel()
                raise

    def generate_structured(self, messages: Any, json_schema: dict, **generation: Any) -> ChatResult:
        """Like :meth:`chat` with ``response_format`` set to ``json_schema`` (strict), which vLLM, LMDeploy and
        ``internvl-tools serve`` enforce while decoding; :meth:`extract` validates the answer again here."""
        if not isinstance(json_schema, dict):
            raise ConfigError(f"json_schema must be a dict, got {type(json_schema).__name__}.")
        if generation.get("stop"):
            raise ConfigError("stop sequences cannot be combined with structured output; the grammar decides the end.")
        payload = self._payload(messages, generation)
        name = re.sub(r"[^A-Za-z0-9_-]", "_", str(json_schema.get("title") or "answer"))[:64] or "answer"
        payload["response_format"] = {
            "type": "json_schema",
            "json_schema": {"name": name, "schema": json_schema, "strict": True},
        }
        return chat_result(self._call("POST", "/chat/completions", payload), self._model)


OpenAIBackend = RemoteInternVL
