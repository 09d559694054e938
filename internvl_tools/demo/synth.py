"""Synthetic documents with exact ground truth: the training and evaluation data of the demo model.

Everything is drawn with Pillow's built-in font (``ImageFont.load_default(size=...)``, no font files) from a
``random.Random`` seed, so the same seed gives the same pixels and the same ground truth.

Layouts are snapped to the demo model's token grid: a tile is 128x128 px and each of its 16 image tokens covers a
32x32 cell, so a text line sits centred in one of 4 grid rows and starts at x = 4 + 32k. (Free layouts were far
harder for a model this small to learn in the CPU budget; see ``docs/tiny_trained_vlm.md``.)

Sample kinds:

- ``text``: 1-4 lines of words, integers, amounts (``1,234.56``) and dates (``2024-03-14``);
- ``table``: 2-4 rows of ``item | amount`` with ruling lines, transcribed as Markdown table rows;
- ``chart``: a bar chart of 2-4 months with the values printed above the bars;
- ``page``: a "scanned" page one, two or three tiles wide and one to six tiles in all, one text/table block per
  tile, read block by block (tile rows top to bottom, left to right within a row), with noise, a slight rotation
  and JPEG artefacts (:func:`scan`); :func:`write_pdf` puts pages into a PDF.

Every :class:`Sample` carries its transcript, its word and line boxes (pixels and InternVL's 0-1000 scale), the
centre of every drawn character (the target of the training-only auxiliary losses) and, for charts, the plotted
data.

>>> import random
>>> s = text_tile(random.Random(0))
>>> s.image.size, len(s.lines) >= 1, all(0 <= v <= 1000 for w in s.words for v in w.box_1000)
((128, 128), True, True)
"""

from __future__ import annotations

import io
import random
from dataclasses import dataclass, field
from functools import lru_cache
from pathlib import Path

from PIL import Image, ImageDraw, ImageFilter, ImageFont

TILE = 128
CELL = 32
#: Every line (and table cell) starts this far right of a cell's left edge: x = COLUMN_INSET + CELL * k.
COLUMN_INSET = 4
#: Most tiles a generated page spans (the demo model's tile budget is this many, plus the thumbnail).
PAGE_MAX_TILES = 6
#: Page shapes as (tiles wide, tiles tall): one to three tiles wide, each a grid the tiler picks exactly.
PAGE_GRIDS = ((1, 2), (1, 3), (1, 4), (2, 1), (2, 2), (2, 3), (3, 1), (3, 2))
FONT_SIZE = 12
CHART_FONT_SIZE = 10

#: The document vocabulary (each word is one token of the demo tokenizer).
WORDS = (
    "Invoice",
    "Total",
    "Due",
    "Tax",
    "Date",
    "Amount",
    "Price",
    "Qty",
    "Item",
    "Order",
    "Paid",
    "Balance",
    "Subtotal",
    "Discount",
    "Shipping",
    "Account",
    "Customer",
    "Payment",
    "Receipt",
    "Cash",
    "Card",
    "Change",
    "Net",
    "Gross",
    "VAT",
    "Fee",
    "Rate",
    "Hours",
    "Units",
    "Unit",
    "Number",
    "Ref",
    "Code",
    "Name",
    "Address",
    "City",
    "Region",
    "Phone",
    "Email",
    "Bank",
    "Credit",
    "Debit",
    "Refund",
    "Deposit",
    "Service",
    "Product",
    "Report",
    "Summary",
    "Office",
    "Paper",
    "Toner",
    "Lamp",
    "Desk",
    "Chair",
    "Coffee",
    "Water",
    "Travel",
    "Hotel",
    "Taxi",
    "Lunch",
    "Dinner",
    "Rent",
    "Power",
    "Phone",
    "Repair",
    "Labour",
    "Parts",
    "Stock",
)
WORDS = tuple(dict.fromkeys(WORDS))
MONTHS = ("Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec")
INK = ((0, 0, 0), (30, 30, 90), (60, 20, 20))
BAR_COLOURS = ((66, 133, 244), (219, 68, 55), (244, 180, 0), (15, 157, 88), (120, 80, 160), (90, 90, 90))
#: Characters the auxiliary loss predicts per image-token cell (space excluded).
CHARSET = "".join(sorted(set("0123456789,.-:" + "".join(WORDS) + "".join(MONTHS))))


@lru_cache(maxsize=8)
def font(size: int = FONT_SIZE) -> ImageFont.FreeTypeFont:
    """Pillow's built-in scalable font at ``size`` px (needs Pillow with FreeType, which wheels ship)."""
    return ImageFont.load_default(size=size)  # type: ignore[return-value]


