"""The OpenAI-compatible app: one engine behind ``GET /v1/models``, ``POST /v1/chat/completions`` and an
unauthenticated ``GET /health`` (see :mod:`internvl_tools.server`).

Requests are validated (:mod:`~internvl_tools.server.requests`) before any work; non-streaming ones are micro-batched
(:mod:`~internvl_tools.server.batching`); every answer, refusals and failures included, is JSON
(:mod:`~internvl_tools.server.errors`).
"""

# No `from __future__ import annotations`: FastAPI reads the endpoints' annotations (fastapi.Request), which
# live in create_app's scope, at definition time.
import asyncio
import json
import logging
import secrets
import threading
import time
import uuid
from concurrent.futures import ThreadPoolExecutor
from typing import Any

from internvl_tools.errors import DependencyMissingError, InternVLError
from internvl_tools.generation.stream import TextStream
from internvl_tools.results import ChatResult
from internvl_tools.server.batching import MicroBatcher
from internvl_tools.server.errors import RequestError, error_body, error_result_to_request_error, from_engine_error
from internvl_tools.server.requests import (
    ChatCompletionRequest,
    ChatRequest,
    check_prompt_size,
    has_remote_images,
    parse_messages,
    parse_options,
    parse_request,
    parse_schema,
)
from internvl_tools.server.settings import ServerSettings, build_media_policy
from internvl_tools.server.validation import parse_body
from internvl_tools.tiling import tile_budget

__all__ = ["create_app", "require_fastapi"]

log = logging.getLogger("internvl_tools.server")


# ---------------------------------------------------------------------------------------------------- the app


