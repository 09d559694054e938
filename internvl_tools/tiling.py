"""InternVL dynamic tiling: the official grid rule and two numeric paths to 448×448 tiles.

The grid rule is the seed's ``dynamic_preprocess`` (research/internvl_reference.md §2.1): among all grids
``(cols, rows)`` with ``min_tiles <= cols*rows <= max_tiles``, take the one whose ratio ``cols/rows`` is closest
to the image's ``W/H``; on an exact tie a later candidate replaces the current one only when
``W*H > 0.5 * S² * cols*rows``. The image is resized to ``(S*cols, S*rows)`` and cut row-major into tiles; a
thumbnail of the whole image (``S×S``) follows when there is more than one tile.

Two numeric paths produce the tiles (their kernels live in :mod:`internvl_tools.resample`):

* ``mode="exact"``: PIL bicubic resizes and torchvision's ``ToTensor`` + ``Normalize`` arithmetic, bit-identical
  to the reference pipeline (the crops and the per-tile transform are vectorised, which changes no value).
* ``mode="fast"`` (default): one uint8 channels-last view of the pixels, torch's antialiased bicubic resize
  (the same filter as PIL, computed with different fixed-point rounding), and one fused normalisation. At most
  2 uint8 levels (0.035 after normalisation) from the reference, several times faster on one core.

>>> from internvl_tools.tiling import select_grid, num_tiles_for
>>> select_grid(800, 600)
(4, 3)
>>> num_tiles_for(1920, 1080)
9
"""

from __future__ import annotations

import contextlib
import functools
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Literal

from internvl_tools.constants import DEFAULT_IMAGE_SIZE, DEFAULT_MAX_TILES, IMAGENET_MEAN, IMAGENET_STD
from internvl_tools.errors import ConfigError, ImageTooSmallError, UnsupportedSourceError
from internvl_tools.resample import as_source, exact_pixels, fast_pixels, source_size

if TYPE_CHECKING:  # pragma: no cover
    import numpy as np
    import torch
    from PIL import Image

__all__ = [
    "TiledImage",
    "candidate_grids",
    "concat_tiles",
    "num_tiles_for",
    "select_grid",
    "split_tile_budget",
    "tile_budget",
    "tile_image",
    "tile_images",
]

Mode = Literal["fast", "exact"]


# --- grid rule ---------------------------------------------------------------------------------------------------


def _check_int(name: str, value: Any, minimum: int = 1) -> int:
    if isinstance(value, bool) or not isinstance(value, int):
        raise ConfigError(f"{name} must be an int, got {value!r} ({type(value).__name__}); pass a whole number.")
    if value < minimum:
        raise ConfigError(f"{name} must be >= {minimum}, got {value}.")
    return value


def _check_tile_range(min_tiles: int, max_tiles: int) -> None:
    _check_int("min_tiles", min_tiles)
    _check_int("max_tiles", max_tiles)
    if min_tiles > max_tiles:
        raise ConfigError(
            f"min_tiles ({min_tiles}) is greater than max_tiles ({max_tiles}); lower min_tiles or raise max_tiles."
        )


def _check_size(width: Any, height: Any) -> tuple[int, int]:
    for name, value in (("width", width), ("height", height)):
        if isinstance(value, bool) or not isinstance(value, int):
            raise ConfigError(f"image {name} must be an int, got {value!r}.")
        if value < 1:
            raise ImageTooSmallError(f"image is {width}x{height}; both sides must be at least 1 pixel to be tiled.")
    return width, height


def candidate_grids(min_tiles: int = 1, max_tiles: int = DEFAULT_MAX_TILES) -> tuple[tuple[int, int], ...]:
    """All ``(cols, rows)`` grids the rule considers, in the reference's scan order.

    The reference builds a Python ``set`` and stable-sorts it by ``cols*rows``, so the order within one product
    is CPython's set iteration order. We build the set the same way, which reproduces that order exactly (tuples
    of small ints hash deterministically; ``PYTHONHASHSEED`` does not affect them).

    Does the order within one product matter? Two candidates can only tie on ``|W/H - c/r|`` if they have the
    same ratio (then, with the same product, they are the same grid) or sit on opposite sides of ``W/H`` at
    equal distance. For the latter with equal products ``c1*r1 == c2*r2`` and ``c1/r1 < c2/r2`` we have
    ``c1 < c2`` and ``r1 > r2``, and the grid ``(c1, r2)`` has a smaller product and a ratio strictly between
    the two, so it is strictly closer and both lose. Hence with ``min_tiles == 1`` the within-product order can
    never change the result; with ``min_tiles > 1`` ``(c1, r2)`` may be excluded and the order does matter
    (e.g. ``min_tiles = max_tiles = 4`` and a 5×2 image: the seed order picks ``(4, 1)``, the HF processor's
    ``(2, 2)``). We follow the seed.

    >>> candidate_grids(1, 3)
    ((1, 1), (1, 2), (2, 1), (3, 1), (1, 3))
    """
    _check_tile_range(min_tiles, max_tiles)
    return _candidate_grids(min_tiles, max_tiles)


