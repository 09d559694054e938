"""``internvl-tools serve``: one local engine behind the OpenAI-compatible API subset that clients need.

Endpoints: ``GET /v1/models``, ``POST /v1/chat/completions`` (text and ``image_url`` parts, ``stream``, ``stop``,
``max_tokens``, ``temperature``, ``top_p``, ``top_k``, ``seed``, ``response_format`` ``json_schema`` /
``json_object``) and an unauthenticated ``GET /health``. Concurrent non-streaming requests that arrive within a
few milliseconds of each other are answered by one ``engine.batch`` call (the micro-batcher); streaming and
structured requests run one by one. Images come as data URIs; remote image URLs are refused unless
``--allow-remote-images`` (then fetched under the :class:`~internvl_tools.MediaPolicy` SSRF guard); server paths
are never read. The server binds to loopback unless told otherwise and takes an optional API key.

    $ internvl-tools serve OpenGVLab/InternVL3-1B-hf --port 23333          # or: python -m internvl_tools.server
    >>> from internvl_tools import InternVL
    >>> vlm = InternVL.from_server("http://127.0.0.1:23333/v1")           # doctest: +SKIP

>>> build_parser().parse_args(["tiny"]).port
23333
"""

# No `from __future__ import annotations`: FastAPI reads the endpoints' annotations (fastapi.Request), which
# live in create_app's scope, at definition time.
import argparse
import asyncio
import ipaddress
import json
import logging
import os
import secrets
import sys
import threading
import time
import uuid
from concurrent.futures import ThreadPoolExecutor
from typing import Any

from internvl_tools.errors import (
    DependencyMissingError,
    InternVLError,
)
from internvl_tools.server_batching import MicroBatcher
from internvl_tools.server_requests import (
    CHARS_PER_TOKEN_CEILING,
    ChatCompletionRequest,
    ChatRequest,
    RequestError,
    ServerSettings,
    build_media_policy,
    check_prompt_size,
    error_body,
    error_result_to_request_error,
    from_engine_error,
    has_remote_images,
    parse_body,
    parse_messages,
    parse_options,
    parse_request,
    parse_schema,
)

__all__ = ["API_KEY_ENV", "MicroBatcher", "ServerSettings", "build_parser", "create_app", "main"]

API_KEY_ENV = "INTERNVL_TOOLS_API_KEY"
DEFAULT_PORT = 23333
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


def _require_fastapi() -> Any:
    try:
        import fastapi
    except ImportError as exc:
        raise DependencyMissingError(
            "The server needs FastAPI and uvicorn: pip install 'internvl-tools[server]'."
        ) from exc
    return fastapi


def _tile_cap(engine: Any, settings: ServerSettings) -> int:
    info = engine.info
    if not getattr(info, "dynamic_image_size", True):
        return 1
    return int(settings.max_tiles or getattr(engine, "max_tiles", None) or getattr(info, "max_dynamic_patch", 12) or 12)


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
    fastapi = _require_fastapi()
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
            result = await _answer(chat)
            deltas: Any = iter([result.text])
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
            close = getattr(deltas, "close", None)
            if close is not None:
                close()  # tells the engine to stop generating for a client that went away

        async def events() -> Any:
            text: list[str] = []
            try:
                yield event({"role": "assistant", "content": ""})
                while True:
                    in_flight[:] = [stream_pool.submit(next_delta)]
                    delta = await asyncio.wrap_future(in_flight[0])
                    if delta is end:
                        break
                    text.append(delta)
                    yield event({"content": delta})
                answer = "".join(text)
                final = getattr(deltas, "result", None)  # the engine's TextStream: exact usage and finish reason
                finish = final.finish_reason if final is not None else _stream_finish(engine, answer, chat.options)
                yield event({}, finish)
                if chat.include_usage:
                    if final is not None:
                        usage = {
                            "prompt_tokens": final.usage.prompt_tokens,
                            "completion_tokens": final.usage.completion_tokens,
                            "total_tokens": final.usage.total_tokens,
                        }
                    else:
                        usage = await asyncio.to_thread(_stream_usage, engine, chat, answer)
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