class _BodyLimit:
    """Refuse request bodies over ``limit`` bytes with 413, before they are buffered whole."""

    class _TooLarge(Exception):
        pass

    def __init__(self, app: Any, limit: int) -> None:
        self.app, self.limit = app, limit

    async def __call__(self, scope: dict, receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        length = dict(scope.get("headers") or []).get(b"content-length")
        if length is not None and length.isdigit() and int(length) > self.limit:
            await self._refuse(send)
            return
        seen = 0
        started = False

        async def limited_receive() -> dict:
            nonlocal seen
            message = await receive()
            if message["type"] == "http.request":
                seen += len(message.get("body", b""))
                if seen > self.limit:
                    raise self._TooLarge
            return message

        async def tracking_send(message: dict) -> None:
            nonlocal started
            started = started or message["type"] == "http.response.start"
            await send(message)

        try:
            await self.app(scope, limited_receive, tracking_send)
        except self._TooLarge:
            if not started:
                await self._refuse(send)

    async def _refuse(self, send: Any) -> None:
        body = json.dumps(
            error_body(
                f"The request body is over this server's limit of {self.limit:,} bytes (--max-request-mb); send "
                "smaller images.",
                413,
                "request_too_large",
            )
        ).encode()
        await send(
            {
                "type": "http.response.start",
                "status": 413,
                "headers": [(b"content-type", b"application/json"), (b"content-length", str(len(body)).encode())],
            }
        )
        await send({"type": "http.response.body", "body": body})


def require_fastapi() -> Any:
    """The ``fastapi`` module, or a :class:`~internvl_tools.errors.DependencyMissingError` saying what to install."""
    try:
        import fastapi
    except ImportError as exc:
        raise DependencyMissingError(
            "The server needs FastAPI and uvicorn: pip install 'internvl-tools[server]'."
        ) from exc
    return fastapi


def _tile_cap(engine: Any, settings: ServerSettings) -> int:
    """Most tiles one image may use on this server: the server's ``--max-tiles``, else the engine's, else the
    checkpoint's (:func:`~internvl_tools.tiling.tile_budget`; 1 without dynamic tiling).

    >>> from types import SimpleNamespace
    >>> engine = SimpleNamespace(info=SimpleNamespace(dynamic_image_size=True, max_dynamic_patch=6), max_tiles=None)
    >>> _tile_cap(engine, ServerSettings("tiny")), _tile_cap(engine, ServerSettings("tiny", max_tiles=2))
    (6, 2)
    """
    return tile_budget(engine.info, settings.max_tiles or getattr(engine, "max_tiles", None))


def _model_card(engine: Any, settings: ServerSettings, created: int) -> dict[str, Any]:
    info = engine.info
    context = getattr(info, "context_length", None)
    return {
        "id": settings.model_name,
        "object": "model",
        "created": created,
        "owned_by": "internvl-tools",
        "max_model_len": context,
        # Read by internvl_tools.engines.remote so read_pdf sizes pages for this server's tiling.
        "internvl": {
            "template": getattr(info, "template", None),
            "image_size": getattr(info, "image_size", None),
            "max_dynamic_patch": _tile_cap(engine, settings),
            "dynamic_image_size": getattr(info, "dynamic_image_size", True),
            "use_thumbnail": getattr(info, "use_thumbnail", True),
            "tokens_per_tile": getattr(info, "tokens_per_tile", None),
            "context_length": context,
        },
    }


def _replay(result: ChatResult) -> Any:
    """A finished answer as a stream: its text in one delta, then the result itself (what TextStream expects)."""
    yield result.text
    return result


def _usage(result: Any) -> dict[str, int]:
    u = result.usage
    return {
        "prompt_tokens": u.prompt_tokens,
        "completion_tokens": u.completion_tokens,
        "total_tokens": u.prompt_tokens + u.completion_tokens,
        "image_tokens": u.image_tokens,
        "num_tiles": u.num_tiles,
    }


def create_app(engine: Any, settings: ServerSettings) -> Any:
    """The FastAPI app serving ``engine`` (an :class:`~internvl_tools.InternVL`, loaded or not) with ``settings``.

    Every answer is JSON: refusals are 4xx in OpenAI's error shape naming the field, and anything unexpected is
    a JSON 500 (the server stays up). Generation runs on one thread; fetching remote images runs on its own
    bounded pool (``max_concurrent_fetches``; a request beyond it is answered 503 at once), so slow image hosts
    never hold up text-only requests.

    >>> from internvl_tools import InternVL
    >>> app = create_app(InternVL("tiny"), ServerSettings(model_name="tiny"))   # doctest: +SKIP
    """
    fastapi = require_fastapi()
    from contextlib import asynccontextmanager

    from fastapi.exceptions import RequestValidationError
    from fastapi.responses import JSONResponse, StreamingResponse
    from starlette.exceptions import HTTPException

    executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="internvl-serve")
    stream_pool = ThreadPoolExecutor(max_workers=16, thread_name_prefix="internvl-stream")
    # Decoding data: URIs (CPU-bound, quick) and fetching URLs (may wait up to --media-timeout per image) each get
    # their own pool, so neither waits behind the other, nor behind asyncio's default pool.
    parse_pool = ThreadPoolExecutor(max_workers=4, thread_name_prefix="internvl-parse")
    fetch_pool = ThreadPoolExecutor(max_workers=settings.max_concurrent_fetches, thread_name_prefix="internvl-fetch")
    fetch_slots = threading.BoundedSemaphore(settings.max_concurrent_fetches)
    batcher = MicroBatcher(
        engine, executor, max_batch_size=settings.max_batch_size, window_s=settings.batch_window_ms / 1000.0
    )
    policy = build_media_policy(settings)
    created = int(time.time())
    accepted = {settings.model_name, *settings.aliases}

    @asynccontextmanager
    async def lifespan(app: Any) -> Any:
        batcher.start()
        try:
            yield
        finally:
            await batcher.stop()
            for pool in (executor, stream_pool, parse_pool, fetch_pool):
                pool.shutdown(wait=False, cancel_futures=True)

    # The schema and docs are served only through the authenticated route below.
    app = fastapi.FastAPI(title="internvl-tools", lifespan=lifespan, docs_url=None, redoc_url=None, openapi_url=None)
    app.state.batcher = batcher
    app.state.settings = settings
    app.add_middleware(_BodyLimit, limit=settings.max_request_bytes)

    def fail(err: RequestError) -> Any:
        headers = {"WWW-Authenticate": "Bearer"} if err.status == 401 else None
        if err.status == 503:
            headers = {"Retry-After": "1"}
        return JSONResponse(error_body(str(err), err.status, err.code, err.param), err.status, headers=headers)

    @app.exception_handler(RequestError)
    async def request_error(request: fastapi.Request, exc: RequestError) -> Any:
        return fail(exc)

    @app.exception_handler(InternVLError)
    async def engine_error(request: fastapi.Request, exc: InternVLError) -> Any:
        return fail(from_engine_error(exc))

    @app.exception_handler(HTTPException)
    async def http_error(request: fastapi.Request, exc: HTTPException) -> Any:
        code = {404: "not_found", 405: "method_not_allowed"}.get(exc.status_code)
        return fail(RequestError(f"{request.method} {request.url.path}: {exc.detail}", exc.status_code, code))

    @app.exception_handler(RequestValidationError)
    async def validation_error(request: fastapi.Request, exc: RequestValidationError) -> Any:
        return fail(RequestError(f"Invalid request: {exc.errors()[:1]}", 400, "invalid_value"))

    @app.exception_handler(Exception)
    async def unexpected_error(request: fastapi.Request, exc: Exception) -> Any:
        # Starlette still logs the traceback; the client gets JSON, never a plain-text 500.
        return fail(RequestError(f"The server failed: {type(exc).__name__}: {exc}"[:2000], 500, "server_error"))

    def check_key(request: Any) -> None:
        if not settings.api_key:
            return
        header = request.headers.get("authorization", "")
        token = header[7:].strip() if header[:7].lower() == "bearer " else ""
        if not secrets.compare_digest(token.encode(), settings.api_key.encode()):
            reason = "No API key was sent" if not token else "The API key is wrong"
            raise RequestError(
                f"{reason}; send 'Authorization: Bearer <key>' with this server's --api-key.", 401, "invalid_api_key"
            )

    @app.get("/health")
    async def health() -> dict[str, Any]:
        return {
            "status": "ok",
            "model": settings.model_name,
            "batching": settings.batching,
            "batches": len(batcher.batches),
            "batched_requests": sum(batcher.batches),
        }

    @app.get("/openapi.json", include_in_schema=False)
    async def openapi(request: fastapi.Request) -> Any:
        check_key(request)
        return app.openapi()

    @app.get("/v1/models")
    async def models(request: fastapi.Request) -> Any:
        check_key(request)
        return {"object": "list", "data": [_model_card(engine, settings, created)]}

    async def load_messages(req: ChatCompletionRequest) -> list[Any]:
        cap = _tile_cap(engine, settings)
        loop = asyncio.get_running_loop()
        if not has_remote_images(req):
            return await loop.run_in_executor(parse_pool, parse_messages, req.messages, settings, policy, cap)
        if not fetch_slots.acquire(blocking=False):
            raise RequestError(
                f"This server is already fetching remote images for {settings.max_concurrent_fetches} requests "
                "(--max-concurrent-fetches); retry shortly, or send the images as data: URIs.",
                503,
                "server_busy",
            )

        def fetch() -> list[Any]:
            try:
                return parse_messages(req.messages, settings, policy, cap)
            finally:
                fetch_slots.release()  # by the worker, so a client that left does not free a slot still in use

        try:
            future = fetch_pool.submit(fetch)
        except RuntimeError:  # shutting down
            fetch_slots.release()
            raise
        return await asyncio.wrap_future(future)

    @app.post("/v1/chat/completions")
    async def chat_completions(request: fastapi.Request) -> Any:
        check_key(request)
        req = parse_request(parse_body(await request.body()))
        if req.model not in (None, "") and req.model not in accepted:
            raise RequestError(
                f"The model {req.model!r} is not served here; this server serves "
                f"{settings.model_name!r} (see GET /v1/models).",
                404,
                "model_not_found",
                "model",
            )
        check_prompt_size(req, getattr(engine.info, "context_length", None), settings)
        chat = ChatRequest(
            messages=[],
            options=parse_options(req),
            stream=bool(req.stream),
            schema=parse_schema(req),
            include_usage=bool(req.stream_options and req.stream_options.include_usage),
        )
        chat.messages = await load_messages(req)
        if chat.stream:
            return await _stream_response(chat)
        result = await _answer(chat)
        if result.finish_reason == "error":
            raise error_result_to_request_error(result.error)
        return {
            "id": f"chatcmpl-{uuid.uuid4().hex}",
            "object": "chat.completion",
            "created": int(time.time()),
            "model": settings.model_name,
            "choices": [
                {
                    "index": 0,
                    "message": {"role": "assistant", "content": result.text},
                    "finish_reason": result.finish_reason,
                    "logprobs": None,
                }
            ],
            "usage": _usage(result),
        }

    async def _answer(chat: ChatRequest) -> Any:
        loop = asyncio.get_running_loop()
        if chat.schema is not None:
            return await loop.run_in_executor(
                executor, lambda: engine.generate_structured(chat.messages, chat.schema, **chat.options)
            )
        if settings.batching:
            return await batcher.submit(chat.messages, chat.options)
        return await loop.run_in_executor(executor, lambda: engine.chat(chat.messages, **chat.options))

    async def _stream_response(chat: ChatRequest) -> Any:
        chunk_id, now = f"chatcmpl-{uuid.uuid4().hex}", int(time.time())
        if chat.schema is not None:
            deltas = TextStream(_replay(await _answer(chat)))
        else:
            # stream() prepares the prompt eagerly: bad input is still answered with a 4xx here.
            deltas = await asyncio.to_thread(lambda: engine.stream(chat.messages, **chat.options))

        def event(delta: dict[str, Any], finish: str | None = None, usage: Any = None) -> str:
            chunk: dict[str, Any] = {
                "id": chunk_id,
                "object": "chat.completion.chunk",
                "created": now,
                "model": settings.model_name,
                "choices": [{"index": 0, "delta": delta, "finish_reason": finish}],
            }
            if usage is not None:
                chunk = {**chunk, "choices": [], "usage": usage}
            return f"data: {json.dumps(chunk, ensure_ascii=False)}\n\n"

        end = object()
        in_flight: list[Any] = []

        def next_delta() -> Any:
            return next(deltas, end)

        def close_deltas(_: Any = None) -> None:
            deltas.close()  # tells the engine to stop generating for a client that went away

        async def events() -> Any:
            try:
                yield event({"role": "assistant", "content": ""})
                while True:
                    in_flight[:] = [stream_pool.submit(next_delta)]
                    delta = await asyncio.wrap_future(in_flight[0])
                    if delta is end:
                        break
                    yield event({"content": delta})
                final = deltas.result  # set by the engine's TextStream once it ends: exact usage, finish reason
                if final is None:
                    raise RuntimeError("the engine's stream ended without its ChatResult")
                yield event({}, final.finish_reason)
                if chat.include_usage:
                    u = final.usage
                    usage = {
                        "prompt_tokens": u.prompt_tokens,
                        "completion_tokens": u.completion_tokens,
                        "total_tokens": u.total_tokens,
                    }
                    yield event({}, usage=usage)
                yield "data: [DONE]\n\n"
            except Exception as exc:  # the status line is sent: report the failure in the stream
                log.exception("stream failed")
                err = (
                    from_engine_error(exc)
                    if isinstance(exc, InternVLError)
                    else RequestError(f"{type(exc).__name__}: {exc}", 500, "generation_failed")
                )
                yield f"data: {json.dumps(error_body(str(err), err.status, err.code))}\n\n"
            finally:
                # A cancelled await leaves next() running in its thread: close the generator once it returns.
                if in_flight and not in_flight[0].done():
                    in_flight[0].add_done_callback(close_deltas)
                else:
                    close_deltas()

        return StreamingResponse(
            events(), media_type="text/event-stream", headers={"Cache-Control": "no-cache", "X-Accel-Buffering": "no"}
        )

    return app