@dataclass
class Word:
    """One drawn item: its text, its pixel box ``(x1, y1, x2, y2)`` and the same box on the 0-1000 scale."""

    text: str
    box: tuple[int, int, int, int]
    box_1000: tuple[int, int, int, int]


@dataclass
class Sample:
    """An image with its ground truth."""

    kind: str
    image: Image.Image
    lines: list[str] = field(default_factory=list)
    words: list[Word] = field(default_factory=list)
    #: (character, centre x, centre y) in image pixels, for every drawn non-space character.
    chars: list[tuple[str, float, float]] = field(default_factory=list)
    #: Chart data as (label, value) in bar order.
    chart: list[tuple[str, int]] = field(default_factory=list)
    #: One entry per transcript line, in reading order: the line's text and the box around all of its ink.
    line_boxes: list[Word] = field(default_factory=list)

    @property
    def text(self) -> str:
        """The transcript: lines joined by newlines."""
        return "\n".join(self.lines)


def to_1000(box: tuple[float, float, float, float], size: tuple[int, int]) -> tuple[int, int, int, int]:
    """A pixel box on InternVL's 0-1000 scale (``round(x / W * 1000)``).

    >>> to_1000((32, 0, 64, 128), (128, 128))
    (250, 0, 500, 1000)
    """
    w, h = size
    x1, y1, x2, y2 = box
    return (round(x1 / w * 1000), round(y1 / h * 1000), round(x2 / w * 1000), round(y2 / h * 1000))


def _item(rng: random.Random) -> str:
    r = rng.random()
    if r < 0.5:
        return rng.choice(WORDS)
    if r < 0.7:
        return str(rng.randint(1, 10 ** rng.randint(1, 4) - 1))
    if r < 0.92:
        whole = rng.randint(0, 10 ** rng.randint(1, 4) - 1)
        return f"{whole:,}.{rng.randint(0, 99):02d}"
    return f"20{rng.randint(10, 29)}-{rng.randint(1, 12):02d}-{rng.randint(1, 28):02d}"


def union(boxes: list[tuple[int, int, int, int]]) -> tuple[int, int, int, int]:
    """The smallest box holding every box of ``boxes``.

    >>> union([(1, 2, 3, 4), (0, 3, 2, 9)])
    (0, 2, 3, 9)
    """
    return (min(b[0] for b in boxes), min(b[1] for b in boxes), max(b[2] for b in boxes), max(b[3] for b in boxes))


def _add_line(sample: Sample, text: str, first_word: int) -> None:
    """Record the transcript line ``text`` whose words are ``sample.words[first_word:]``."""
    box = union([w.box for w in sample.words[first_word:]])
    sample.lines.append(text)
    sample.line_boxes.append(Word(text, box, to_1000(box, sample.image.size)))


def _draw_text(draw: ImageDraw.ImageDraw, sample: Sample, xy: tuple[int, int], text: str, ink: tuple) -> None:
    """Draw ``text`` with its top-left at ``xy``; record word boxes and character centres."""
    f = font(FONT_SIZE)
    x0, y0 = xy
    draw.text((x0, y0), text, font=f, fill=ink)
    _, top, _, bottom = f.getbbox("Ag0")
    cy = y0 + (top + bottom) / 2
    for i, ch in enumerate(text):
        if ch != " ":
            a, b = f.getlength(text[:i]), f.getlength(text[: i + 1])
            sample.chars.append((ch, x0 + (a + b) / 2, cy))
    pos = 0
    for token in text.split(" "):
        start = x0 + f.getlength(text[:pos])
        box = draw.textbbox((start, y0), token, font=f)
        box = (int(box[0]), int(box[1]), int(box[2]), int(box[3]))
        sample.words.append(Word(token, box, to_1000(box, sample.image.size)))
        pos += len(token) + 1


def _line_top(row: int, y_offset: int = 0) -> int:
    f = font(FONT_SIZE)
    _, top, _, bottom = f.getbbox("Ag0")
    return y_offset + row * CELL + CELL // 2 - round((top + bottom) / 2)


def starts_on_grid_column(x: float, tolerance: float = 2.0) -> bool:
    """Whether a word whose box starts at ``x`` (pixels within its tile) starts where lines start: x = 4 + 32k.

    Every line starts on such a column; later words of a line start wherever the words before them end, often
    inside one of the image tokens' 32-px cells. The evaluation splits grounding by this, since the demo model places
    a word by the cell it starts in (``docs/tiny_trained_vlm.md``, "eighth run").

    >>> [starts_on_grid_column(x) for x in (4, 37, 60, 100.5)]
    [True, True, False, True]
    """
    offset = (x - COLUMN_INSET) % CELL
    return min(offset, CELL - offset) <= tolerance


