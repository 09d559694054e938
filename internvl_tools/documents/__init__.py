"""Documents for InternVL: open PDFs, TIFFs and images, render pages for the tiler, run OCR / chart / extraction /
QA over pages in batches, isolate failures, write JSONL or Markdown and resume interrupted runs.

Modules, bottom up: :mod:`.sources` (opening, page selection), :mod:`.sizing` (render resolution, pixel cap,
per-page limits), :mod:`.render` (lazy bounded rendering; :mod:`.rasterize` and :mod:`.worker` behind it),
:mod:`.tasks` (prompts, parsers), :mod:`.blocks` (layout blocks and their parser), :mod:`.models`
(``PageResult``, ``DocumentSummary``), :mod:`.options` (``ReadOptions``), :mod:`.pipeline` (``read_pdf``),
:mod:`.output` (JSONL, Markdown), :mod:`.chunks` (RAG chunks with page and regions). This package re-exports each
module's ``__all__``. pypdfium2 is imported only when a PDF is opened.

>>> from internvl_tools.documents import parse_pages
>>> parse_pages("2-", page_count=4)
[1, 2, 3]
"""

from typing import TYPE_CHECKING

from internvl_tools.lazy import lazy_exports

__all__, __getattr__, __dir__ = lazy_exports(
    __name__,
    (
        "sources",
        "sizing",
        "render",
        "tasks",
        "blocks",
        "models",
        "chunks",
        "options",
        "pipeline",
        "output",
    ),
)

if TYPE_CHECKING:  # for type checkers and IDEs: the same names, eagerly
    from internvl_tools.documents.blocks import *  # noqa: F403
    from internvl_tools.documents.chunks import *  # noqa: F403
    from internvl_tools.documents.models import *  # noqa: F403
    from internvl_tools.documents.options import *  # noqa: F403
    from internvl_tools.documents.output import *  # noqa: F403
    from internvl_tools.documents.pipeline import *  # noqa: F403
    from internvl_tools.documents.render import *  # noqa: F403
    from internvl_tools.documents.sizing import *  # noqa: F403
    from internvl_tools.documents.sources import *  # noqa: F403
    from internvl_tools.documents.tasks import *  # noqa: F403
