"""The MCP server's tools as plain functions over an engine and a :class:`ToolPolicy`: testable without MCP.

Each tool takes a *reference* to its input, because an MCP client sends only JSON: a path relative to one of the
allowed directories (checked by the core's :func:`~internvl_tools.media.confine_path` with ``relative=True``, as the
LangChain tools do), an inline base64 image (or ``data:`` URI), or an http(s) URL when the policy allows URLs. Each
returns a pydantic model (the tool's structured output; boxes are JSON in pixels of the image they were found in,
with that image's size) and raises a typed :class:`~internvl_tools.errors.InternVLError` whose message names the fix.

>>> policy = ToolPolicy(allowed_dirs=("/srv/scans",))
>>> policy.media_policy().allow_remote, policy.max_pages
(False, 20)
"""

from __future__ import annotations

import base64
import binascii
import threading
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, Field

from internvl_tools.documents.output import to_markdown
from internvl_tools.documents.pipeline import read_pdf
from internvl_tools.documents.render import render_pages
from internvl_tools.documents.sizing import tile_grid_for
from internvl_tools.documents.sources import page_count, parse_pages
from internvl_tools.errors import (
    ConfigError,
    GenerationError,
    InternVLError,
    MediaPolicyError,
    PageRenderError,
    PageSelectionError,
    RemoteFetchDisabledError,
)
from internvl_tools.generation.structured import json_instruction, validate_output
from internvl_tools.grounding.parser import parse_grounding
from internvl_tools.grounding.prompts import grounding_prompt, region_prompt
from internvl_tools.grounding.types import BoundingBox
from internvl_tools.media.images import load_image
from internvl_tools.media.paths import confine_path, open_confined
from internvl_tools.media.policy import MediaPolicy
from internvl_tools.messages import user_message

__all__ = [
    "COORDINATE_SPACE",
    "AnswerResult",
    "Box",
    "CallCancelled",
    "ExtractResult",
    "LocateResult",
    "OCRPage",
    "OCRResult",
    "RegionResult",
    "SourceInfo",
    "ToolPolicy",
    "ask_image",
    "describe_region",
    "extract_json",
    "load_visual",
    "locate_phrase",
    "ocr_document",
]

#: How every box of these tools is expressed.
COORDINATE_SPACE = "pixels"
_DOCUMENT_SUFFIXES = (".pdf", ".tif", ".tiff")

Progress = Callable[[int, int, str], None]


class CallCancelled(GenerationError):
    """The client cancelled the call; nothing more is generated for it."""


@dataclass(frozen=True)
class ToolPolicy:
    """What the tools may read and how much one call may ask for.

    ``allowed_dirs``: the folders relative paths are read from (none: local files are refused). URLs only with
    ``allow_remote_urls`` (public addresses, or ``allow_private_hosts``). ``max_input_bytes`` caps a file or an
    inline image, ``max_pages`` the pages one OCR call reads, ``max_prompt_chars`` a question or instruction,
    ``max_new_tokens`` the tokens of one answer (a caller may ask for fewer).
    """

    allowed_dirs: tuple[str, ...] = ()
    allow_remote_urls: bool = False
    allow_private_hosts: tuple[str, ...] = ()
    max_input_bytes: int = 20 * 1024 * 1024
    max_pages: int = 20
    max_prompt_chars: int = 4000
    max_new_tokens: int = 1024

    def __post_init__(self) -> None:
        for name in ("max_input_bytes", "max_pages", "max_prompt_chars", "max_new_tokens"):
            if getattr(self, name) < 1:
                raise ConfigError(f"{name} must be >= 1, got {getattr(self, name)}.")

    def media_policy(self) -> MediaPolicy:
        """The core policy every decode goes through (files only inside ``allowed_dirs``; URLs as configured)."""
        return MediaPolicy(
            allowed_dirs=self.allowed_dirs or None,
            allow_local_files=bool(self.allowed_dirs),
            allow_remote=self.allow_remote_urls,
            allow_private_hosts=frozenset(self.allow_private_hosts),
            max_bytes=self.max_input_bytes,
        )

    def tokens(self, asked: int | None, default: int) -> int:
        """The new-token budget of one call: what the caller asked for (else ``default``), capped."""
        if asked is not None and asked < 1:
            raise ConfigError(f"max_new_tokens must be >= 1, got {asked}.")
        return min(asked or default, self.max_new_tokens)

    def text(self, value: str | None, what: str, *, required: bool = True) -> str | None:
        """``value`` checked: present when required, within ``max_prompt_chars``."""
        if value is None or not value.strip():
            if required:
                raise ConfigError(f"`{what}` is empty; say what you want to know.")
            return None
        if len(value) > self.max_prompt_chars:
            raise ConfigError(
                f"`{what}` has {len(value)} characters; this server takes at most {self.max_prompt_chars} "
                "(--max-prompt-chars): shorten it."
            )
        return value


