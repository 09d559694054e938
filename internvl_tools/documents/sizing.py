"""What one rendered page may be: its size (the grid rule, ``dpi``, the pixel cap) and its cost (:class:`PageLimits`).

The size rule: a page is rendered so that the tile grid InternVL's tiler picks for its shape is filled without
upsampling (:func:`grid_longest_side`), unless the caller fixes ``dpi`` or ``longest_side``; no bitmap exceeds
:data:`MAX_PAGE_PIXELS` nor the media policy's ``max_pixels``. The cost rule: each PDF page gets CPU seconds and
memory in the worker process (:class:`PageLimits`, enforced by :mod:`.worker`). :func:`check_render_options` is
the one check of these options, used by :func:`~.render.render_pages` and :class:`~.options.ReadOptions`.

>>> default_longest_side(), DEFAULT_LONGEST_SIDE
(1792, 1792)
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any, Literal

from internvl_tools.constants import DEFAULT_IMAGE_SIZE, DEFAULT_MAX_TILES
from internvl_tools.errors import ConfigError, PageRenderError

__all__ = [
    "DEFAULT_LONGEST_SIDE",
    "PageLimits",
    "default_longest_side",
    "grid_longest_side",
    "tile_grid_for",
]

#: Never render a bitmap above this many pixels (a 1-metre poster at 600 DPI), nor above the policy's
#: ``max_pixels``: the scale is lowered until the page fits.
MAX_PAGE_PIXELS = 120_000_000

#: Per-page bounds of the worker process by default: CPU seconds, and MiB beyond its start-up footprint.
DEFAULT_PAGE_TIMEOUT_S = 60.0
DEFAULT_PAGE_MEMORY_MB = 2048

#: The render backends: ``"process"`` (bounded worker), ``"thread"`` (trusted input) or ``"auto"``.
Backend = Literal["auto", "process", "thread"]
BACKENDS: tuple[Backend, ...] = ("auto", "process", "thread")


@dataclass(frozen=True)
class PageLimits:
    """Per-page bounds enforced in the worker process.

    Attributes:
        timeout_s: CPU seconds one page may take (open, parse and render); ``None`` for no limit.
        memory_mb: address space the worker may add beyond its start-up footprint, in MiB; ``None`` for no limit.
    """

    timeout_s: float | None = DEFAULT_PAGE_TIMEOUT_S
    memory_mb: int | None = DEFAULT_PAGE_MEMORY_MB


def default_longest_side(image_size: int = DEFAULT_IMAGE_SIZE, max_tiles: int = DEFAULT_MAX_TILES) -> int:
    """The longest side (pixels) to render pages at so that InternVL's tiler never has to upsample a page.

    The tiler resizes a page to a grid of ``cols x rows`` tiles of ``image_size`` pixels (``cols * rows <=
    max_tiles``), picked by aspect ratio. For page shapes (aspect ratio between 1:2 and 2:1, which covers A-series,
    Letter, Legal and their landscape forms) the largest grid side among the candidates is the longest side the
    model can ever see. Rendering larger is resized away by the tiler; rendering smaller makes the tiler upsample
    (blurrier glyphs). With the defaults (448-pixel tiles, 12 tiles) that is 4 x 448 = **1792 px**: the 3x4 grid
    Letter pages get. A4 gets a 2x3 grid (896x1344), so it is rendered at about 152 DPI and downsampled once by the
    tiler, which antialiases small print. For reference: docling renders VLM pages at 144 DPI, olmOCR at 1288 px
    longest side, MinerU at 200 DPI.

    >>> default_longest_side()
    1792
    >>> default_longest_side(448, 6)
    1344
    """
    if image_size < 1 or max_tiles < 1:
        raise ConfigError(f"image_size and max_tiles must be >= 1, got {image_size} and {max_tiles}.")
    longest = 1
    for cols in range(1, max_tiles + 1):
        for rows in range(1, max_tiles // cols + 1):
            if 0.5 <= cols / rows <= 2.0:
                longest = max(longest, cols, rows)
    return longest * image_size


def grid_longest_side(
    width: float, height: float, image_size: int = DEFAULT_IMAGE_SIZE, max_tiles: int = DEFAULT_MAX_TILES
) -> int:
    """The longest side to render one page at so that the grid the tiler picks for *its* shape is never upsampled.

    :func:`default_longest_side` covers pages between 1:2 and 2:1; a longer page (a till receipt, a 1:3 strip)
    gets a grid whose long side is larger (a 1x3 grid of 128-px tiles is 384 px tall, above the 256 px a 4-tile
    budget gives 1:2 pages), so this takes the larger of the two.

    >>> grid_longest_side(595, 842), grid_longest_side(128, 384, image_size=128, max_tiles=4)
    (1792, 384)
    """
    from internvl_tools.tiling import select_grid

    floor = default_longest_side(image_size, max_tiles)
    scale = floor / max(width, height)
    cols, rows = select_grid(
        max(1, round(width * scale)), max(1, round(height * scale)), max_tiles=max_tiles, image_size=image_size
    )
    return max(floor, (cols if width >= height else rows) * image_size)


def tile_grid_for(engine: Any) -> tuple[int, int] | None:
    """``(image_size, tile budget)`` of an engine's checkpoint, for :func:`~.render.render_pages`'s ``tile_grid``.

    ``None`` when the engine does not say its tile size (a remote server). Reads the config only, never weights.

    >>> from types import SimpleNamespace
    >>> tile_grid_for(SimpleNamespace(info=SimpleNamespace(image_size=448, max_dynamic_patch=6), max_tiles=None))
    (448, 6)
    """
    from internvl_tools.tiling import tile_budget

    info = engine.info
    size = getattr(info, "image_size", None)
    if not size:
        return None
    return int(size), tile_budget(info, getattr(engine, "max_tiles", None))


#: Default longest rendered side for 448-pixel tiles and a 12-tile budget (see :func:`default_longest_side`).
DEFAULT_LONGEST_SIDE = default_longest_side()


def choose_scale(
    width: float, height: float, dpi: float | None, longest_side: int | None, max_pixels: int = MAX_PAGE_PIXELS
) -> float:
    """Pixels per unit: ``dpi / 72``, capped so the longest side stays within ``longest_side`` when both are set,
    and lowered until the bitmap holds at most ``max_pixels`` pixels (so no page can ask for an unbounded one).

    >>> round(choose_scale(612, 792, dpi=144, longest_side=None), 6)
    2.0
    """
    longest = max(width, height)
    if not (longest > 0 and min(width, height) > 0) or not math.isfinite(longest):
        raise PageRenderError(f"The page has a zero or invalid size ({width} x {height}); it cannot be rendered.")
    if dpi is None and longest_side is None:
        longest_side = DEFAULT_LONGEST_SIDE
    scale = dpi / 72.0 if dpi is not None else math.inf
    if longest_side is not None:
        # The tiny shrink keeps ceil(longest * scale) == longest_side despite float rounding.
        scale = min(scale, longest_side / longest * (1 - 1e-9))
    for _ in range(64):
        pixels = math.ceil(width * scale) * math.ceil(height * scale)
        if pixels <= max_pixels:
            return scale
        scale *= min(math.sqrt(max_pixels / pixels), 1 - 1e-6)
    raise PageRenderError(
        f"The page ({width:g} x {height:g} pt) cannot be rendered within {max_pixels} pixels at any scale; its shape "
        "is degenerate."
    )


def check_render_options(
    *,
    dpi: Any = None,
    longest_side: Any = None,
    backend: Any = "auto",
    prefetch: Any = 2,
    tile_grid: Any = None,
    page_timeout: Any = None,
    page_memory_mb: Any = None,
) -> None:
    """Raise :class:`~internvl_tools.errors.ConfigError` naming the first bad render option and how to fix it.

    >>> check_render_options(dpi=0)  # doctest: +ELLIPSIS
    Traceback (most recent call last):
    internvl_tools.errors.ConfigError: dpi must be a number between 1 and 2400, got 0; pass e.g. dpi=144, ...
    """
    if dpi is not None and not (isinstance(dpi, (int, float)) and not isinstance(dpi, bool) and 1 <= dpi <= 2400):
        raise ConfigError(
            f"dpi must be a number between 1 and 2400, got {dpi!r}; pass e.g. dpi=144, or dpi=None to fill the "
            "model's tile grid."
        )
    if longest_side is not None and not (
        isinstance(longest_side, int) and not isinstance(longest_side, bool) and 16 <= longest_side <= 20000
    ):
        raise ConfigError(
            f"longest_side must be an int between 16 and 20000 pixels, got {longest_side!r}; pass e.g. "
            "longest_side=1792, or None."
        )
    if backend not in BACKENDS:
        raise ConfigError(
            f"backend must be 'auto', 'process' or 'thread', got {backend!r}; 'auto' renders PDFs in a bounded "
            "worker process."
        )
    if not isinstance(prefetch, int) or isinstance(prefetch, bool) or prefetch < 1:
        raise ConfigError(f"prefetch must be an int >= 1 (rendered pages queued ahead), got {prefetch!r}.")
    if tile_grid is not None and not (
        isinstance(tile_grid, tuple) and len(tile_grid) == 2 and all(isinstance(v, int) and v >= 1 for v in tile_grid)
    ):
        raise ConfigError(f"tile_grid must be (image_size, max_tiles) as two positive ints, got {tile_grid!r}.")
    if page_timeout is not None and not (
        isinstance(page_timeout, (int, float)) and not isinstance(page_timeout, bool) and page_timeout > 0
    ):
        raise ConfigError(
            f"page_timeout must be a positive number of CPU seconds per page, or None for no limit; got "
            f"{page_timeout!r}."
        )
    if page_memory_mb is not None and not (
        isinstance(page_memory_mb, int) and not isinstance(page_memory_mb, bool) and page_memory_mb >= 64
    ):
        raise ConfigError(
            f"page_memory_mb must be an int >= 64 (MiB per page), or None for no limit; got {page_memory_mb!r}."
        )
