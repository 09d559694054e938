"""LangChain messages → the core's chat format (role + text/image/video parts).

Every LangChain input style is read through ``message.content_blocks`` (the standard v1 view): v1 image blocks
(base64 or url), OpenAI ``image_url`` parts (string or dict, data URI or http), v0 ``source_type`` blocks,
PDF ``file`` blocks (rendered to page images), ``text-plain`` files, images in any turn and in tool results.
Inline data is handed to the engine as a data URI; anything that names a location (a URL, ``file://``, a path) is
loaded here under the wrapper's :class:`~internvl_tools.MediaPolicy`, whatever engine runs the model.

>>> from langchain_core.messages import HumanMessage
>>> to_core_messages([HumanMessage("Hi")], policy=None)
[{'role': 'user', 'content': [{'type': 'text', 'text': 'Hi'}]}]
"""

from __future__ import annotations

import base64
import binascii
from collections.abc import Sequence
from itertools import islice
from typing import Any

from internvl_tools.generation.tools import render_parallel_calls, render_tool_call
from langchain_core.messages import (
    AIMessage,
    BaseMessage,
    ChatMessage,
    FunctionMessage,
    HumanMessage,
    SystemMessage,
    ToolMessage,
)

__all__ = ["UnsupportedContentError", "to_core_messages"]

DEFAULT_MAX_PDF_PAGES = 8


class UnsupportedContentError(ValueError):
    """A message part that a local InternVL cannot read (``file_id``, audio, a PDF by URL, ...)."""


def _b64_bytes(data: str, what: str) -> bytes:
    try:
        return base64.b64decode(data, validate=False)
    except (binascii.Error, ValueError) as err:
        raise UnsupportedContentError(f"The {what} block's base64 data cannot be decoded: {err}.") from err


def _image_part(block: dict[str, Any], policy: Any) -> dict[str, Any]:
    if block.get("file_id"):
        raise UnsupportedContentError(
            f"Image blocks with file_id={block['file_id']!r} refer to a provider's file store, which a local InternVL "
            "cannot read. Send the image inline (base64 / data URI) or as an allowed URL or path."
        )
    if block.get("base64"):
        mime = block.get("mime_type") or "image/png"
        return {"type": "image", "image": f"data:{mime};base64,{block['base64']}"}
    url = block.get("url")
    if isinstance(url, str) and url:
        if url.strip()[:5].lower() == "data:":
            return {"type": "image", "image": url}
        from internvl_tools import load_image

        # Locations are resolved under this wrapper's policy (remote off, paths confined), not the engine's.
        return {"type": "image", "image": load_image(url, policy=policy)}
    raise UnsupportedContentError("An image block needs 'base64' (with 'mime_type') or 'url'.")


def _pdf_parts(block: dict[str, Any], max_pages: int) -> list[dict[str, Any]]:
    if block.get("file_id"):
        raise UnsupportedContentError(
            f"File blocks with file_id={block['file_id']!r} refer to a provider's file store; send the PDF as base64."
        )
    data = block.get("base64")
    if not data:
        url = block.get("url") or ""
        if isinstance(url, str) and url.strip()[:5].lower() == "data:" and "," in url:
            data = url.split(",", 1)[1]
    if not data:
        raise UnsupportedContentError(
            "PDF file blocks must carry the document inline ('base64' or a data: URI); PDFs are not fetched from "
            "URLs. Download it yourself, or use InternVLPDFLoader for files on disk."
        )
    from internvl_tools import render_pages

    pdf = _b64_bytes(data, "PDF")
    stream = render_pages(pdf)  # the worker process bounds each page of an untrusted PDF (memory, CPU time)
    try:
        if stream.page_count > max_pages:
            raise UnsupportedContentError(
                f"The PDF has {stream.page_count} pages; ChatInternVL reads at most max_pdf_pages={max_pages} pages "
                "per file block. Raise max_pdf_pages, or use InternVLPDFLoader to read long documents page by page."
            )
        parts: list[dict[str, Any]] = []
        for page in islice(stream, max_pages):
            if page.image is None:
                raise UnsupportedContentError(f"Page {page.number} of the PDF could not be rendered: {page.error}")
            parts.append({"type": "text", "text": f"Page {page.label}:"})
            parts.append({"type": "image", "image": page.image})
        return parts
    finally:
        stream.close()


def _file_parts(block: dict[str, Any], policy: Any, max_pages: int) -> list[dict[str, Any]]:
    mime = (block.get("mime_type") or "").lower()
    if mime == "application/pdf" or (not mime and str(block.get("base64", ""))[:6] == "JVBERi"):
        return _pdf_parts(block, max_pages)
    if mime.startswith("image/"):
        return [_image_part(block, policy)]
    raise UnsupportedContentError(
        f"File blocks of type {mime or 'unknown'!r} are not supported; InternVL reads images and PDFs "
        "(mime_type='application/pdf')."
    )


def _video_part(block: dict[str, Any]) -> dict[str, Any]:
    if block.get("base64"):
        return {"type": "video", "video": _b64_bytes(block["base64"], "video")}
    raise UnsupportedContentError(
        "Video blocks must carry the video inline as 'base64'; URLs and file ids are not read."
    )


