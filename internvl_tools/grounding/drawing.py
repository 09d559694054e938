"""Pictures of grounding results: boxes and labels drawn on the image, in distinct colours, readable on any background.

>>> from PIL import Image
>>> from internvl_tools.grounding import parse_grounding
>>> img = Image.new("RGB", (200, 100), "white")
>>> draw(img, parse_grounding("<ref>a</ref><box>[[100, 100, 500, 900]]</box>", img.size)).size
(200, 100)
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

from internvl_tools.errors import ConfigError

if TYPE_CHECKING:  # pragma: no cover - for type checkers only; GroundingResult.draw() calls into this module
    from PIL import Image

    from internvl_tools.grounding.result import GroundingResult
    from internvl_tools.grounding.types import BoundingBox

__all__ = ["DEFAULT_PALETTE", "draw", "draw_grounding", "draw_regions"]


#: Saturated colours that stay distinct from each other and from grey backgrounds.
DEFAULT_PALETTE: tuple[tuple[int, int, int], ...] = (
    (230, 25, 75),
    (60, 180, 75),
    (255, 225, 25),
    (0, 130, 200),
    (245, 130, 48),
    (145, 30, 180),
    (70, 240, 240),
    (240, 50, 230),
    (210, 245, 60),
    (0, 128, 128),
    (170, 110, 40),
    (128, 0, 0),
    (0, 0, 128),
    (255, 105, 180),
    (0, 255, 127),
    (255, 69, 0),
)


def _pixel_rect(box: BoundingBox, width: int, height: int) -> tuple[int, int, int, int]:
    """Inclusive pixel rectangle covered by a continuous box, inside the image."""
    x1 = min(max(math.floor(box.x1), 0), width - 1)
    y1 = min(max(math.floor(box.y1), 0), height - 1)
    x2 = min(max(math.ceil(box.x2) - 1, x1), width - 1)
    y2 = min(max(math.ceil(box.y2) - 1, y1), height - 1)
    return x1, y1, x2, y2


def draw(
    image: Image.Image,
    result: GroundingResult,
    *,
    width: int | None = None,
    font_size: int | None = None,
    palette: Sequence[tuple[int, int, int] | str] | None = None,
    show_labels: bool = True,
) -> Image.Image:
    """Return a copy of ``image`` (RGB) with the boxes outlined and labelled; the input is not changed.

    Outlines are drawn inside each box, ``width`` pixels thick (default scales with the image). Each label gets
    one colour, in order of first appearance, from ``palette`` (RGB tuples or colour names). Label text sits on
    a filled rectangle of the box's colour, black or white whichever contrasts, *outside* the box: above it, or
    below it when the box touches the top edge, so a label never hides what its box marks (only a box as tall as
    the image gets its label inside, at its bottom). Boxes are scaled if ``image`` is not ``result.image_size``.

    >>> from PIL import Image
    >>> from internvl_tools.grounding import parse_grounding
    >>> r = parse_grounding("<ref>cat</ref><box>[[100, 100, 600, 600]]</box>", (64, 48))
    >>> draw(Image.new("RGB", (64, 48), "gray"), r).size
    (64, 48)
    """
    from PIL import ImageColor, ImageDraw, ImageFont

    canvas = image.convert("RGB")
    if canvas is image:  # pragma: no cover - convert() always copies, but never draw on the caller's image
        canvas = image.copy()
    img_w, img_h = canvas.size
    res_w, res_h = result.image_size
    sx, sy = img_w / res_w, img_h / res_h
    line = width if width is not None else max(2, round(min(img_w, img_h) / 250))
    size = font_size if font_size is not None else max(10, round(min(img_w, img_h) / 40))
    try:
        font: Any = ImageFont.load_default(size=size)
    except (TypeError, ImportError, OSError):  # pragma: no cover - Pillow without FreeType
        font = ImageFont.load_default()
    colours = [ImageColor.getrgb(c) if isinstance(c, str) else tuple(c) for c in (palette or DEFAULT_PALETTE)]
    if not colours:
        raise ConfigError("palette is empty; pass at least one colour or None for the default")
    colour_of: dict[str | None, tuple[int, ...]] = {}
    for obj in result.objects:
        if obj.label not in colour_of:
            colour_of[obj.label] = colours[len(colour_of) % len(colours)]

    pen = ImageDraw.Draw(canvas)
    placed: list[tuple[tuple[int, int, int, int], str | None, tuple[int, ...]]] = []
    for obj in result.objects:
        for box in obj.boxes:
            rect = _pixel_rect(box.scaled(sx, sy), img_w, img_h)
            pen.rectangle(rect, outline=colour_of[obj.label][:3], width=line)
            placed.append((rect, obj.label, colour_of[obj.label]))
    if not show_labels:
        return canvas
    pad = max(1, size // 6)
    for (x1, y1, _, y2), label, colour in placed:
        if not label:
            continue
        left, top, right, bottom = pen.textbbox((0, 0), label, font=font)
        box_w, box_h = right - left + 2 * pad, bottom - top + 2 * pad
        tx = max(0, min(x1, img_w - box_w))
        ty = _label_top(y1, y2, box_h, img_h)
        pen.rectangle((tx, ty, tx + box_w - 1, ty + box_h - 1), fill=colour[:3])
        luminance = 0.299 * colour[0] + 0.587 * colour[1] + 0.114 * colour[2]
        ink = (0, 0, 0) if luminance > 140 else (255, 255, 255)
        pen.text((tx + pad - left, ty + pad - top), label, fill=ink, font=font)
    return canvas


def _label_top(y1: int, y2: int, label_h: int, img_h: int) -> int:
    """Where a label goes: above the box, else below it, else (a box as tall as the image) at the image's bottom."""
    if y1 - label_h >= 0:
        return y1 - label_h
    if y2 + 1 + label_h <= img_h:
        return y2 + 1
    return max(0, img_h - label_h)