@functools.lru_cache(maxsize=256)
def _candidate_grids(min_tiles: int, max_tiles: int) -> tuple[tuple[int, int], ...]:
    grids = {
        (i, j)
        for n in range(min_tiles, max_tiles + 1)
        for i in range(1, n + 1)
        for j in range(1, n + 1)
        if min_tiles <= i * j <= max_tiles
    }
    return tuple(sorted(grids, key=lambda g: g[0] * g[1]))


@functools.lru_cache(maxsize=256)
def _scan_table(min_tiles: int, max_tiles: int, image_size: int) -> tuple[tuple[int, int, float, float], ...]:
    # (cols, rows, ratio, tie threshold), with the threshold computed in the reference's float op order.
    return tuple(
        (c, r, c / r, 0.5 * image_size * image_size * c * r) for c, r in _candidate_grids(min_tiles, max_tiles)
    )


def select_grid(
    width: int,
    height: int,
    max_tiles: int = DEFAULT_MAX_TILES,
    min_tiles: int = 1,
    image_size: int = DEFAULT_IMAGE_SIZE,
) -> tuple[int, int]:
    """The ``(cols, rows)`` grid the InternVL reference picks for a ``width×height`` image.

    >>> select_grid(1920, 1080), select_grid(224, 224), select_grid(1000, 100, max_tiles=6)
    ((4, 2), (1, 1), (6, 1))
    """
    width, height = _check_size(width, height)
    _check_int("image_size", image_size)
    _check_tile_range(min_tiles, max_tiles)
    table = _scan_table(min_tiles, max_tiles, image_size)
    aspect = width / height
    area = width * height  # int: compared exactly against the float threshold, as in the reference
    best_diff = float("inf")
    best = (1, 1)
    for cols, rows, ratio, threshold in table:
        diff = abs(aspect - ratio)
        if diff < best_diff:
            best_diff = diff
            best = (cols, rows)
        elif diff == best_diff and area > threshold:
            best = (cols, rows)
    return best


def num_tiles_for(
    width: int,
    height: int,
    max_tiles: int = DEFAULT_MAX_TILES,
    min_tiles: int = 1,
    image_size: int = DEFAULT_IMAGE_SIZE,
    use_thumbnail: bool = True,
) -> int:
    """How many tiles (thumbnail included) a ``width×height`` image becomes, without touching pixels.

    >>> num_tiles_for(800, 600), num_tiles_for(800, 600, use_thumbnail=False), num_tiles_for(448, 448)
    (13, 12, 1)
    """
    cols, rows = select_grid(width, height, max_tiles, min_tiles, image_size)
    n = cols * rows
    return n + 1 if use_thumbnail and n > 1 else n