class SourceInfo(BaseModel):
    """Where the picture came from and its size (boxes are in pixels of this image)."""

    source: str = Field(description="The path as given, 'base64', or the URL.")
    page: int | None = Field(default=None, description="1-based page for PDFs and TIFFs.")
    total_pages: int | None = Field(default=None, description="Pages in the document.")
    image_size: tuple[int, int] = Field(description="(width, height) in pixels of the image the model saw.")


class Box(BaseModel):
    """One box, ``[x1, y1, x2, y2]`` in pixels of the image (origin top-left, x right, y down)."""

    label: str | None = Field(default=None, description="What the model named the box.")
    x1: float
    y1: float
    x2: float
    y2: float


class AnswerResult(BaseModel):
    answer: str
    finish_reason: str | None = None
    input: SourceInfo


class LocateResult(BaseModel):
    phrase: str
    boxes: list[Box] = Field(description="Boxes found, in `coordinate_space` of `input.image_size`.")
    coordinate_space: Literal["pixels"] = COORDINATE_SPACE
    input: SourceInfo
    raw_text: str = Field(description="The model's answer the boxes were parsed from.")
    warnings: list[str] = Field(default_factory=list)


class RegionResult(BaseModel):
    box: Box
    coordinate_space: Literal["pixels"] = COORDINATE_SPACE
    description: str
    input: SourceInfo


class ExtractResult(BaseModel):
    data: Any = Field(description="The JSON answer, valid under the schema given.")
    input: SourceInfo


class OCRPage(BaseModel):
    page: int
    label: str
    ok: bool
    text: str | None = None
    error: str | None = None


class OCRResult(BaseModel):
    source: str
    total_pages: int
    pages: list[OCRPage]
    markdown: str = Field(description="The pages as one Markdown document, each after a '<!-- page N -->' marker.")
    summary: str


# ---------------------------------------------------------------------------------------------------------- inputs


def _decode_base64(data: str, policy: ToolPolicy) -> bytes:
    if data[:5].lower() == "data:":
        _, _, data = data.partition(",")
    limit = policy.max_input_bytes
    if len(data) > (limit * 4) // 3 + 8:
        raise MediaPolicyError(
            f"The inline image is over {limit // (1024 * 1024)} MiB (--max-input-mb); send a smaller image or a path."
        )
    try:
        return base64.b64decode("".join(data.split()), validate=True)
    except (binascii.Error, ValueError) as exc:
        raise ConfigError(f"`image_base64` is not valid base64 ({exc}); send the file's bytes base64-encoded.") from exc


def _confined(ref: str, policy: ToolPolicy) -> Path:
    if not policy.allowed_dirs:
        raise ConfigError(
            f"Cannot read {ref[:120]!r}: this server has no allowed directories (start it with --allowed-dir DIR), "
            "or send the image as `image_base64`."
        )
    return confine_path(ref, policy.allowed_dirs, relative=True, max_bytes=policy.max_input_bytes)


def _render_one(engine: Any, source: Any, name: str, page: int, policy: ToolPolicy) -> tuple[Any, SourceInfo]:
    try:
        grid = tile_grid_for(engine)
    except InternVLError:
        grid = None  # the generation call reports the load failure with its own message
    # The worker process bounds each page of an untrusted PDF (memory, CPU time) and isolates crashes.
    with render_pages(source, pages=[page], tile_grid=grid, policy=policy.media_policy()) as stream:
        total = stream.page_count
        rendered = next(iter(stream), None)
    if rendered is None or rendered.image is None:
        why = rendered.error if rendered is not None else "no page rendered"
        raise PageRenderError(f"Page {page} of {name!r} could not be rendered: {why}")
    return rendered.image, SourceInfo(source=name, page=page, total_pages=total, image_size=rendered.image.size)


