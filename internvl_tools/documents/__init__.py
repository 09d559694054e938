"""Documents for InternVL: open PDFs, TIFFs and images, render pages for the tiler, run OCR / chart / extraction /
QA over pages in batches, isolate failures, write JSONL or Markdown and resume interrupted runs.

Modules: :mod:`.sources` (opening, page selection), :mod:`.render` (lazy bounded rendering), :mod:`.tasks`
(prompts), :mod:`.models` (``PageResult``, ``DocumentSummary``), :mod:`.pipeline` (``read_pdf``), :mod:`.output`.
pypdfium2 is imported only when a PDF is opened.

>>> from internvl_tools.documents import parse_pages
>>> parse_pages("2-", page_count=4)
[1, 2, 3]
"""

from __future__ import annotations

from internvl_tools.documents.models import DocumentSummary, PageResult
from internvl_tools.documents.output import (
    completed_pages,
    iter_jsonl,
    load_results,
    to_markdown,
    write_jsonl,
    write_markdown,
)
from internvl_tools.documents.pipeline import PageStream, read_pdf
from internvl_tools.documents.render import (
    DEFAULT_LONGEST_SIDE,
    RenderedPage,
    RenderStream,
    default_longest_side,
    grid_longest_side,
    render_pages,
    tile_grid_for,
)
from internvl_tools.documents.sources import DocumentSource, open_source, page_count, parse_pages
from internvl_tools.documents.tasks import CHART_PROMPT, OCR_PROMPT, parse_chart_answer, parse_markdown_table

__all__ = [
    "CHART_PROMPT",
    "DEFAULT_LONGEST_SIDE",
    "OCR_PROMPT",
    "DocumentSource",
    "DocumentSummary",
    "PageResult",
    "PageStream",
    "RenderStream",
    "RenderedPage",
    "completed_pages",
    "default_longest_side",
    "grid_longest_side",
    "iter_jsonl",
    "load_results",
    "open_source",
    "page_count",
    "parse_chart_answer",
    "parse_markdown_table",
    "parse_pages",
    "read_pdf",
    "render_pages",
    "tile_grid_for",
    "to_markdown",
    "write_jsonl",
    "write_markdown",
]
