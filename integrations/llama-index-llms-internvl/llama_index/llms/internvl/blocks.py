"""LlamaIndex ``ChatMessage.blocks`` → the core's transformers-style message dicts.

Images are handed to the core *unresolved* (path, URL or data URI as text; inline bytes decoded), so the engine's
:class:`~internvl_tools.MediaPolicy` decides what may be read or fetched. ``ImageBlock.resolve_image()`` is never
called on a path or URL: it would read any file and GET any URL, bypassing the policy.

>>> from llama_index.core.llms import ChatMessage, TextBlock
>>> to_core_messages([ChatMessage(role="user", blocks=[TextBlock(text="Hi")])])
[{'role': 'user', 'content': [{'type': 'text', 'text': 'Hi'}]}]
"""

from __future__ import annotations

import json
import logging
import os
from collections.abc import Sequence
from io import IOBase
from pathlib import Path
from typing import Any

from llama_index.core.base.llms.types import (
    AudioBlock,
    CachePoint,
    ChatMessage,
    DocumentBlock,
    ImageBlock,
    MessageRole,
    TextBlock,
    ThinkingBlock,
    ToolCallBlock,
    VideoBlock,
)

import internvl_tools
from internvl_tools.generation.tools import render_parallel_calls, render_tool_call
from internvl_tools.media import confine_path

log = logging.getLogger(__name__)

__all__ = ["image_documents_to_blocks", "to_core_messages"]

_ROLES = {
    MessageRole.SYSTEM: "system",
    MessageRole.DEVELOPER: "system",
    MessageRole.USER: "user",
    MessageRole.ASSISTANT: "assistant",
    MessageRole.MODEL: "assistant",
    MessageRole.CHATBOT: "assistant",
    # InternVL has no tool role: tool and function results are read as user turns.
    MessageRole.TOOL: "user",
    MessageRole.FUNCTION: "user",
}

_TEXT_MIMETYPES = ("text/", "application/json", "application/xml")


def _check_local_path(path: str, policy: Any) -> str:
    """A document or video path as the media policy allows it (the core checks image paths itself).

    The core's one path check: confined to ``allowed_dirs`` when set, and a regular file either way, so a FIFO or
    device never reaches ``open()`` (it would block or never end). Every problem is a typed core error.
    """
    if policy is not None and not getattr(policy, "allow_local_files", True):
        raise internvl_tools.PathNotAllowedError(
            f"Reading local files is disabled by the media policy (path {path[:120]!r}); pass the data inline instead."
        )
    allowed = getattr(policy, "allowed_dirs", None) if policy is not None else None
    return str(confine_path(path, allowed or None))


def _refuse_url(url: str, what: str, policy: Any) -> None:
    if policy is not None and getattr(policy, "allow_remote", False):
        raise internvl_tools.UnsupportedSourceError(
            f"{what} URLs are not fetched ({url[:80]!r}); download the file and pass its bytes or path."
        )
    raise internvl_tools.RemoteFetchDisabledError(
        f"Fetching {what.lower()} URLs is disabled ({url[:80]!r}); pass bytes or a path instead."
    )


def _image_part(block: ImageBlock) -> dict[str, Any]:
    detail_tiles = {"low": 1}.get(str(block.detail or "").lower())
    part: dict[str, Any] = {"type": "image"}
    if block.image is not None:
        # ImageBlock keeps inline bytes base64-encoded; resolve_image() decodes them (no I/O for inline data).
        part["image"] = block.resolve_image().read()
    elif block.path is not None:
        part["image"] = str(block.path)
    elif block.url is not None:
        part["image"] = str(block.url)  # http(s) or data: URI; the core's media policy decides
    else:
        raise internvl_tools.UnsupportedSourceError("An ImageBlock needs image bytes, a path or a URL.")
    if detail_tiles is not None:
        part["max_tiles"] = detail_tiles
    return part


def _document_parts(block: DocumentBlock, policy: Any, max_pages: int, dpi: float | None) -> list[dict[str, Any]]:
    mimetype = (block.document_mimetype or "").lower()
    if block.data is not None:
        source: Any = block.resolve_document().read()
    elif block.path is not None:
        source = _check_local_path(str(block.path), policy)
    elif block.url is not None:
        url = str(block.url)
        if url.startswith("data:"):
            source = block.resolve_document().read()
        else:
            _refuse_url(url, "Document", policy)
    else:
        raise internvl_tools.UnsupportedSourceError("A DocumentBlock needs data, a path or a URL.")
    if isinstance(source, bytes):
        head = source[:1024]
    else:
        with open(source, "rb") as handle:
            head = handle.read(1024)
    if mimetype.startswith(_TEXT_MIMETYPES) and b"%PDF-" not in head:
        raw = source if isinstance(source, bytes) else Path(source).read_bytes()
        return [{"type": "text", "text": f"{block.title or 'Document'}:\n{raw.decode('utf-8', errors='replace')}"}]
    # PDFs, TIFFs and images: render pages (lazily) and pass them as images; the tile budget is split across them.
    # A PDF from a message is untrusted: the render worker process bounds each page (memory, CPU time).
    parts: list[dict[str, Any]] = []
    with internvl_tools.render_pages(source, dpi=dpi) as stream:
        total = stream.page_count
        for page in stream:
            if len(parts) >= max_pages:
                break
            if page.error is not None:
                raise internvl_tools.PageRenderError(f"Document {block.title!r}, page {page.number}: {page.error}")
            parts.append({"type": "image", "image": page.image})
    if total > max_pages:
        log.warning(
            "Document %r has %d pages; only the first %d are shown to the model (max_document_pages).",
            block.title,
            total,
            max_pages,
        )
    return parts