def _fill_text(
    rng: random.Random, sample: Sample, draw: ImageDraw.ImageDraw, y_offset: int, easy: bool, x_offset: int = 0
) -> None:
    f = font(FONT_SIZE)
    ink = rng.choice(INK)
    rows = [0] if easy else sorted(rng.sample(range(4), rng.randint(1, 4)))
    for row in rows:
        col = 0 if easy else rng.choice((0, 0, 0, 1, 2))
        x = COLUMN_INSET + CELL * col
        limit = TILE - 2 - x
        items: list[str] = []
        n = 1 + (rng.random() < 0.5) if easy else rng.randint(1, 3)
        for k in range(n):
            item = rng.choice(WORDS) if easy and k == 0 else _item(rng)
            if easy and k == 1:
                item = str(rng.randint(0, 999))
            if f.getlength(" ".join([*items, item])) <= limit:
                items.append(item)
        if not items:
            items = [rng.choice(("Tax", "Due", "Net", "Fee", "Ref", "VAT"))]
        line = " ".join(items)
        first = len(sample.words)
        _draw_text(draw, sample, (x_offset + x, _line_top(row, y_offset)), line, ink)
        _add_line(sample, line, first)


def _fill_table(
    rng: random.Random, sample: Sample, draw: ImageDraw.ImageDraw, y_offset: int, x_offset: int = 0
) -> None:
    f = font(FONT_SIZE)
    ink = rng.choice(INK)
    first = rng.randint(0, 2)
    rows = range(first, rng.randint(first + 2, 4) if first < 3 else 4)
    rule = (150, 150, 150)
    for row in rows:
        word = rng.choice([w for w in WORDS if f.getlength(w) <= 2 * CELL - 8])
        amount = f"{rng.randint(0, 999)}.{rng.randint(0, 99):02d}"
        first = len(sample.words)
        _draw_text(draw, sample, (x_offset + COLUMN_INSET, _line_top(row, y_offset)), word, ink)
        _draw_text(draw, sample, (x_offset + COLUMN_INSET + 2 * CELL, _line_top(row, y_offset)), amount, ink)
        bottom = y_offset + row * CELL + CELL - 1
        draw.line((x_offset, bottom, x_offset + TILE - 1, bottom), fill=rule)
        _add_line(sample, f"| {word} | {amount} |", first)
    x = x_offset + 2 * CELL - 2
    draw.line((x, y_offset + rows[0] * CELL + 2, x, y_offset + rows[-1] * CELL + CELL - 2), fill=rule)


def text_tile(rng: random.Random, *, easy: bool = False) -> Sample:
    """One 128x128 tile of 1-4 grid-aligned text lines (``easy``: one short line at the top left).

    >>> import random
    >>> text_tile(random.Random(1), easy=True).lines[0].split()[0] in WORDS
    True
    """
    image = Image.new("RGB", (TILE, TILE), "white")
    sample = Sample("text", image)
    _fill_text(rng, sample, ImageDraw.Draw(image), 0, easy)
    return sample


def table_tile(rng: random.Random) -> Sample:
    """One 128x128 tile holding a 2-column table (item, amount); lines are Markdown rows ``| item | 1.50 |``."""
    image = Image.new("RGB", (TILE, TILE), "white")
    sample = Sample("table", image)
    _fill_table(rng, sample, ImageDraw.Draw(image), 0)
    return sample


def chart_tile(rng: random.Random) -> Sample:
    """A 128x128 bar chart of 2-4 consecutive-in-order months; each value (5-99) is printed above its bar.

    >>> import random
    >>> s = chart_tile(random.Random(3))
    >>> [label for label, _ in s.chart] == sorted((l for l, _ in s.chart), key=MONTHS.index)
    True
    """
    image = Image.new("RGB", (TILE, TILE), "white")
    draw = ImageDraw.Draw(image)
    sample = Sample("chart", image)
    small = font(CHART_FONT_SIZE)
    n = rng.randint(2, 4)
    labels = sorted(rng.sample(MONTHS, n), key=MONTHS.index)
    start = rng.randint(0, 4 - n)
    base = 108
    draw.line((2, base, TILE - 3, base), fill=(80, 80, 80))
    colour = rng.choice(BAR_COLOURS)
    for k, label in enumerate(labels):
        value = rng.randint(5, 99)
        cx = (start + k) * CELL + CELL // 2
        height = round(value * 0.8)
        draw.rectangle((cx - 9, base - height, cx + 9, base - 1), fill=colour)
        for text, y in ((str(value), base - height - 12), (label, base + 3)):
            width = small.getlength(text)
            x = cx - width / 2
            draw.text((x, y), text, font=small, fill=(0, 0, 0))
            _, top, _, bottom = small.getbbox(text)
            for i, ch in enumerate(text):
                a, b = small.getlength(text[:i]), small.getlength(text[: i + 1])
                sample.chars.append((ch, x + (a + b) / 2, y + (top + bottom) / 2))
            box = draw.textbbox((x, y), text, font=small)
            box = (int(box[0]), int(box[1]), int(box[2]), int(box[3]))
            sample.words.append(Word(text, box, to_1000(box, image.size)))
        sample.chart.append((label, value))
    sample.lines = chart_table(sample.chart).split("\n")
    return sample


