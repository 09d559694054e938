"""The MCP wiring: :func:`create_server` registers :mod:`.tools` on a FastMCP server (the official ``mcp`` SDK,
imported only here), :func:`run_stdio` and :func:`http_app` serve it.

Every tool has an input schema and a structured output schema (the pydantic models of :mod:`.tools`); a typed
:class:`~internvl_tools.errors.InternVLError` becomes an MCP tool error carrying its message, and the server stays
up. Generation runs in a worker thread, one call at a time on the engine; a cancelled call stops at the next token
(or page, for OCR), and OCR reports progress per page.
"""

# No `from __future__ import annotations`: FastMCP reads the tools' annotations (Context is imported locally).
import contextlib
import functools
import hmac
import io
import json
import os
import threading
from typing import Annotated, Any

from pydantic import Field

from internvl_tools.errors import DependencyMissingError, InternVLError
from internvl_tools.mcp.tools import (
    AnswerResult,
    ExtractResult,
    LocateResult,
    OCRResult,
    RegionResult,
    ToolPolicy,
    ask_image,
    describe_region,
    extract_json,
    locate_phrase,
    ocr_document,
)

__all__ = ["SERVER_NAME", "BearerAuth", "create_server", "http_app", "require_mcp", "run_stdio"]

SERVER_NAME = "internvl-tools"

_IMAGE = Annotated[
    str | None,
    Field(
        description="Path of an image or PDF relative to an allowed directory (e.g. 'scans/receipt.pdf'), or an "
        "http(s) URL when the server allows URLs. Give this or `image_base64`."
    ),
]
_IMAGE_B64 = Annotated[str | None, Field(description="The image's bytes, base64-encoded (or a data: URI).")]
_PAGE = Annotated[int | None, Field(default=None, ge=1, description="1-based page when `image` is a PDF (default 1).")]
_TOKENS = Annotated[int | None, Field(default=None, ge=1, description="New-token limit (capped by the server).")]


def require_mcp() -> Any:
    """The ``mcp`` SDK's FastMCP module, or a :class:`DependencyMissingError` naming the extra to install."""
    try:
        from mcp.server import fastmcp
    except ImportError as exc:
        raise DependencyMissingError(
            "The MCP server needs the official MCP SDK: pip install 'internvl-tools[mcp]'."
        ) from exc
    return fastmcp


