"""Typed per-page results and the end-of-run summary (pydantic; one JSONL line per page).

>>> r = PageResult(page=3, label="iii", task="ocr", text="# Title")
>>> r.ok, PageResult.model_validate_json(r.model_dump_json()) == r
(True, True)
"""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel, ConfigDict, Field, computed_field

from internvl_tools.documents.blocks import Block
from internvl_tools.grounding.result import GroundingResult
from internvl_tools.results import Usage

__all__ = ["DocumentSummary", "PageResult"]


class PageResult(BaseModel):
    """What one task produced for one page.

    ``page`` is 1-based; ``label`` is the PDF page label (``"iii"``, ``"A-2"``) or the number as text.
    ``image_size`` is the rendered image in pixels and ``dpi`` its resolution; ``page_size_pt`` is the page as
    displayed, in points. ``task`` is ``"ocr"``, ``"chart"``, ``"grounded_ocr"``, ``"layout"``, ``"qa"`` or the
    schema's name.
    ``text`` is the model's answer; ``data`` holds structured output (the schema's fields, or the chart's
    description and table); ``grounding`` the parsed boxes of ``grounded_ocr`` (and of ``layout``, whose
    ``raw_text`` is the model's answer); ``blocks`` the page's :class:`~.blocks.Block` list of ``layout`` (kind,
    Markdown, reading order, box in pixels, PDF points and 0–1000; ``text`` is then the blocks' Markdown).
    ``warnings`` are problems met on a page that was read (a box missing, a repetition loop cut short).
    ``elapsed`` is the wall time given
    to this page in seconds: its render wait plus its share of the batch it was generated in. When the page failed
    (render, generation, or parsing the task's answer), ``error`` and ``error_type`` say why (``error_type`` is the
    exception's class name, e.g. ``ContextLengthError``) and the run carried on.

    ``ok`` is true only when the page was read: no ``error`` and no ``finish_reason == "error"`` (records written
    before that rule, with an empty answer and ``finish_reason="error"``, count as failed too, so resume retries
    them).
    """

    model_config = ConfigDict(frozen=True)

    page: int = Field(ge=1)
    label: str
    task: str
    image_size: tuple[int, int] | None = None
    page_size_pt: tuple[float, float] | None = None
    dpi: float | None = None
    question: str | None = None
    text: str | None = None
    data: Any = None
    grounding: GroundingResult | None = None
    blocks: list[Block] | None = None
    warnings: list[str] = Field(default_factory=list)
    relevance: float | None = None
    model: str | None = None
    usage: Usage | None = None
    finish_reason: str | None = None
    elapsed: float = 0.0
    error: str | None = None
    error_type: str | None = None

    @computed_field  # type: ignore[prop-decorator]
    @property
    def ok(self) -> bool:
        return self.error is None and self.finish_reason != "error"


class DocumentSummary(BaseModel):
    """Counts for one run of :func:`~internvl_tools.documents.read_pdf` (live while running, final after it).

    ``total`` is the number of selected pages; ``skipped`` those already done in ``resume_from``;
    ``succeeded + failed + skipped == total`` once ``finished`` is true (unless the caller stopped early).
    """

    source: str
    task: str
    total: int = 0
    succeeded: int = 0
    failed: int = 0
    skipped: int = 0
    failed_pages: list[int] = Field(default_factory=list)
    elapsed: float = 0.0
    finished: bool = False

    @computed_field  # type: ignore[prop-decorator]
    @property
    def pages_per_second(self) -> float:
        done = self.succeeded + self.failed
        return done / self.elapsed if self.elapsed > 0 else 0.0

    def __str__(self) -> str:
        failed = f" (pages {', '.join(map(str, self.failed_pages[:10]))}{', ...' if self.failed > 10 else ''})"
        return (
            f"{self.source}: {self.succeeded} of {self.total} pages ok, {self.failed} failed"
            f"{failed if self.failed else ''}, {self.skipped} skipped (resumed), {self.elapsed:.1f} s, "
            f"{self.pages_per_second:.2f} pages/s"
        )
