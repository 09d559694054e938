"""Page layout: typed blocks (kind, Markdown text, reading order, box in three stated spaces) and their parser.

**Prompting strategy** (``read_pdf(task="layout")``). One grounded-OCR pass per page: :data:`LAYOUT_PROMPT` is
the grounded-OCR prompt (:data:`~internvl_tools.grounding.GROUNDED_OCR_PROMPT`, one ``<ref>line</ref><box>[[…]]
</box>`` per text line, the form InternVL's OCR data uses) plus one sentence asking that each line be written as
Markdown (``#`` headings, ``-`` list items, ``| … |`` table rows). One pass keeps the cost of plain OCR (no second
call per region) and keeps every box tied to the words it covers. :func:`parse_layout` reads the answer line by
line into *line blocks*, then groups them (:func:`group_lines`): consecutive table rows become one ``table``,
consecutive list items one ``list``, ``#`` lines a ``heading``, ``Figure 2: …`` / ``Table 1: …`` a ``caption``,
``![chart](…)`` / ``[chart]`` placeholders a ``chart`` (``figure`` for other pictures), and other lines join the
paragraph above them when the vertical gap is under :data:`PARAGRAPH_GAP` line heights. A block's box is the union
of its lines' boxes.

**Fallbacks.** The parser never raises on model text. A line the model wrote without a box (or a ``<ref>`` with
no box) stays in its block; a block none of whose lines has a box keeps ``box_* = None`` and the result carries a
warning; an answer with no boxes at all is read as plain Markdown (blocks split on blank lines, every box None, one
warning). Problems of the box syntax come from :func:`~internvl_tools.grounding.parse_grounding` as its warning
codes.

**Coordinate spaces** (all three on every boxed :class:`Block`, ``(x1, y1, x2, y2)``, ``x`` right and ``y`` down,
origin at the top-left corner of the page *as displayed*, rotation applied):

* ``box_norm1000``: the model's 0–1000 integers, relative to the whole rendered page;
* ``box_px``: pixels of the rendered page image (``PageResult.image_size``): ``v / 1000 * W``;
* ``box_pt``: PDF points (1/72 inch) as a viewer shows the page (``PageResult.page_size_pt``): ``v / 1000 * Wpt``.
  Note that PDF user space has its origin at the bottom-left; ``y_pdf = page_height_pt - y`` converts.

>>> layout = parse_layout("<ref># Title</ref><box>[[100, 50, 900, 100]]</box>\\n"
...                       "<ref>Hello world.</ref><box>[[100, 120, 900, 150]]</box>", (1000, 2000), (500.0, 1000.0))
>>> [(b.kind, b.text, b.box_pt) for b in layout.blocks]
[('heading', '# Title', (50.0, 50.0, 450.0, 100.0)), ('paragraph', 'Hello world.', (50.0, 120.0, 450.0, 150.0))]
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field

from internvl_tools.grounding.parser import parse_grounding
from internvl_tools.grounding.prompts import GROUNDED_OCR_PROMPT

__all__ = [
    "LAYOUT_PROMPT",
    "PARAGRAPH_GAP",
    "Block",
    "BlockKind",
    "Layout",
    "LineBlock",
    "blocks_markdown",
    "group_lines",
    "parse_layout",
]

#: What a block is.
BlockKind = Literal["heading", "paragraph", "list", "table", "chart", "figure", "caption", "other"]

#: The one prompt of ``task="layout"``: grounded OCR, each line written as Markdown (see the module docstring).
LAYOUT_PROMPT = (
    f"{GROUNDED_OCR_PROMPT} Write each line's text as Markdown: # for headings, - for list items, "
    "| cells | for table rows, and [chart] or [figure] for a picture."
)

#: A line joins the paragraph above it when the gap between them is under this many line heights.
PARAGRAPH_GAP = 1.2

Box = tuple[float, float, float, float]

_HEADING = re.compile(r"^#{1,6}\s")
_LIST_ITEM = re.compile(r"^\s*(?:[-*+•]|\d{1,3}[.)])\s")
_TABLE_ROW = re.compile(r"^\s*\|.*\|\s*$")
_CAPTION = re.compile(r"^\s*(?:\*{0,2})(?:figure|fig\.|table|chart)\s*\d+[.:]", re.IGNORECASE)
_PICTURE = re.compile(r"^\s*(?:!\[(?P<alt>[^\]]*)\]\([^)]*\)|\[(?P<tag>chart|figure|image|picture)\])\s*$", re.I)
_REF = re.compile(r"<ref>", re.IGNORECASE)
_BLANK_SPLIT = re.compile(r"\n\s*\n")


def line_kind(text: str) -> BlockKind:
    """The kind a single Markdown line announces (``paragraph`` when it announces none).

    >>> [line_kind(t) for t in ("# A", "- b", "| c |", "Figure 1: d", "![chart](x.png)", "e")]
    ['heading', 'list', 'table', 'caption', 'chart', 'paragraph']
    """
    picture = _PICTURE.match(text)
    if picture:
        name = (picture.group("alt") or picture.group("tag") or "").lower()
        return "chart" if "chart" in name or "plot" in name or "graph" in name else "figure"
    if _HEADING.match(text):
        return "heading"
    if _TABLE_ROW.match(text):
        return "table"
    if _LIST_ITEM.match(text):
        return "list"
    if _CAPTION.match(text):
        return "caption"
    return "paragraph"


class LineBlock(BaseModel):
    """One line of the model's answer: its Markdown text and its box on the 0–1000 scale (None when it had none)."""

    model_config = ConfigDict(frozen=True)

    text: str
    box_norm1000: Box | None = None

    @property
    def kind(self) -> BlockKind:
        return line_kind(self.text)