def _completion_tokens(engine: Any, text: str) -> int:
    tokenizer = getattr(engine, "tokenizer", None)
    if tokenizer is None or not text:
        return 0
    return len(tokenizer(text, add_special_tokens=False)["input_ids"])


def _stream_finish(engine: Any, text: str, options: dict[str, Any]) -> str:
    """The engine's stream has no finish reason: "length" when the answer used up ``max_new_tokens``."""
    from internvl_tools.generation.options import DEFAULT_MAX_NEW_TOKENS

    limit = options.get("max_new_tokens", DEFAULT_MAX_NEW_TOKENS)
    try:
        return "length" if _completion_tokens(engine, text) >= limit else "stop"
    except Exception:
        return "stop"


def _stream_usage(engine: Any, chat: ChatRequest, text: str) -> dict[str, int]:
    prompt = engine.count_tokens(chat.messages)
    completion = _completion_tokens(engine, text)
    return {"prompt_tokens": prompt, "completion_tokens": completion, "total_tokens": prompt + completion}


# ---------------------------------------------------------------------------------------------------- command line


def build_parser(prog: str = "internvl-tools serve") -> argparse.ArgumentParser:
    """The argument parser of ``internvl-tools serve`` / ``python -m internvl_tools.server``."""
    parser = argparse.ArgumentParser(
        prog=prog,
        description="Serve an InternVL checkpoint over an OpenAI-compatible API (/v1/models, /v1/chat/completions).",
    )
    parser.add_argument("model", metavar="MODEL", help="hub id, local checkpoint directory, or 'tiny'")
    parser.add_argument("--host", default="127.0.0.1", help="address to bind (default: loopback only)")
    parser.add_argument("--port", type=int, default=DEFAULT_PORT, help=f"port (default {DEFAULT_PORT})")
    parser.add_argument(
        "--api-key", default=None, help=f"require 'Authorization: Bearer KEY' (default: ${API_KEY_ENV} if set)"
    )
    parser.add_argument("--served-model-name", default=None, help="model id reported by /v1/models (default MODEL)")
    parser.add_argument("--device", default="auto", help="auto, cpu, cuda:0, ...")
    parser.add_argument("--dtype", default="auto", help="auto, bfloat16, float16, float32")
    parser.add_argument(
        "--max-tiles",
        type=int,
        default=None,
        help="tile budget per request (default: the checkpoint's max_dynamic_patch)",
    )
    parser.add_argument("--template", default=None, help="override the conversation template")
    parser.add_argument("--trust-remote-code", action="store_true", help="run the checkpoint's own modeling code")
    parser.add_argument(
        "--no-batching",
        dest="batching",
        action="store_false",
        help="answer requests one at a time instead of batching concurrent ones",
    )
    parser.add_argument("--max-batch-size", type=int, default=8, help="most requests in one batch (default 8)")
    parser.add_argument(
        "--batch-window-ms",
        type=float,
        default=5.0,
        help="how long to wait for more requests to batch with the first one (default 5)",
    )
    parser.add_argument("--max-images", type=int, default=8, help="most images in one request (default 8)")
    parser.add_argument("--max-request-mb", type=float, default=20.0, help="largest request body (default 20 MB)")
    parser.add_argument(
        "--max-prompt-chars",
        type=int,
        default=None,
        help="refuse requests with more text than this, before tokenizing (default: the context "
        f"length times {CHARS_PER_TOKEN_CEILING})",
    )
    parser.add_argument(
        "--media-timeout",
        type=float,
        default=10.0,
        help="seconds for fetching one remote image, redirects included (default 10)",
    )
    parser.add_argument(
        "--max-concurrent-fetches",
        type=int,
        default=4,
        help="requests fetching remote images at once; more are answered 503 (default 4)",
    )
    parser.add_argument(
        "--allow-remote-images",
        action="store_true",
        help="fetch http(s) image URLs (public addresses only, with timeouts and size caps)",
    )
    parser.add_argument(
        "--allow-private-host",
        action="append",
        default=[],
        metavar="HOST",
        help="with --allow-remote-images: also fetch from this private host or network",
    )
    parser.add_argument("--log-level", default="info", choices=["critical", "error", "warning", "info", "debug"])
    return parser