def chart_table(data: list[tuple[str, int]]) -> str:
    """Chart data as the Markdown table the model answers with.

    >>> print(chart_table([("Jan", 5)]))
    | Month | Value |
    | --- | --- |
    | Jan | 5 |
    """
    return "\n".join(["| Month | Value |", "| --- | --- |", *(f"| {m} | {v} |" for m, v in data)])


def page(
    rng: random.Random, tiles_tall: int | None = None, *, tiles_wide: int | None = None, scanned: bool = True
) -> Sample:
    """A page of text and table blocks, one per tile, optionally "scanned".

    The shape is drawn from :data:`PAGE_GRIDS` unless ``tiles_wide``/``tiles_tall`` fix it (one given alone keeps
    the other at 1 wide, or at 2-3 tall for a one-tile-wide page). Blocks are read tile row by tile row, left to
    right, so the transcript and :attr:`Sample.line_boxes` follow that order.

    >>> import random
    >>> p = page(random.Random(5), 3)
    >>> p.image.size
    (128, 384)
    >>> page(random.Random(5), 2, tiles_wide=3).image.size
    (384, 256)
    """
    if tiles_wide is None and tiles_tall is None:
        cols, rows = rng.choice(PAGE_GRIDS)
    else:
        cols = tiles_wide or 1
        rows = tiles_tall or (rng.randint(2, 3) if cols == 1 else 1)
    if not 1 <= cols * rows <= PAGE_MAX_TILES:
        raise ValueError(f"a page of {cols}x{rows} tiles exceeds {PAGE_MAX_TILES} tiles; use a smaller shape")
    image = Image.new("RGB", (TILE * cols, TILE * rows), "white")
    draw = ImageDraw.Draw(image)
    sample = Sample("page", image)
    for r in range(rows):
        for c in range(cols):
            if rng.random() < 0.25:
                _fill_table(rng, sample, draw, r * TILE, c * TILE)
            else:
                _fill_text(rng, sample, draw, r * TILE, easy=False, x_offset=c * TILE)
    if scanned:
        sample.image = scan(image, rng)
    return sample


def scan(image: Image.Image, rng: random.Random, *, strength: float = 1.0) -> Image.Image:
    """Make a clean render look scanned: a slight rotation (<= 0.6 deg), grey paper, noise, JPEG artefacts.

    The rotation is small enough that word boxes stay within a pixel or two of the clean ground truth.
    """
    import numpy as np

    angle = rng.uniform(-0.6, 0.6) * strength
    out = image.rotate(angle, resample=Image.BICUBIC, fillcolor=(255, 255, 255))
    arr = np.asarray(out).astype(np.float32)
    paper = rng.uniform(0, 18) * strength
    noise = np.random.default_rng(rng.randrange(2**32)).normal(0, rng.uniform(2, 9) * strength, arr.shape)
    arr = np.clip(arr - paper + noise, 0, 255).astype(np.uint8)
    out = Image.fromarray(arr)
    if rng.random() < 0.3:
        out = out.filter(ImageFilter.GaussianBlur(0.4))
    buf = io.BytesIO()
    out.save(buf, "JPEG", quality=rng.randint(45, 85))
    buf.seek(0)
    return Image.open(buf).convert("RGB")


def write_pdf(samples: list[Sample], path: str | Path, dpi: float = 72.0) -> Path:
    """Write the samples' images as the pages of one PDF (one image per page, ``dpi`` sets the page size).

    At the default 72 dpi a 128x384 px page is 128x384 pt, so rendering it at 144 dpi doubles its pixels.
    """
    path = Path(path)
    images = [s.image.convert("RGB") for s in samples]
    images[0].save(path, "PDF", resolution=dpi, save_all=True, append_images=images[1:])
    return path


def corpus() -> list[str]:
    """Every string the generator can print, for building the tokenizer (numbers are split into digits)."""
    return [*WORDS, *MONTHS, "0123456789", ",.-:|", "| Month | Value |", "| --- | --- |"]