def draw_regions(
    image: Image.Image,
    boxes: Sequence[Sequence[float] | None],
    space_size: tuple[float, float],
    *,
    labels: Sequence[str | None] | None = None,
    colour: tuple[int, int, int] | str = (0, 130, 200),
    fill_alpha: float = 0.25,
    width: int | None = None,
) -> Image.Image:
    """Return a copy of ``image`` with regions highlighted: a translucent fill and an outline per box.

    ``boxes`` are ``(x1, y1, x2, y2)`` in a space of size ``space_size`` (e.g. PDF points and the page's size in
    points; pixels and ``image.size``), origin top-left; ``None`` entries are skipped. The fill is ``colour`` at
    ``fill_alpha`` opacity, so the text under it stays readable; labels go outside the boxes as in :func:`draw`.

    >>> from PIL import Image
    >>> out = draw_regions(Image.new("RGB", (100, 100), "white"), [(0, 0, 36, 36)], (72, 72))
    >>> out.getpixel((10, 10)) != (255, 255, 255), out.getpixel((80, 80))
    (True, (255, 255, 255))
    """
    from PIL import Image as PILImage
    from PIL import ImageColor, ImageDraw, ImageFont

    if not 0 <= fill_alpha <= 1:
        raise ConfigError(f"fill_alpha must be between 0 and 1, got {fill_alpha!r}")
    sw, sh = space_size
    if not (sw > 0 and sh > 0):
        raise ConfigError(f"space_size must be a positive (width, height), got {space_size!r}")
    rgb = ImageColor.getrgb(colour) if isinstance(colour, str) else tuple(colour)
    base = image.convert("RGBA")
    img_w, img_h = base.size
    overlay = PILImage.new("RGBA", base.size, (0, 0, 0, 0))
    pen = ImageDraw.Draw(overlay)
    line = width if width is not None else max(2, round(min(img_w, img_h) / 250))
    rects = []
    for box in boxes:
        if box is None:
            continue
        x1, y1, x2, y2 = (float(v) for v in box)
        rect = (
            min(max(math.floor(x1 / sw * img_w), 0), img_w - 1),
            min(max(math.floor(y1 / sh * img_h), 0), img_h - 1),
            min(max(math.ceil(x2 / sw * img_w) - 1, 0), img_w - 1),
            min(max(math.ceil(y2 / sh * img_h) - 1, 0), img_h - 1),
        )
        rects.append(rect)
        pen.rectangle(rect, fill=(*rgb[:3], round(255 * fill_alpha)), outline=(*rgb[:3], 255), width=line)
    canvas = PILImage.alpha_composite(base, overlay).convert("RGB")
    if labels:
        ink = ImageDraw.Draw(canvas)
        font: Any = ImageFont.load_default()
        for rect, label in zip(rects, labels, strict=False):
            if not label:
                continue
            left, top, right, bottom = ink.textbbox((0, 0), label, font=font)
            tx = max(0, min(rect[0], img_w - (right - left) - 2))
            ty = _label_top(rect[1], rect[3], bottom - top + 2, img_h)
            ink.rectangle((tx, ty, tx + right - left + 1, ty + bottom - top + 1), fill=rgb[:3])
            ink.text((tx + 1 - left, ty + 1 - top), label, fill=(255, 255, 255), font=font)
    return canvas


#: The name :func:`draw` goes by at the package top level (``internvl_tools.draw_grounding``).
draw_grounding = draw