def _is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False


def main(argv: list[str] | None = None) -> int:
    """Run the server (blocks until interrupted); returns the process exit status.

    >>> main(["--help"])  # doctest: +SKIP
    """
    args = build_parser().parse_args(argv)
    if args.max_tiles is not None and not 1 <= args.max_tiles <= 40:
        print(f"error: --max-tiles must be between 1 and 40, got {args.max_tiles}", file=sys.stderr)
        return 2
    if args.max_batch_size < 1 or args.max_images < 0 or args.max_request_mb <= 0 or args.batch_window_ms < 0:
        print(
            "error: --max-batch-size must be >= 1; --max-images, --max-request-mb, --batch-window-ms >= 0",
            file=sys.stderr,
        )
        return 2
    if (
        args.max_concurrent_fetches < 1
        or args.media_timeout <= 0
        or (args.max_prompt_chars is not None and args.max_prompt_chars < 1)
    ):
        print(
            "error: --max-concurrent-fetches, --media-timeout and --max-prompt-chars must be positive", file=sys.stderr
        )
        return 2
    api_key, source = (
        (args.api_key, "--api-key") if args.api_key is not None else (os.environ.get(API_KEY_ENV), f"${API_KEY_ENV}")
    )
    if api_key is not None and not (api_key and all(33 <= ord(c) <= 126 for c in api_key)):
        # An empty key must not quietly mean "no authentication".
        print(
            f"error: {source} is {'empty' if not api_key else 'not printable ASCII without spaces'}; give a real "
            f"key, or leave {source} out (and unset {API_KEY_ENV}) to serve without authentication.",
            file=sys.stderr,
        )
        return 2
    logging.basicConfig(level=args.log_level.upper(), format="%(levelname)s %(name)s: %(message)s")
    try:
        _require_fastapi()
        import uvicorn
    except (DependencyMissingError, ImportError) as exc:
        print(f"error: {exc} (pip install 'internvl-tools[server]')", file=sys.stderr)
        return 1
    if not _is_loopback(args.host) and not api_key:
        log.warning(
            "Serving on %s without an API key: anyone who can reach this address can use the model. "
            "Pass --api-key or set %s.",
            args.host,
            API_KEY_ENV,
        )
    from internvl_tools.engines.local import InternVL

    engine = InternVL.from_pretrained(
        args.model,
        device=args.device,
        dtype=args.dtype,
        max_tiles=args.max_tiles,
        template=args.template,
        trust_remote_code=args.trust_remote_code,
    )
    try:
        engine.load()  # load before binding: once the port answers, the model is ready
    except InternVLError as exc:
        print(f"error: could not load {args.model!r}: {exc}", file=sys.stderr)
        return 1
    name = args.served_model_name or args.model
    settings = ServerSettings(
        model_name=name,
        aliases=tuple({args.model, os.path.basename(os.path.normpath(args.model))} - {name}),
        api_key=api_key,
        batching=args.batching,
        max_batch_size=args.max_batch_size,
        batch_window_ms=args.batch_window_ms,
        allow_remote_images=args.allow_remote_images,
        allow_private_hosts=tuple(args.allow_private_host),
        max_request_bytes=int(args.max_request_mb * 1024 * 1024),
        max_images=args.max_images,
        max_tiles=args.max_tiles,
        media_timeout=args.media_timeout,
        max_prompt_chars=args.max_prompt_chars,
        max_concurrent_fetches=args.max_concurrent_fetches,
    )
    app = create_app(engine, settings)
    log.info(
        "Serving %r on http://%s:%d/v1 (batching %s)", name, args.host, args.port, "on" if args.batching else "off"
    )
    uvicorn.run(app, host=args.host, port=args.port, log_level=args.log_level, access_log=False)
    return 0


if __name__ == "__main__":
    sys.exit(main())