def _video_part(block: VideoBlock, policy: Any) -> dict[str, Any]:
    if block.video is not None:
        return {"type": "video", "video": block.resolve_video().read()}
    if block.path is not None:
        return {"type": "video", "video": _check_local_path(str(block.path), policy)}
    _refuse_url(str(block.url), "Video", policy)
    raise AssertionError("unreachable")


def to_core_messages(
    messages: Sequence[ChatMessage],
    *,
    media_policy: Any = None,
    max_document_pages: int = 8,
    document_dpi: float | None = 100,
) -> list[dict[str, Any]]:
    """Convert LlamaIndex chat messages into the core's message dicts (text, image, video parts).

    ``DocumentBlock``: PDFs (and TIFF/image files) are rendered to at most ``max_document_pages`` page images;
    text documents become text. ``AudioBlock`` is refused; thinking blocks and cache points are dropped.
    """
    converted: list[dict[str, Any]] = []
    call_names: dict[str, str] = {}  # tool_call_id -> tool name, for tool results that carry no name
    for index, message in enumerate(messages):
        role = _ROLES.get(MessageRole(message.role), "user")
        parts: list[dict[str, Any]] = []
        calls = [b for b in message.blocks if isinstance(b, ToolCallBlock)]
        if MessageRole(message.role) in (MessageRole.TOOL, MessageRole.FUNCTION):
            call_id = str(message.additional_kwargs.get("tool_call_id", ""))
            name = message.additional_kwargs.get("name") or call_names.get(call_id) or "tool"
            parts.append({"type": "text", "text": f"Tool result ({name}):\n"})
        for block in message.blocks:
            if isinstance(block, ToolCallBlock):
                continue  # rendered after the text, below
            if isinstance(block, TextBlock):
                parts.append({"type": "text", "text": block.text})
            elif isinstance(block, ImageBlock):
                parts.append(_image_part(block))
            elif isinstance(block, DocumentBlock):
                parts.extend(_document_parts(block, media_policy, max_document_pages, document_dpi))
            elif isinstance(block, VideoBlock):
                parts.append(_video_part(block, media_policy))
            elif isinstance(block, (ThinkingBlock, CachePoint)):
                continue
            elif isinstance(block, AudioBlock):
                raise internvl_tools.UnsupportedSourceError(
                    f"message {index}: InternVL cannot hear; AudioBlock is not supported."
                )
            else:
                raise internvl_tools.UnsupportedSourceError(
                    f"message {index}: unsupported content block {type(block).__name__}; use TextBlock, ImageBlock, "
                    "DocumentBlock or VideoBlock."
                )
        if calls:
            # Earlier tool calls appear as the JSON the model writes when it calls tools (no native call tokens).
            call_names.update({str(c.tool_call_id): c.tool_name for c in calls})
            pairs = [(c.tool_name, _call_args(c.tool_kwargs)) for c in calls]
            text = render_tool_call(*pairs[0]) if len(pairs) == 1 else render_parallel_calls(pairs)
            prefix = "".join(p.get("text", "") for p in parts if p["type"] == "text")
            parts = [p for p in parts if p["type"] != "text"]
            parts.append({"type": "text", "text": (prefix + "\n" if prefix else "") + text})
        if not parts and role == "assistant":
            parts.append({"type": "text", "text": ""})
        converted.append({"role": role, "content": parts})
    return converted


def _call_args(kwargs: Any) -> Any:
    if isinstance(kwargs, str):
        try:
            return json.loads(kwargs)
        except ValueError:
            return kwargs
    return kwargs


def image_documents_to_blocks(image_documents: Sequence[Any] | None) -> list[ImageBlock]:
    """The legacy multimodal ``image_documents`` (ImageDocument / ImageNode / ImageBlock / path / bytes) as blocks."""
    blocks: list[ImageBlock] = []
    for item in image_documents or []:
        if isinstance(item, ImageBlock):
            blocks.append(item)
        elif isinstance(item, bytes):
            blocks.append(ImageBlock(image=item))
        elif isinstance(item, (str, os.PathLike)):
            text = os.fspath(item)
            is_url = text.startswith(("http://", "https://", "data:"))
            blocks.append(ImageBlock(url=text) if is_url else ImageBlock(path=Path(text)))
        elif isinstance(item, IOBase):
            blocks.append(ImageBlock(image=item.read()))
        elif getattr(item, "image", None):  # ImageNode / ImageDocument: base64 text
            blocks.append(ImageBlock(image=str(item.image).encode(), image_mimetype=item.image_mimetype))
        elif getattr(item, "image_path", None):
            blocks.append(ImageBlock(path=Path(item.image_path), image_mimetype=item.image_mimetype))
        elif getattr(item, "image_url", None):
            blocks.append(ImageBlock(url=str(item.image_url), image_mimetype=item.image_mimetype))
        else:
            raise internvl_tools.UnsupportedSourceError(
                f"image_documents item {type(item).__name__} has no image, image_path or image_url."
            )
    return blocks