class Block(BaseModel):
    """One region of a page in reading order (see the module docstring for the coordinate spaces).

    ``order`` is the 0-based reading-order index on the page; ``text`` is Markdown (tables as Markdown tables,
    list items one per line). ``box_norm1000``, ``box_px`` and ``box_pt`` are the same box in three spaces, or all
    ``None`` when the model gave no box for any line of the block.
    """

    model_config = ConfigDict(frozen=True)

    kind: BlockKind
    text: str
    order: int = Field(ge=0)
    box_norm1000: Box | None = Field(default=None, description="The model's 0-1000 scale, whole page.")
    box_px: Box | None = Field(default=None, description="Pixels of the rendered page image, origin top-left.")
    box_pt: Box | None = Field(default=None, description="PDF points as displayed, origin top-left.")


class Layout(BaseModel):
    """What :func:`parse_layout` read: the blocks in reading order and every problem met (never an exception)."""

    blocks: list[Block] = Field(default_factory=list)
    warnings: list[str] = Field(default_factory=list)

    @property
    def markdown(self) -> str:
        return blocks_markdown(self.blocks)


def blocks_markdown(blocks: Sequence[Block]) -> str:
    """The page as Markdown: the blocks' text in reading order, separated by blank lines.

    This is ``PageResult.text`` of the layout task, and what chunks tile (:mod:`.chunks`).
    """
    return "\n\n".join(b.text for b in sorted(blocks, key=lambda b: b.order) if b.text)


def _union(boxes: Sequence[Box]) -> Box | None:
    if not boxes:
        return None
    return (
        min(b[0] for b in boxes),
        min(b[1] for b in boxes),
        max(b[2] for b in boxes),
        max(b[3] for b in boxes),
    )


def _scale(box: Box, size: tuple[float, float]) -> Box:
    w, h = size
    return (
        round(box[0] / 1000 * w, 3),
        round(box[1] / 1000 * h, 3),
        round(box[2] / 1000 * w, 3),
        round(box[3] / 1000 * h, 3),
    )


def _joins(previous: list[LineBlock], line: LineBlock) -> bool:
    """A paragraph line continues the paragraph above when they are close vertically (or either has no box)."""
    above = previous[-1].box_norm1000
    below = line.box_norm1000
    if above is None or below is None:
        return above is None and below is None
    height = max(above[3] - above[1], below[3] - below[1], 1.0)
    overlap_x = min(above[2], below[2]) - max(above[0], below[0])
    return below[1] - above[3] < PARAGRAPH_GAP * height and overlap_x > 0