def split_tile_budget(max_tiles: int, n_images: int) -> int:
    """Per-image ``max_tiles`` when ``n_images`` share one budget (InternVL 2.x: ``max(1, max_tiles // n)``).

    Thumbnails come on top: 12 tiles over 2 images gives each image up to 6 tiles plus its thumbnail.

    >>> split_tile_budget(12, 2), split_tile_budget(12, 5), split_tile_budget(12, 20)
    (6, 2, 1)
    """
    _check_int("max_tiles", max_tiles)
    _check_int("n_images", n_images)
    return max(1, max_tiles // n_images)


def tile_budget(info: Any, max_tiles: int | None = None) -> int:
    """Tiles one image may use with a checkpoint: 1 without dynamic tiling, else ``max_tiles`` (a caller's
    override), else the checkpoint's ``max_dynamic_patch``, else 12.

    ``info`` is anything with ``dynamic_image_size`` / ``max_dynamic_patch`` attributes (a
    :class:`~internvl_tools.checkpoints.CheckpointInfo`); missing ones take the defaults.

    >>> from types import SimpleNamespace
    >>> info = SimpleNamespace(dynamic_image_size=True, max_dynamic_patch=6)
    >>> tile_budget(info), tile_budget(info, max_tiles=2), tile_budget(SimpleNamespace(dynamic_image_size=False), 9)
    (6, 2, 1)
    """
    if not getattr(info, "dynamic_image_size", True):
        return 1
    if max_tiles is not None:
        return int(max_tiles)
    return int(getattr(info, "max_dynamic_patch", None) or DEFAULT_MAX_TILES)


# --- tiles -------------------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class TiledImage:
    """The tiles of one image: ``pixel_values`` is ``num_tiles×3×S×S``, tiles row-major, thumbnail last.

    >>> from PIL import Image
    >>> t = tile_image(Image.new("RGB", (896, 448)))
    >>> t.grid, t.num_tiles, tuple(t.pixel_values.shape), t.has_thumbnail
    ((2, 1), 3, (3, 3, 448, 448), True)
    """

    pixel_values: torch.Tensor
    grid: tuple[int, int]
    source_size: tuple[int, int]
    image_size: int
    has_thumbnail: bool

    @property
    def num_tiles(self) -> int:
        """Tiles including the thumbnail (the ``num_patches`` of the reference)."""
        return self.grid[0] * self.grid[1] + int(self.has_thumbnail)

    def tile_boxes(self) -> list[tuple[float, float, float, float]]:
        """``(x0, y0, x1, y1)`` of each tile in source-pixel coordinates, in ``pixel_values`` order.

        The thumbnail (if any) covers the whole image.

        >>> from PIL import Image
        >>> tile_image(Image.new("RGB", (100, 50)), max_tiles=2).tile_boxes()
        [(0.0, 0.0, 50.0, 50.0), (50.0, 0.0, 100.0, 50.0), (0.0, 0.0, 100.0, 50.0)]
        """
        cols, rows = self.grid
        w, h = self.source_size
        boxes = [
            (c * w / cols, r * h / rows, (c + 1) * w / cols, (r + 1) * h / rows)
            for r in range(rows)
            for c in range(cols)
        ]
        if self.has_thumbnail:
            boxes.append((0.0, 0.0, float(w), float(h)))
        return boxes


def _resolve_dtype(dtype: Any) -> torch.dtype:
    import torch

    if dtype is None:
        return torch.float32
    if isinstance(dtype, str):
        resolved = getattr(torch, dtype.removeprefix("torch."), None)
        if not isinstance(resolved, torch.dtype):
            raise ConfigError(f"unknown dtype {dtype!r}; use e.g. 'float32', 'bfloat16' or 'float16'.")
        dtype = resolved
    if not isinstance(dtype, torch.dtype) or not dtype.is_floating_point:
        raise ConfigError(f"dtype must be a floating torch dtype, got {dtype!r}.")
    return dtype


def _stats(mean: Sequence[float], std: Sequence[float]) -> tuple[tuple[float, ...], tuple[float, ...]]:
    mean_t, std_t = tuple(float(m) for m in mean), tuple(float(s) for s in std)
    if len(mean_t) != 3 or len(std_t) != 3:
        raise ConfigError(f"mean and std need 3 values (R, G, B), got {len(mean_t)} and {len(std_t)}.")
    if any(s == 0.0 for s in std_t):
        raise ConfigError(f"std must not contain 0, got {std_t}.")
    return mean_t, std_t


@contextlib.contextmanager
def _torch_threads(num_threads: int | None) -> Iterator[None]:
    # torch's intra-op pool is process-wide; we restore it so a caller's setting survives. Pinning a small
    # number avoids the OpenMP oversubscription stalls seen when preprocessing shares cores with other work.
    if num_threads is None:
        yield
        return
    import torch

    _check_int("num_threads", num_threads)
    previous = torch.get_num_threads()
    torch.set_num_threads(num_threads)
    try:
        yield
    finally:
        torch.set_num_threads(previous)


def tile_image(
    image: Image.Image | np.ndarray | torch.Tensor,
    max_tiles: int = DEFAULT_MAX_TILES,
    min_tiles: int = 1,
    image_size: int = DEFAULT_IMAGE_SIZE,
    use_thumbnail: bool = True,
    mode: Mode = "fast",
    *,
    dtype: torch.dtype | str | None = None,
    device: torch.device | str | None = None,
    mean: Sequence[float] = IMAGENET_MEAN,
    std: Sequence[float] = IMAGENET_STD,
    num_threads: int | None = None,
) -> TiledImage:
    """Cut one image into InternVL tiles (row-major, thumbnail last when there is more than one tile).

    ``image`` is a PIL image (converted to RGB as the reference does), a uint8 ``H×W×3`` numpy array, or a uint8
    ``3×H×W`` torch tensor (what :func:`internvl_tools.load_pixels` and torchvision's decoders return): arrays and
    tensors reach the resize with no copy of their pixels.
    ``mode="exact"`` is bit-identical to the reference pipeline; ``mode="fast"`` is within 2 uint8 levels.
    ``dtype``/``device`` choose the output (default float32 on CPU); on an accelerator the uint8 tiles are
    moved first and normalised there. ``num_threads`` pins torch's CPU threads for the call.

    >>> from PIL import Image
    >>> t = tile_image(Image.new("RGB", (800, 600), "white"), max_tiles=6, dtype="bfloat16")
    >>> t.grid, t.num_tiles, t.pixel_values.dtype
    ((3, 2), 7, torch.bfloat16)
    """
    import torch

    if mode not in ("fast", "exact"):
        raise ConfigError(f"mode must be 'fast' or 'exact', got {mode!r}.")
    out_dtype = _resolve_dtype(dtype)
    try:
        out_device = torch.device(device) if device is not None else torch.device("cpu")
    except (RuntimeError, TypeError) as exc:
        raise ConfigError(f"invalid device {device!r}: {exc}") from exc
    mean_t, std_t = _stats(mean, std)
    _check_int("image_size", image_size)
    pil, chw = as_source(image)
    width, height = source_size(pil, chw)
    cols, rows = select_grid(width, height, max_tiles, min_tiles, image_size)
    thumb = bool(use_thumbnail) and cols * rows > 1
    with _torch_threads(num_threads):
        if mode == "exact":
            if pil is None:
                from PIL import Image

                assert chw is not None
                pil = Image.fromarray(chw.permute(1, 2, 0).cpu().numpy(), mode="RGB")
            pixels = exact_pixels(pil, cols, rows, image_size, thumb, mean_t, std_t)
            # The reference casts on the CPU, then moves: ``.to(torch.bfloat16).cuda()``.
            if out_dtype != torch.float32:
                pixels = pixels.to(out_dtype)
            if out_device.type != "cpu":
                pixels = pixels.to(out_device)
        else:
            pixels = fast_pixels(pil, chw, cols, rows, image_size, thumb, mean_t, std_t, out_dtype, out_device)
    return TiledImage(
        pixel_values=pixels,
        grid=(cols, rows),
        source_size=(width, height),
        image_size=image_size,
        has_thumbnail=thumb,
    )


def tile_images(
    images: Sequence[Image.Image | np.ndarray | torch.Tensor],
    max_tiles: int = DEFAULT_MAX_TILES,
    min_tiles: int = 1,
    image_size: int = DEFAULT_IMAGE_SIZE,
    use_thumbnail: bool = True,
    mode: Mode = "fast",
    **kwargs: Any,
) -> list[TiledImage]:
    """Tile the images of one request under a shared budget: ``max(1, max_tiles // n)`` tiles each.

    Thumbnails come on top of the budget, as in InternVL 2.x training and the official demo. ``min_tiles`` is
    lowered to the per-image budget when it would exceed it. Extra keyword arguments go to :func:`tile_image`.

    >>> from PIL import Image
    >>> [t.num_tiles for t in tile_images([Image.new("RGB", (800, 600))] * 2, max_tiles=12)]
    [7, 7]
    """
    if isinstance(images, (str, bytes)) or not isinstance(images, Sequence):
        raise UnsupportedSourceError(f"images must be a list of images, got {type(images).__name__}.")
    if not images:
        return []
    per_image = split_tile_budget(max_tiles, len(images))
    _check_int("min_tiles", min_tiles)
    lo = min(min_tiles, per_image)
    return [tile_image(im, per_image, lo, image_size, use_thumbnail, mode, **kwargs) for im in images]


def concat_tiles(tiled: Sequence[TiledImage]) -> tuple[torch.Tensor, list[int]]:
    """Stack several images' tiles into one ``pixel_values`` and the matching ``num_patches_list``.

    >>> from PIL import Image
    >>> pv, counts = concat_tiles(tile_images([Image.new("RGB", (896, 448)), Image.new("RGB", (64, 64))]))
    >>> tuple(pv.shape), counts
    ((4, 3, 448, 448), [3, 1])
    """
    import torch

    if not tiled:
        raise ConfigError("concat_tiles needs at least one TiledImage.")
    return torch.cat([t.pixel_values for t in tiled]), [t.num_tiles for t in tiled]
