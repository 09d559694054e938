"""Agent tools backed by InternVL: visual QA, grounding (boxes) and OCR over images and PDF pages.

The tools take a *reference* to the image as an argument, because a tool only sees the JSON arguments the planner
wrote. References are confined: relative paths inside ``allowed_dirs`` (no absolute paths, no ``..``, symlinks
may not escape), inline ``data:`` URIs, and http(s) URLs only with ``allow_remote_urls=True`` (public hosts only).
Any refusal or failure comes back as an error ``ToolMessage`` (``status="error"``), so the agent can recover.

>>> tool = InternVLGroundingTool(model="tiny", allowed_dirs=["/tmp"])
>>> tool.name, tool.response_format
('internvl_grounding', 'content_and_artifact')
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any, Literal

from langchain_core.callbacks import CallbackManagerForToolRun
from langchain_core.tools import BaseTool, ToolException
from pydantic import BaseModel, Field

from langchain_internvl._config import InternVLSettings

__all__ = ["InternVLGroundingTool", "InternVLOCRTool", "InternVLVisionTool"]

_PDF_SUFFIXES = (".pdf", ".tif", ".tiff")
_IMAGE_HELP = (
    "Path of an image or PDF relative to the allowed folder (e.g. 'scans/receipt.png'), or an http(s) URL when "
    "URLs are enabled."
)
_PAGE_HELP = "1-based page number when `image` is a PDF (default 1)."


class VisionInput(BaseModel):
    """Arguments of :class:`InternVLVisionTool`."""

    image: str = Field(description=_IMAGE_HELP)
    question: str = Field(description="The question to answer about the image.")
    page: int | None = Field(default=None, ge=1, description=_PAGE_HELP)


class GroundingInput(BaseModel):
    """Arguments of :class:`InternVLGroundingTool`."""

    image: str = Field(description=_IMAGE_HELP)
    phrase: str = Field(description="What to locate, e.g. 'the red car' or 'the total amount'.")
    page: int | None = Field(default=None, ge=1, description=_PAGE_HELP)


class OCRInput(BaseModel):
    """Arguments of :class:`InternVLOCRTool`."""

    image: str = Field(description=_IMAGE_HELP)
    page: int | None = Field(default=None, ge=1, description=_PAGE_HELP)


class _InternVLTool(InternVLSettings, BaseTool):
    """Shared machinery: confined reference resolution, engine access, errors as ToolExceptions."""

    response_format: Literal["content", "content_and_artifact"] = "content_and_artifact"
    handle_tool_error: bool | str | Any = True
    handle_validation_error: bool | str | Any = True
    max_tokens: int | None = Field(default=None, ge=1)
    """New-token limit per answer (each tool has its own default)."""
    pdf_dpi: float | None = None
    """Resolution PDF pages are rendered at (default: what fills the tile grid)."""

    # -- references ----------------------------------------------------------------------------------------------

    def _resolve_path(self, ref: str) -> Path:
        """``ref`` checked by the core's one path check (relative only, inside ``allowed_dirs``, a regular file).

        Every path problem (``..``, absolute, symlink escape or loop, NUL byte, over-long or undecodable name, a
        FIFO, device or directory) is a typed core error, turned into a ToolException by the caller.
        """
        from internvl_tools.media import confine_path

        if not self.allowed_dirs:
            raise ToolException(
                f"Cannot read {ref[:120]!r}: this tool has no allowed directories (set allowed_dirs=[...] to let it "
                "read local files)."
            )
        return confine_path(ref, self.allowed_dirs, relative=True)

    def _load(self, ref: str, page: int | None) -> tuple[Any, dict[str, Any]]:
        """The image named by ``ref`` (a page of it for PDFs) and facts about it for the artifact."""
        from internvl_tools import InternVLError, load_image
        from internvl_tools.media import open_confined

        ref = (ref or "").strip()
        if not ref:
            raise ToolException("`image` is empty; pass a path relative to the allowed folder.")
        policy = self.build_media_policy()
        lowered = ref[:8].lower()
        try:
            if lowered.startswith("data:"):
                if page not in (None, 1):
                    raise ToolException("`page` applies to PDFs; a data: URI holds one image.")
                image = load_image(ref, policy=policy)
                return image, {"source": "data URI", "page": None, "image_size": list(image.size)}
            if lowered.startswith(("http://", "https://")):
                if not self.allow_remote_urls:
                    raise ToolException(
                        f"URLs are disabled for this tool ({ref[:80]!r}); use a file in the allowed folder."
                    )
                if page not in (None, 1):
                    raise ToolException("`page` applies to local PDFs; a URL is read as one image.")
                image = load_image(ref, policy=policy)
                return image, {"source": ref, "page": None, "image_size": list(image.size)}
            if "://" in ref[:16]:
                raise ToolException(f"Unsupported reference {ref[:80]!r}; use a relative path or an http(s) URL.")
            path = self._resolve_path(ref)
            if path.suffix.lower() in _PDF_SUFFIXES:
                return self._pdf_page(path, ref, page)
            if page not in (None, 1):
                raise ToolException(f"{ref!r} is an image, not a PDF; leave `page` out.")
            # Open through the core (fstat and real path re-checked on the open file), then decode from the handle.
            with open_confined(ref, self.allowed_dirs, relative=True) as handle:
                image = load_image(handle, policy=policy)
            return image, {"source": ref, "page": None, "image_size": list(image.size)}
        except InternVLError as err:
            raise ToolException(f"Cannot read {ref[:120]!r}: {err}") from err

    def _pdf_page(self, path: Path, ref: str, page: int | None) -> tuple[Any, dict[str, Any]]:
        from internvl_tools import render_pages

        number = page or 1
        grid = self._tile_grid() if self.pdf_dpi is None else None
        # The worker process bounds each page of an untrusted PDF (memory, CPU time) and isolates crashes.
        with render_pages(os.fspath(path), dpi=self.pdf_dpi, pages=[number], tile_grid=grid) as stream:
            total = stream.page_count
            rendered = next(iter(stream), None)
        if rendered is None or rendered.image is None:
            why = rendered.error if rendered is not None else "no page rendered"
            raise ToolException(f"Page {number} of {ref!r} could not be rendered: {why}")
        facts = {"source": ref, "page": number, "page_label": rendered.label, "total_pages": total,
                 "image_size": list(rendered.image.size)}  # fmt: skip
        return rendered.image, facts

    def _tile_grid(self) -> tuple[int, int] | None:
        """The local model's (tile size, tile budget), so pages render at what its tiler uses (read_pdf does too)."""
        from internvl_tools import InternVLError
        from internvl_tools.documents import tile_grid_for

        try:
            return tile_grid_for(self.get_engine())
        except InternVLError:
            return None  # the generation call reports the load failure with its own message

    def _gen(self, default_tokens: int) -> dict[str, Any]:
        return {"max_new_tokens": self.max_tokens or default_tokens}

    def _call(self, fn: Any) -> Any:
        from internvl_tools import InternVLError

        try:
            return fn()
        except InternVLError as err:
            raise ToolException(f"{type(err).__name__}: {err}") from err