def _user_parts(blocks: Sequence[dict[str, Any]], policy: Any, max_pages: int, where: str) -> list[dict[str, Any]]:
    parts: list[dict[str, Any]] = []
    for block in blocks:
        kind = block.get("type")
        if kind == "non_standard" and isinstance(block.get("value"), dict):
            block = block["value"]  # e.g. an OpenAI image_url part with a bare string, which core leaves as is
            kind = block.get("type")
        if kind == "image_url":
            value = block.get("image_url")
            url = value.get("url") if isinstance(value, dict) else value
            if not isinstance(url, str):
                raise UnsupportedContentError(f"{where}: an image_url part needs a URL string or {{'url': ...}}.")
            block, kind = {"type": "image", "url": url}, "image"
        if kind == "text":
            if block.get("text"):
                parts.append({"type": "text", "text": block["text"]})
        elif kind == "image":
            parts.append(_image_part(block, policy))
        elif kind == "file":
            parts.extend(_file_parts(block, policy, max_pages))
        elif kind == "text-plain":
            text = block.get("text")
            if text is None and block.get("base64"):
                text = _b64_bytes(block["base64"], "text-plain").decode("utf-8", errors="replace")
            if text:
                parts.append({"type": "text", "text": text})
        elif kind == "video":
            parts.append(_video_part(block))
        elif kind in ("reasoning", "citation"):
            continue
        else:
            raise UnsupportedContentError(
                f"{where}: content blocks of type {kind!r} are not supported by InternVL; use text, image "
                "(base64 or url), image_url, PDF file blocks, or video (base64)."
            )
    return parts


def _assistant_text(message: AIMessage) -> str:
    texts = [b.get("text", "") for b in message.content_blocks if b.get("type") == "text"]
    text = "".join(texts)
    # Earlier tool calls appear as the JSON the model writes under bind_tools (it has no native tool-call tokens):
    # one call object, or the {"calls": [...]} list of a parallel turn.
    calls = [(str(call.get("name")), call.get("args", {})) for call in message.tool_calls]
    if len(calls) == 1:
        text += ("\n" if text else "") + render_tool_call(*calls[0])
    elif calls:
        text += ("\n" if text else "") + render_parallel_calls(calls)
    return text


def _role(message: BaseMessage) -> str:
    if isinstance(message, SystemMessage):
        return "system"
    if isinstance(message, (HumanMessage, ToolMessage, FunctionMessage)):
        return "user"
    if isinstance(message, AIMessage):
        return "assistant"
    if isinstance(message, ChatMessage):
        role = {"human": "user", "ai": "assistant", "developer": "system"}.get(message.role, message.role)
        if role in ("system", "user", "assistant"):
            return role
        raise UnsupportedContentError(f"ChatMessage role {message.role!r} is not supported; use system/user/assistant.")
    raise UnsupportedContentError(f"Messages of type {type(message).__name__} are not supported.")


def to_core_messages(
    messages: Sequence[BaseMessage], policy: Any, *, max_pdf_pages: int = DEFAULT_MAX_PDF_PAGES
) -> list[dict[str, Any]]:
    """Convert LangChain messages to the core's chat dicts; raise :class:`UnsupportedContentError` on bad input."""
    out: list[dict[str, Any]] = []
    call_names: dict[str, str] = {}  # tool_call_id -> tool name, for ToolMessages that carry no name
    for index, message in enumerate(messages):
        where = f"message {index} ({type(message).__name__})"
        role = _role(message)
        if role == "assistant":
            if isinstance(message, AIMessage):
                call_names.update({str(c.get("id")): str(c.get("name")) for c in message.tool_calls})
                text = _assistant_text(message)
            else:
                text = str(message.text)
            out.append({"role": "assistant", "content": [{"type": "text", "text": text}]})
            continue
        parts = _user_parts(message.content_blocks, policy, max_pdf_pages, where)
        if role == "system":
            if any(p["type"] != "text" for p in parts):
                raise UnsupportedContentError(f"{where}: system messages carry text only; put images in a user turn.")
            text = "".join(p["text"] for p in parts)
            if not out or (len(out) == 1 and out[0]["role"] == "system"):
                # The template has one system slot, first: leading system messages are merged into it.
                if out:
                    out[0]["content"][0]["text"] += "\n" + text
                else:
                    out.append({"role": "system", "content": [{"type": "text", "text": text}]})
            else:  # a system message mid-conversation travels as an instruction in a user turn
                out.append({"role": "user", "content": [{"type": "text", "text": f"[System] {text}"}]})
            continue
        if isinstance(message, (ToolMessage, FunctionMessage)):
            name = getattr(message, "name", None) or call_names.get(str(getattr(message, "tool_call_id", ""))) or "tool"
            status = ", error" if getattr(message, "status", "success") == "error" else ""
            parts.insert(0, {"type": "text", "text": f"Tool result ({name}{status}):\n"})
        out.append({"role": "user", "content": parts or [{"type": "text", "text": ""}]})
    if not out:
        raise UnsupportedContentError("ChatInternVL needs at least one message.")
    if out[-1]["role"] == "assistant":
        raise UnsupportedContentError(
            "The conversation ends with an AI message; InternVL answers a user turn. Add a HumanMessage at the end."
        )
    return out
