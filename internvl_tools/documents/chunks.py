"""Chunks that keep their provenance: page, regions (PDF points), document and source, for RAG.

:func:`chunk_pages` cuts each page's blocks (``read_pdf(task="layout")``) into chunks of at most ``max_chars``
characters, never across pages. Rules:

* whole blocks are packed in reading order while they fit;
* a table is never split (a table longer than ``max_chars`` is one chunk of its own);
* a list is split only between items, never inside one;
* a longer paragraph (or heading, caption, other) is split at line ends, then sentence ends, then spaces; every
  piece carries its block's box.

Each chunk's ``text`` is a slice of its page's text, ``page_text[start:end]``, and consecutive chunks of a page
are separated only by whitespace: the chunks tile the page. ``boxes`` has one entry per block the chunk holds (a
block's ``box_pt``, ``None`` where the model gave no box), in the same order as ``block_orders`` and
``block_kinds``. Pages without blocks (other tasks) are chunked as one box-less paragraph per blank-line section.

>>> from internvl_tools.documents.models import PageResult
>>> from internvl_tools.documents.blocks import parse_layout
>>> layout = parse_layout("<ref># T</ref><box>[[0, 0, 1000, 100]]</box>", (100, 100), (72.0, 72.0))
>>> page = PageResult(page=1, label="1", task="layout", text=layout.markdown, blocks=layout.blocks)
>>> [(c.page, c.text, c.boxes) for c in chunk_pages([page], source="a.pdf")]
[(1, '# T', [(0.0, 0.0, 72.0, 7.2)])]
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from typing import Any

from pydantic import BaseModel, ConfigDict, Field

from internvl_tools.documents.blocks import Block, BlockKind, blocks_markdown, line_kind
from internvl_tools.documents.models import PageResult
from internvl_tools.errors import ConfigError
from internvl_tools.grounding.drawing import draw_regions

__all__ = ["DEFAULT_CHUNK_CHARS", "PROVENANCE_KEYS", "Chunk", "chunk_pages"]

#: Default chunk size in characters (roughly 250 tokens of English).
DEFAULT_CHUNK_CHARS = 1000

#: The metadata keys :meth:`Chunk.metadata` adds for provenance (hidden from embeddings by the integrations).
PROVENANCE_KEYS = ("document_id", "chunk_index", "boxes", "block_kinds", "block_orders", "char_start", "char_end")

Box = tuple[float, float, float, float]

_BREAKS = (re.compile(r"\n"), re.compile(r"(?<=[.!?;:])\s+"), re.compile(r"\s+"))
_ITEM_START = re.compile(r"\n(?=\s*(?:[-*+•]|\d{1,3}[.)])\s)")


class Chunk(BaseModel):
    """A piece of one page with where it came from.

    ``page`` is 1-based; ``boxes`` are in PDF points as displayed, origin top-left (see :mod:`.blocks`), one per
    block held; ``char_start`` / ``char_end`` locate ``text`` in the page's text.
    """

    model_config = ConfigDict(frozen=True)

    text: str
    page: int = Field(ge=1)
    page_label: str
    document_id: str
    source: str
    chunk_index: int = Field(ge=0, description="0-based index of the chunk in its document.")
    boxes: list[Box | None] = Field(default_factory=list)
    block_kinds: list[BlockKind] = Field(default_factory=list)
    block_orders: list[int] = Field(default_factory=list)
    char_start: int = Field(ge=0)
    char_end: int = Field(ge=0)
    page_size_pt: tuple[float, float] | None = None

    @property
    def id(self) -> str:
        """A stable id, so re-ingesting a document upserts its chunks: ``{document_id}#page={p}&chunk={i}``."""
        return f"{self.document_id}#page={self.page}&chunk={self.chunk_index}"

    def draw(self, image: Any, **kwargs: Any) -> Any:
        """The page ``image`` (as rendered, any resolution) with this chunk's regions highlighted (translucent fill,
        outline, each block's kind as a label outside its box); see
        :func:`~internvl_tools.grounding.drawing.draw_regions`. Needs ``page_size_pt`` (pages of PDFs and images
        read by ``read_pdf`` have it when they come from a PDF; for an image pass ``space_size=image.size`` and
        pixel boxes)."""
        space = kwargs.pop("space_size", self.page_size_pt)
        if space is None:
            raise ConfigError("this chunk has no page_size_pt (an image page); pass space_size=(width, height).")
        kwargs.setdefault("labels", list(self.block_kinds))
        return draw_regions(image, self.boxes, space, **kwargs)

    def metadata(self) -> dict[str, Any]:
        """JSON-serialisable metadata: page, label, source, document id, boxes (lists of floats) and the rest."""
        data = self.model_dump(mode="json", exclude={"text"})
        data["boxes"] = [list(b) if b is not None else None for b in self.boxes]
        if self.page_size_pt is not None:
            data["page_size_pt"] = list(self.page_size_pt)
        return data