class InternVLVisionTool(_InternVLTool):
    """Answer a question about an image or a PDF page. Content: the answer; artifact: source, page, size, usage."""

    name: str = "internvl_vision"
    description: str = (
        "Answer a question about an image or a page of a PDF. Input: `image` (path relative to the allowed folder), "
        "`question`, and for PDFs `page` (1-based). Returns the answer as text."
    )
    args_schema: type[BaseModel] = VisionInput

    def _run(
        self, image: str, question: str, page: int | None = None, run_manager: CallbackManagerForToolRun | None = None
    ) -> tuple[str, dict[str, Any]]:
        if not question or not question.strip():
            raise ToolException("`question` is empty.")
        pil, facts = self._load(image, page)
        engine = self.get_engine()
        messages = [{"role": "user", "content": [{"type": "image", "image": pil}, {"type": "text", "text": question}]}]
        result = self._call(lambda: engine.chat(messages, **self._gen(256)))
        artifact = {**facts, "question": question, "model": result.model or self.model,
                    "finish_reason": result.finish_reason, "usage": result.usage.model_dump()}  # fmt: skip
        return result.text, artifact


class InternVLGroundingTool(_InternVLTool):
    """Locate a phrase in an image: content is a short answer with pixel boxes; artifact a ``GroundingResult``."""

    name: str = "internvl_grounding"
    description: str = (
        "Find where something is in an image or PDF page. Input: `image` (path relative to the allowed folder), "
        "`phrase` (what to find), optional `page`. Returns bounding boxes in pixels [x1, y1, x2, y2]."
    )
    args_schema: type[BaseModel] = GroundingInput

    def _run(
        self, image: str, phrase: str, page: int | None = None, run_manager: CallbackManagerForToolRun | None = None
    ) -> tuple[str, Any]:
        if not phrase or not phrase.strip():
            raise ToolException("`phrase` is empty.")
        pil, facts = self._load(image, page)
        engine = self.get_engine()
        result = self._call(lambda: engine.ground(pil, phrase, **self._gen(100)))
        return _grounding_summary(result, phrase, facts), result


def _grounding_summary(result: Any, phrase: str, facts: dict[str, Any]) -> str:
    width, height = result.image_size
    where = f" on page {facts['page']}" if facts.get("page") else ""
    boxes = [[round(v) for v in box.xyxy] for box in result.boxes]
    if not boxes:
        return f"No box found for {phrase!r}{where} (image {width}x{height} px)."
    shown = "; ".join(f"{label or phrase}: {box}" for label, box in zip(result.labels, boxes, strict=False))
    noun = "box" if len(boxes) == 1 else "boxes"
    return f"Found {len(boxes)} {noun} for {phrase!r}{where} in a {width}x{height} px image: {shown}"


class InternVLOCRTool(_InternVLTool):
    """Transcribe the text of an image or PDF page (Markdown). Content: the text; artifact: source, page, size."""

    name: str = "internvl_ocr"
    description: str = (
        "Read all text in an image or a PDF page (OCR, Markdown output). Input: `image` (path relative to the "
        "allowed folder), optional `page` (1-based) for PDFs."
    )
    args_schema: type[BaseModel] = OCRInput

    def _run(
        self, image: str, page: int | None = None, run_manager: CallbackManagerForToolRun | None = None
    ) -> tuple[str, dict[str, Any]]:
        pil, facts = self._load(image, page)
        engine = self.get_engine()
        # The core's page OCR (its document prompt and defaults), so the tool and the loader transcribe alike.
        stream = self._call(lambda: engine.read_pdf(pil, task="ocr", progress=False, max_new_tokens=self.max_tokens))
        [result] = self._call(lambda: list(stream))
        if not result.ok:
            raise ToolException(f"OCR failed: {result.error}")
        artifact = {**facts, "model": result.model or self.model, "finish_reason": result.finish_reason,
                    "usage": result.usage.model_dump() if result.usage else None}  # fmt: skip
        return result.text or "", artifact