def load_visual(
    engine: Any, policy: ToolPolicy, image: str | None, image_base64: str | None, page: int | None = None
) -> tuple[Any, SourceInfo]:
    """The picture a call is about (a page of it for PDFs/TIFFs) and facts about it; exactly one of ``image`` (a
    relative path, or a URL when allowed) and ``image_base64`` (bytes of an image, or a ``data:`` URI)."""
    if (image is None) == (image_base64 is None):
        raise ConfigError("Give exactly one of `image` (a path relative to an allowed directory) and `image_base64`.")
    if page is not None and page < 1:
        raise PageSelectionError(f"page={page}: pages are numbered from 1.")
    media = policy.media_policy()
    if image_base64 is not None:
        if page not in (None, 1):
            raise ConfigError("`page` applies to PDFs given as `image`; an inline image has one page.")
        pil = load_image(_decode_base64(image_base64, policy), policy=media)
        return pil, SourceInfo(source="base64", image_size=pil.size)
    ref = (image or "").strip()
    if not ref:
        raise ConfigError("`image` is empty; pass a path relative to an allowed directory.")
    if ref[:8].lower().startswith(("http://", "https://")):
        if not policy.allow_remote_urls:
            raise RemoteFetchDisabledError(
                f"URLs are disabled on this server ({ref[:80]!r}); send the image as `image_base64`, or start the "
                "server with --allow-remote-urls."
            )
        if page not in (None, 1):
            raise ConfigError("`page` applies to local PDFs; a URL is read as one image.")
        pil = load_image(ref, policy=media)
        return pil, SourceInfo(source=ref, image_size=pil.size)
    path = _confined(ref, policy)
    if path.suffix.lower() in _DOCUMENT_SUFFIXES:
        return _render_one(engine, path, ref, page or 1, policy)
    if page not in (None, 1):
        raise ConfigError(f"{ref!r} is an image, not a PDF; leave `page` out.")
    # Opened through the core (fstat and real path re-checked on the open file), then decoded from the handle.
    with open_confined(ref, policy.allowed_dirs, relative=True) as handle:
        pil = load_image(handle, policy=media)
    return pil, SourceInfo(source=ref, image_size=pil.size)


# ---------------------------------------------------------------------------------------------------------- tools


def _generate(engine: Any, pil: Any, prompt: str, max_new_tokens: int, cancel: threading.Event | None) -> Any:
    """One answer, streamed so a cancelled call stops at the next token; the stream's ``ChatResult``."""
    if cancel is not None and cancel.is_set():
        raise CallCancelled("The call was cancelled before it started.")
    stream = engine.stream([user_message(prompt, pil)], max_new_tokens=max_new_tokens)
    try:
        for _ in stream:
            if cancel is not None and cancel.is_set():
                raise CallCancelled("The call was cancelled; generation stopped.")
    finally:
        close = getattr(stream, "close", None)
        if close is not None:
            close()
    return stream.result


def ask_image(
    engine: Any,
    policy: ToolPolicy,
    question: str,
    image: str | None = None,
    image_base64: str | None = None,
    page: int | None = None,
    max_new_tokens: int | None = None,
    cancel: threading.Event | None = None,
) -> AnswerResult:
    """Answer ``question`` about an image or a page of a PDF."""
    question = policy.text(question, "question") or ""
    pil, info = load_visual(engine, policy, image, image_base64, page)
    result = _generate(engine, pil, question, policy.tokens(max_new_tokens, 256), cancel)
    return AnswerResult(answer=result.text, finish_reason=result.finish_reason, input=info)


def _box(box: BoundingBox, label: str | None = None) -> Box:
    x1, y1, x2, y2 = box.xyxy
    return Box(label=label, x1=x1, y1=y1, x2=x2, y2=y2)


def locate_phrase(
    engine: Any,
    policy: ToolPolicy,
    phrase: str,
    image: str | None = None,
    image_base64: str | None = None,
    page: int | None = None,
    max_new_tokens: int | None = None,
    cancel: threading.Event | None = None,
) -> LocateResult:
    """Boxes (pixels of the image) of what ``phrase`` names, with the official grounding prompt."""
    phrase = policy.text(phrase, "phrase") or ""
    pil, info = load_visual(engine, policy, image, image_base64, page)
    result = _generate(engine, pil, grounding_prompt(phrase), policy.tokens(max_new_tokens, 100), cancel)
    found = parse_grounding(result.text, pil.size)  # never raises on model text
    boxes = [_box(b, label) for b, label in zip(found.boxes, found.labels, strict=False)]
    warnings = [str(getattr(w, "message", w)) for w in found.warnings]
    return LocateResult(phrase=phrase, boxes=boxes, input=info, raw_text=found.raw_text, warnings=warnings)