def group_lines(lines: Sequence[LineBlock]) -> list[tuple[BlockKind, list[LineBlock]]]:
    """Group line blocks into blocks: runs of table rows, runs of list items (a wrapped line without a marker
    stays in its item), single headings, captions and pictures, and paragraphs of nearby lines."""
    groups: list[tuple[BlockKind, list[LineBlock]]] = []
    for line in lines:
        kind = line.kind
        last_kind, last = groups[-1] if groups else (None, [])
        if (
            (kind == "table" and last_kind == "table")
            or (kind == "list" and last_kind == "list")
            or (kind == "paragraph" and last_kind in ("paragraph", "list") and _joins(last, line))
        ):
            last.append(line)
        else:
            groups.append((kind, [line]))
    return groups


def _lines_of(text: str) -> tuple[list[LineBlock], list[str]]:
    lines: list[LineBlock] = []
    warnings: list[str] = []
    for raw in text.splitlines():
        if not raw.strip():
            continue
        if not _REF.search(raw) and "[[" not in raw:
            lines.append(LineBlock(text=raw.strip()))
            continue
        parsed = parse_grounding(raw, (1000, 1000))
        warnings.extend(f"{w.code}: {w.message}" for w in parsed.warnings if w.code != "ref_without_box")
        found = False
        for obj in parsed.objects:
            label = (obj.label or "").strip()
            if not label:
                continue
            found = True
            box = _union([b.xyxy for b in obj.boxes])
            lines.append(LineBlock(text=label, box_norm1000=box))
        if not found:  # tags without text: keep what is left of the line as text
            rest = re.sub(r"</?(?:ref|box)>|\[\[[^\]]*\]\]", "", raw, flags=re.IGNORECASE).strip()
            if rest:
                lines.append(LineBlock(text=rest))
    return lines, warnings


def parse_layout(
    text: str | None, image_size: tuple[int, int], page_size_pt: tuple[float, float] | None = None
) -> Layout:
    """Read a layout answer into blocks; never raises on ``text`` (problems become ``Layout.warnings``).

    ``image_size`` is the rendered page in pixels and ``page_size_pt`` the page as displayed in points (``None``
    for images, whose blocks then have ``box_pt=None``).

    >>> parse_layout("Just text.\\n\\n- a\\n- b", (100, 100)).warnings[0].startswith("no boxes")
    True
    >>> [b.kind for b in parse_layout("Just text.\\n\\n- a\\n- b", (100, 100)).blocks]
    ['paragraph', 'list']
    """
    text = text if isinstance(text, str) else ("" if text is None else str(text))
    lines, warnings = _lines_of(text)
    if lines and all(line.box_norm1000 is None for line in lines):
        warnings.append("no boxes in the answer: read as plain Markdown, every block has box=None")
        groups: list[tuple[BlockKind, list[LineBlock]]] = []
        for para in _BLANK_SPLIT.split(text.strip()):
            para_lines = [LineBlock(text=p.strip()) for p in para.splitlines() if p.strip()]
            groups.extend(group_lines(para_lines))  # a blank line always ends a block
    else:
        groups = group_lines(lines)
    blocks: list[Block] = []
    for order, (kind, members) in enumerate(groups):
        box = _union([m.box_norm1000 for m in members if m.box_norm1000 is not None])
        joiner = "\n" if kind in ("table", "list") else " "
        body = joiner.join(m.text for m in members)
        if box is None and len(warnings) < 100 and any(m.box_norm1000 is not None for m in lines):
            warnings.append(f"block {order} ({kind}, {body[:40]!r}) has no box; kept with box=None")
        blocks.append(
            Block(
                kind=kind,
                text=body,
                order=order,
                box_norm1000=box,
                box_px=_scale(box, image_size) if box is not None else None,
                box_pt=_scale(box, page_size_pt) if box is not None and page_size_pt is not None else None,
            )
        )
    return Layout(blocks=blocks, warnings=warnings)