def create_server(engine: Any, policy: ToolPolicy, *, host: str = "127.0.0.1", port: int = 8765) -> Any:
    """A FastMCP server with the five InternVL tools over ``engine``, reading only what ``policy`` allows."""
    import anyio
    from mcp.server.fastmcp import Context, FastMCP
    from mcp.server.fastmcp.exceptions import ToolError
    from mcp.types import ToolAnnotations

    server = FastMCP(SERVER_NAME, host=host, port=port, log_level="WARNING")
    lock = threading.Lock()  # one call at a time on the engine; a cancelled call frees it at its next token
    read_only = ToolAnnotations(readOnlyHint=True, openWorldHint=policy.allow_remote_urls)

    async def run(ctx: Context, fn: Any, **kwargs: Any) -> Any:
        cancel = threading.Event()

        def progress(done: int, total: int, message: str) -> None:
            with contextlib.suppress(Exception):  # a client that went away must not fail the work
                anyio.from_thread.run(functools.partial(ctx.report_progress, done, total, message))

        def work() -> Any:
            with lock:
                return fn(engine, policy, cancel=cancel, **kwargs)

        if fn is ocr_document:
            kwargs["progress"] = progress
        try:
            return await anyio.to_thread.run_sync(work, abandon_on_cancel=True)
        except InternVLError as exc:
            raise ToolError(f"{type(exc).__name__}: {' '.join(str(exc).split())}") from exc
        finally:
            cancel.set()  # after a cancellation the thread stops at its next token or page

    @server.tool(name="internvl_ask", annotations=read_only, structured_output=True)
    async def ask(
        question: Annotated[str, Field(description="The question about the image.")],
        ctx: Context,
        image: _IMAGE = None,
        image_base64: _IMAGE_B64 = None,
        page: _PAGE = None,
        max_new_tokens: _TOKENS = None,
    ) -> AnswerResult:
        """Answer a question about an image or a page of a PDF."""
        return await run(
            ctx,
            ask_image,
            question=question,
            image=image,
            image_base64=image_base64,
            page=page,
            max_new_tokens=max_new_tokens,
        )

    @server.tool(name="internvl_locate", annotations=read_only, structured_output=True)
    async def locate(
        phrase: Annotated[str, Field(description="What to find, e.g. 'the total amount' or 'the red car'.")],
        ctx: Context,
        image: _IMAGE = None,
        image_base64: _IMAGE_B64 = None,
        page: _PAGE = None,
        max_new_tokens: _TOKENS = None,
    ) -> LocateResult:
        """Locate a phrase in an image or PDF page: bounding boxes [x1, y1, x2, y2] in pixels of the image
        (origin top-left), with the image's size."""
        return await run(
            ctx,
            locate_phrase,
            phrase=phrase,
            image=image,
            image_base64=image_base64,
            page=page,
            max_new_tokens=max_new_tokens,
        )

    @server.tool(name="internvl_ocr", annotations=read_only, structured_output=True)
    async def ocr(
        ctx: Context,
        document: Annotated[
            str | None, Field(description="Path of a PDF, TIFF or image relative to an allowed directory.")
        ] = None,
        document_base64: Annotated[str | None, Field(description="The document's bytes, base64-encoded.")] = None,
        pages: Annotated[str | None, Field(description="1-based selection such as '1-3,7' (default: all).")] = None,
        max_new_tokens: _TOKENS = None,
    ) -> OCRResult:
        """Read the text of a PDF (or TIFF / image) page by page: page-numbered Markdown, a few pages a call."""
        return await run(
            ctx,
            ocr_document,
            document=document,
            document_base64=document_base64,
            pages=pages,
            max_new_tokens=max_new_tokens,
        )

    @server.tool(name="internvl_extract", annotations=read_only, structured_output=True)
    async def extract(
        instruction: Annotated[str, Field(description="What to extract, e.g. 'Read the receipt.'")],
        json_schema: Annotated[dict[str, Any], Field(description="JSON schema the answer must satisfy.")],
        ctx: Context,
        image: _IMAGE = None,
        image_base64: _IMAGE_B64 = None,
        page: _PAGE = None,
        max_new_tokens: _TOKENS = None,
    ) -> ExtractResult:
        """Extract data from an image or PDF page as JSON valid under the given JSON schema (constrained decoding)."""
        return await run(
            ctx,
            extract_json,
            instruction=instruction,
            schema=json_schema,
            image=image,
            image_base64=image_base64,
            page=page,
            max_new_tokens=max_new_tokens,
        )

    @server.tool(name="internvl_describe_region", annotations=read_only, structured_output=True)
    async def region(
        box: Annotated[
            list[float], Field(min_length=4, max_length=4, description="[x1, y1, x2, y2] in pixels of the image.")
        ],
        ctx: Context,
        question: Annotated[
            str | None, Field(description="A question about the region (default: describe it).")
        ] = None,
        image: _IMAGE = None,
        image_base64: _IMAGE_B64 = None,
        page: _PAGE = None,
        max_new_tokens: _TOKENS = None,
    ) -> RegionResult:
        """Describe a region of an image or PDF page (or answer a question about it)."""
        return await run(
            ctx,
            describe_region,
            box=box,
            question=question,
            image=image,
            image_base64=image_base64,
            page=page,
            max_new_tokens=max_new_tokens,
        )

    return server


async def run_stdio(server: Any) -> None:
    """Serve over stdio. The protocol gets its own copy of stdout; file descriptor 1 then points at stderr, so a
    stray print (from a library, say) can never corrupt the JSON-RPC stream."""
    import anyio
    from mcp.server.stdio import stdio_server

    protocol_fd = os.dup(1)
    os.dup2(2, 1)
    stdout = anyio.wrap_file(io.TextIOWrapper(os.fdopen(protocol_fd, "wb"), encoding="utf-8"))
    low = server._mcp_server  # FastMCP.run_stdio_async, with our stdout
    async with stdio_server(stdout=stdout) as (read_stream, write_stream):
        await low.run(read_stream, write_stream, low.create_initialization_options())


class BearerAuth:
    """ASGI middleware: every HTTP request needs ``Authorization: Bearer <key>`` (compared in constant time)."""

    def __init__(self, app: Any, api_key: str) -> None:
        self.app = app
        self.expected = f"Bearer {api_key}".encode()

    async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
        if scope["type"] == "http":
            given = dict(scope.get("headers") or []).get(b"authorization", b"")
            if not hmac.compare_digest(given, self.expected):
                body = json.dumps({"error": "unauthorized: send 'Authorization: Bearer <key>'"}).encode()
                headers = [(b"content-type", b"application/json"), (b"www-authenticate", b"Bearer")]
                await send({"type": "http.response.start", "status": 401, "headers": headers})
                await send({"type": "http.response.body", "body": body})
                return
        await self.app(scope, receive, send)


def http_app(server: Any, api_key: str | None = None) -> Any:
    """The streamable HTTP ASGI app (at ``/mcp``), behind :class:`BearerAuth` when ``api_key`` is given."""
    app = server.streamable_http_app()
    return BearerAuth(app, api_key) if api_key else app