def describe_region(
    engine: Any,
    policy: ToolPolicy,
    box: list[float],
    question: str | None = None,
    image: str | None = None,
    image_base64: str | None = None,
    page: int | None = None,
    max_new_tokens: int | None = None,
    cancel: threading.Event | None = None,
) -> RegionResult:
    """Describe (or answer ``question`` about) the region ``box`` = ``[x1, y1, x2, y2]`` in pixels of the image."""
    question = policy.text(question, "question", required=False)
    if len(box) != 4:
        raise ConfigError(f"`box` needs 4 numbers [x1, y1, x2, y2] in pixels, got {len(box)}.")
    try:
        bbox = BoundingBox.from_xyxy(box)
    except ValueError as exc:
        raise ConfigError(f"`box` {box!r} is not a box: {exc}") from exc
    pil, info = load_visual(engine, policy, image, image_base64, page)
    width, height = pil.size
    if bbox.x2 <= 0 or bbox.y2 <= 0 or bbox.x1 >= width or bbox.y1 >= height:
        raise ConfigError(f"`box` {list(bbox.xyxy)} lies outside the {width}x{height} px image; give pixels inside it.")
    prompt = region_prompt(bbox, pil.size, question)
    result = _generate(engine, pil, prompt, policy.tokens(max_new_tokens, 128), cancel)
    return RegionResult(box=_box(bbox), description=result.text, input=info)


def extract_json(
    engine: Any,
    policy: ToolPolicy,
    instruction: str,
    schema: dict[str, Any],
    image: str | None = None,
    image_base64: str | None = None,
    page: int | None = None,
    max_new_tokens: int | None = None,
    cancel: threading.Event | None = None,
) -> ExtractResult:
    """JSON valid under the caller's JSON ``schema``, decoded under its grammar (``engine.generate_structured``)."""
    from internvl_tools.server.errors import RequestError
    from internvl_tools.server.validation import check_json_schema

    instruction = policy.text(instruction, "instruction") or ""
    if not isinstance(schema, dict) or not schema:
        raise ConfigError("`schema` must be a JSON schema object, e.g. {'type': 'object', 'properties': {...}}.")
    try:
        check_json_schema(schema)  # refuses schemas no answer satisfies or that would hang the grammar compiler
    except RequestError as exc:
        raise ConfigError(f"`schema` is refused: {exc}") from exc
    pil, info = load_visual(engine, policy, image, image_base64, page)
    if cancel is not None and cancel.is_set():
        raise CallCancelled("The call was cancelled before it started.")
    budget = policy.tokens(max_new_tokens, 512)
    messages = [user_message(f"{instruction}\n{json_instruction(schema)}", pil)]
    result = engine.generate_structured(messages, schema, max_new_tokens=budget)
    if result.finish_reason != "stop":
        raise GenerationError(
            f"The JSON answer did not complete within max_new_tokens={budget}; raise max_new_tokens (at most "
            f"{policy.max_new_tokens}) or simplify the schema. Partial answer: {result.text[:200]!r}"
        )
    return ExtractResult(data=validate_output(result.text, schema), input=info)


def ocr_document(
    engine: Any,
    policy: ToolPolicy,
    document: str | None = None,
    document_base64: str | None = None,
    pages: str | None = None,
    max_new_tokens: int | None = None,
    progress: Progress | None = None,
    cancel: threading.Event | None = None,
) -> OCRResult:
    """Transcribe pages of a PDF, TIFF or image to Markdown, page by page (at most ``policy.max_pages`` a call)."""
    if (document is None) == (document_base64 is None):
        raise ConfigError(
            "Give exactly one of `document` (a path relative to an allowed directory) and `document_base64`."
        )
    if document_base64 is not None:
        source: Any = _decode_base64(document_base64, policy)
        name = "base64"
    else:
        name = (document or "").strip()
        source = _confined(name, policy)
    media = policy.media_policy()
    total = page_count(source, policy=media)
    selected = [i + 1 for i in parse_pages(pages, total)]
    if len(selected) > policy.max_pages:
        first = selected[0]
        raise PageSelectionError(
            f"{len(selected)} pages selected; one call reads at most {policy.max_pages} (--max-pages). Ask for "
            f"pages='{first}-{selected[policy.max_pages - 1]}', then the next ones."
        )
    budget = policy.tokens(max_new_tokens, 512)
    results = []
    with read_pdf(
        engine, source, task="ocr", pages=selected, progress=False, batch_size=1, max_new_tokens=budget
    ) as stream:
        for result in stream:
            results.append(result)
            if progress is not None:
                progress(len(results), len(selected), f"page {result.page} of {total}")
            if cancel is not None and cancel.is_set():
                raise CallCancelled(f"The call was cancelled after {len(results)} of {len(selected)} pages.")
    read = [OCRPage(page=r.page, label=r.label, ok=r.ok, text=r.text, error=r.error) for r in results]
    failed = [p.page for p in read if not p.ok]
    summary = f"{len(read) - len(failed)} of {len(read)} pages read" + (f"; failed: pages {failed}" if failed else "")
    return OCRResult(source=name, total_pages=total, pages=read, markdown=to_markdown(results), summary=summary)