def _split_text(text: str, max_chars: int, level: int = 0) -> list[tuple[int, int]]:
    """Spans of ``text`` at most ``max_chars`` long (a single word longer than that stays whole)."""
    if len(text) <= max_chars or level >= len(_BREAKS):
        return [(0, len(text))]
    cuts = [m.span() for m in _BREAKS[level].finditer(text)]
    pieces: list[tuple[int, int]] = []
    start = 0
    for cut_start, cut_end in [*cuts, (len(text), len(text))]:
        pieces.append((start, cut_start))
        start = cut_end
    spans: list[tuple[int, int]] = []
    for a, b in pieces:
        if a >= b:
            continue
        if spans and b - spans[-1][0] <= max_chars:
            spans[-1] = (spans[-1][0], b)
        elif b - a > max_chars:
            spans.extend((a + x, a + y) for x, y in _split_text(text[a:b], max_chars, level + 1))
        else:
            spans.append((a, b))
    return spans


def _split_list(text: str, max_chars: int) -> list[tuple[int, int]]:
    items: list[tuple[int, int]] = []
    start = 0
    for match in _ITEM_START.finditer(text):
        items.append((start, match.start()))
        start = match.end()
    items.append((start, len(text)))
    spans: list[tuple[int, int]] = []
    for a, b in items:
        if spans and b - spans[-1][0] <= max_chars:
            spans[-1] = (spans[-1][0], b)
        else:
            spans.append((a, b))
    return spans


def _pieces(block: Block, max_chars: int) -> list[tuple[int, int]]:
    if len(block.text) <= max_chars or block.kind in ("table", "chart", "figure"):
        return [(0, len(block.text))]
    if block.kind == "list":
        return _split_list(block.text, max_chars)
    return _split_text(block.text, max_chars)


def _page_blocks(page: PageResult) -> list[Block]:
    if page.blocks:
        return sorted(page.blocks, key=lambda b: b.order)
    text = page.text or ""
    parts = [p.strip() for p in re.split(r"\n\s*\n", text) if p.strip()]
    return [Block(kind=line_kind(p) if "\n" not in p else "other", text=p, order=i) for i, p in enumerate(parts)]


def chunk_pages(
    pages: Iterable[PageResult],
    *,
    max_chars: int = DEFAULT_CHUNK_CHARS,
    source: str | None = None,
    document_id: str | None = None,
    skip_failed: bool = True,
) -> list[Chunk]:
    """Cut pages into chunks of at most ``max_chars`` (a table, or one list item, may exceed it), with provenance.

    ``source`` names the document in every chunk (default ``"document"``); ``document_id`` is the stable id of
    the document (default: ``source``). Failed pages are skipped (``skip_failed=False`` keeps them as pages with
    no chunks either way: a page not read has no text).
    """
    if isinstance(max_chars, bool) or not isinstance(max_chars, int) or max_chars < 1:
        raise ConfigError(f"max_chars must be an int >= 1 (characters per chunk), got {max_chars!r}.")
    src = source if source is not None else "document"
    doc_id = document_id if document_id is not None else src
    chunks: list[Chunk] = []
    for page in pages:
        if not page.ok and skip_failed:
            continue
        for group, start, end in _page_groups(page, max_chars):
            chunks.append(
                Chunk(
                    text=_page_text(page)[start:end],
                    page=page.page,
                    page_label=page.label,
                    document_id=doc_id,
                    source=src,
                    chunk_index=len(chunks),
                    boxes=[b.box_pt for b in group],
                    block_kinds=[b.kind for b in group],
                    block_orders=[b.order for b in group],
                    char_start=start,
                    char_end=end,
                    page_size_pt=page.page_size_pt,
                )
            )
    return chunks


def _page_text(page: PageResult) -> str:
    return blocks_markdown(page.blocks) if page.blocks else (page.text or "")


def _page_groups(page: PageResult, max_chars: int) -> list[tuple[list[Block], int, int]]:
    """The chunks of one page as (blocks held, start, end) in the page's text."""
    page_text = _page_text(page)
    groups: list[tuple[list[Block], int, int]] = []
    current: list[tuple[Block, int, int]] = []

    def flush() -> None:
        if current:
            groups.append(([b for b, _, _ in current], current[0][1], current[-1][2]))
            current.clear()

    cursor = 0
    for block in _page_blocks(page):
        at = page_text.find(block.text, cursor) if block.text else -1
        if at < 0:
            continue
        cursor = at + len(block.text)
        pieces = _pieces(block, max_chars)
        for a, b in pieces:
            if current and at + b - current[0][1] > max_chars:
                flush()
            current.append((block, at + a, at + b))
        if len(pieces) > 1:
            flush()  # a split block's last piece does not share its chunk with the next block
    flush()
    return groups
