"""``InternVLToolSpec``: InternVL's vision, grounding and OCR tools for LlamaIndex agents.

The tools are the core's (:mod:`internvl_tools.mcp.tools`, the same functions the MCP server serves): paths are
relative to ``allowed_dirs`` and confined there by the core's one path check; inline base64 images work too, and
http(s) URLs only with ``allow_remote_urls=True``. Each tool returns its typed result (``AnswerResult``,
``LocateResult`` with boxes in pixels, ``OCRResult``, ``RegionResult``) as the tool output's ``raw_output`` and a
short text for the planner as its ``content``. A refused path or a broken PDF raises a typed ``InternVLError``,
which an agent receives as an error tool output and recovers from.

>>> spec = InternVLToolSpec(model="tiny", allowed_dirs=["/tmp"])
>>> [tool.metadata.name for tool in spec.to_tool_list()]
['ask_image', 'locate', 'read_document', 'describe_region']
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, ClassVar

from llama_index.core.tools import FunctionTool
from llama_index.core.tools.tool_spec.base import BaseToolSpec

from internvl_tools import EngineSettings
from internvl_tools.mcp.tools import (
    AnswerResult,
    LocateResult,
    OCRResult,
    RegionResult,
    ToolPolicy,
    ask_image,
    describe_region,
    locate_phrase,
    ocr_document,
)

__all__ = ["InternVLToolSpec", "summarize"]


def summarize(result: Any) -> str:
    """The planner's text for a tool result (the typed result itself travels as ``raw_output``)."""
    if isinstance(result, LocateResult):
        width, height = result.input.image_size
        where = f" on page {result.input.page}" if result.input.page else ""
        if not result.boxes:
            return f"No box found for {result.phrase!r}{where} (image {width}x{height} px)."
        shown = "; ".join(
            f"{b.label or result.phrase}: [{round(b.x1)}, {round(b.y1)}, {round(b.x2)}, {round(b.y2)}]"
            for b in result.boxes
        )
        return f"Boxes for {result.phrase!r}{where} in pixels of the {width}x{height} px image: {shown}"
    if isinstance(result, OCRResult):
        return f"{result.summary}.\n\n{result.markdown}"
    if isinstance(result, RegionResult):
        return result.description
    if isinstance(result, AnswerResult):
        return result.answer
    return str(result)


class InternVLToolSpec(BaseToolSpec):
    """InternVL's vision tools for agents: ``ask_image``, ``locate``, ``read_document``, ``describe_region``.

    Args:
        model / base_url / device / dtype / max_tiles / engine_kwargs: the engine, as the core's
            :class:`~internvl_tools.EngineSettings` (``engine=`` passes an existing one instead).
        allowed_dirs: the folders the tools may read (relative paths only); none: inline base64 images only.
        allow_remote_urls: let the tools fetch public http(s) URLs.
        max_pages / max_new_tokens / max_prompt_chars / max_input_mb: per-call caps.
    """

    spec_functions: ClassVar[list[Any]] = ["ask_image", "locate", "read_document", "describe_region"]

    def __init__(
        self,
        model: str = "demo",
        *,
        allowed_dirs: Sequence[str] | None = None,
        allow_remote_urls: bool = False,
        engine: Any = None,
        base_url: str | None = None,
        max_pages: int = 20,
        max_new_tokens: int = 1024,
        max_prompt_chars: int = 4000,
        max_input_mb: float = 20.0,
        **engine_settings: Any,
    ) -> None:
        self.policy = ToolPolicy(
            allowed_dirs=tuple(str(d) for d in allowed_dirs or ()),
            allow_remote_urls=allow_remote_urls,
            max_input_bytes=int(max_input_mb * 1024 * 1024),
            max_pages=max_pages,
            max_new_tokens=max_new_tokens,
            max_prompt_chars=max_prompt_chars,
        )
        self.settings = EngineSettings(
            model=model, base_url=base_url, media_policy=self.policy.media_policy(), **engine_settings
        )
        self._engine = engine

    @property
    def engine(self) -> Any:
        """The engine (built on first use; weights load on first generation and are shared process-wide)."""
        if self._engine is None:
            self._engine = self.settings.build_engine()
        return self._engine

    def to_tool_list(self, spec_functions: Any = None, func_to_metadata_mapping: Any = None) -> list[FunctionTool]:
        """The tools, each answering the planner with a short text and keeping the typed result as ``raw_output``."""
        tools = super().to_tool_list(spec_functions, func_to_metadata_mapping)
        return [
            FunctionTool.from_defaults(fn=tool.fn, tool_metadata=tool.metadata, callback=summarize) for tool in tools
        ]

    def ask_image(
        self, question: str, image: str | None = None, image_base64: str | None = None, page: int | None = None
    ) -> AnswerResult:
        """Answer a question about an image or a PDF page.

        Args:
            question: the question about the image.
            image: path of an image or PDF relative to the allowed folder (e.g. 'scans/receipt.pdf').
            image_base64: the image's bytes, base64-encoded, instead of a path.
            page: 1-based page when `image` is a PDF (default 1).
        """
        return ask_image(self.engine, self.policy, question, image=image, image_base64=image_base64, page=page)

    def locate(
        self, phrase: str, image: str | None = None, image_base64: str | None = None, page: int | None = None
    ) -> LocateResult:
        """Find where something is in an image or PDF page: bounding boxes [x1, y1, x2, y2] in pixels of the image.

        Args:
            phrase: what to find, e.g. 'the total amount'.
            image: path of an image or PDF relative to the allowed folder.
            image_base64: the image's bytes, base64-encoded, instead of a path.
            page: 1-based page when `image` is a PDF (default 1).
        """
        return locate_phrase(self.engine, self.policy, phrase, image=image, image_base64=image_base64, page=page)

    def read_document(self, document: str, pages: str | None = None) -> OCRResult:
        """Read the text of a PDF, TIFF or image page by page (OCR, page-numbered Markdown).

        Args:
            document: path of the PDF, TIFF or image relative to the allowed folder.
            pages: 1-based page selection such as '1-3,7' (default: all pages, up to the per-call cap).
        """
        return ocr_document(self.engine, self.policy, document=document, pages=pages)

    def describe_region(
        self,
        box: list[float],
        image: str | None = None,
        question: str | None = None,
        image_base64: str | None = None,
        page: int | None = None,
    ) -> RegionResult:
        """Describe a region of an image or PDF page, or answer a question about it.

        Args:
            box: the region as [x1, y1, x2, y2] in pixels of the image.
            image: path of an image or PDF relative to the allowed folder.
            question: a question about the region (default: describe it).
            image_base64: the image's bytes, base64-encoded, instead of a path.
            page: 1-based page when `image` is a PDF (default 1).
        """
        return describe_region(
            self.engine, self.policy, box, question, image=image, image_base64=image_base64, page=page
        )
