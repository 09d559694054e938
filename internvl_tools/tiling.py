"""InternVL dynamic tiling: the official grid rule and two numeric paths to 448×448 tiles.

The grid rule is the seed's ``dynamic_preprocess`` (research/internvl_reference.md §2.1): among all grids
``(cols, rows)`` with ``min_tiles <= cols*rows <= max_tiles``, take the one whose ratio ``cols/rows`` is closest
to the image's ``W/H``; on an exact tie a later candidate replaces the current one only when
``W*H > 0.5 * S² * cols*rows``. The image is resized to ``(S*cols, S*rows)`` and cut row-major into tiles; a
thumbnail of the whole image (``S×S``) follows when there is more than one tile.

Two numeric paths produce the tiles:

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
import warnings
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Literal

from internvl_tools.constants import DEFAULT_IMAGE_SIZE, DEFAULT_MAX_TILES, IMAGENET_MEAN, IMAGENET_STD
from internvl_tools.errors import ConfigError, ImageTooSmallError, UnsupportedSourceError

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


def _as_rgb(image: Any) -> tuple[Image.Image | None, np.ndarray | None]:
    """Return (PIL RGB image, None) or (None, contiguous uint8 H×W×3 array)."""
    import numpy as np
    from PIL import Image

    if isinstance(image, Image.Image):
        if image.width < 1 or image.height < 1:
            raise ImageTooSmallError(f"image is {image.width}x{image.height}; both sides must be at least 1 pixel.")
        # The reference converts with PIL (alpha is dropped, palettes expanded), so do we.
        return (image if image.mode == "RGB" else image.convert("RGB")), None
    if isinstance(image, np.ndarray):
        if image.dtype != np.uint8:
            raise UnsupportedSourceError(
                f"numpy image must be uint8, got {image.dtype}; scale to 0..255 and use .astype(np.uint8)."
            )
        if image.ndim == 2 or (image.ndim == 3 and image.shape[2] in (1, 4)):
            if image.shape[0] < 1 or image.shape[1] < 1:
                raise ImageTooSmallError(f"image array has shape {image.shape}; both sides must be at least 1.")
            mode = "RGBA" if image.ndim == 3 and image.shape[2] == 4 else "L"
            arr = image if image.ndim == 2 or mode == "RGBA" else image[:, :, 0]
            return Image.fromarray(np.ascontiguousarray(arr), mode=mode).convert("RGB"), None
        if image.ndim == 3 and image.shape[2] == 3:
            if image.shape[0] < 1 or image.shape[1] < 1:
                raise ImageTooSmallError(f"image array has shape {image.shape}; both sides must be at least 1.")
            return None, np.ascontiguousarray(image)
        raise UnsupportedSourceError(f"numpy image must be H×W, H×W×1, H×W×3 or H×W×4 uint8, got shape {image.shape}.")
    raise UnsupportedSourceError(
        f"cannot tile a {type(image).__name__}; pass a PIL.Image.Image or a uint8 H×W×3 numpy array "
        "(use internvl_tools.load_image for paths, bytes and URLs)."
    )


def _hwc_tensor(pil: Image.Image | None, arr: np.ndarray | None) -> torch.Tensor:
    """uint8 H×W×3 tensor sharing memory with one packed copy of the pixels (no CHW copy)."""
    import numpy as np
    import torch

    if arr is None:
        assert pil is not None
        # tobytes + frombuffer is one packing pass; np.asarray(pil) would add a second copy.
        arr = np.frombuffer(pil.tobytes(), dtype=np.uint8).reshape(pil.height, pil.width, 3)
    with warnings.catch_warnings():
        # Read-only buffers are fine: the tensor is only ever read.
        warnings.simplefilter("ignore", UserWarning)
        return torch.from_numpy(arr)


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


def _tiles_view_hwc(grid_hwc: torch.Tensor, cols: int, rows: int, size: int) -> torch.Tensor:
    """rows×cols×C×S×S view of an (S*rows)×(S*cols)×C image: tile (r, c) is ``[r, c]``, no copy."""
    c = grid_hwc.shape[2]
    return grid_hwc.view(rows, size, cols, size, c).permute(0, 2, 4, 1, 3)


def _tiles_view_chw(grid_chw: torch.Tensor, cols: int, rows: int, size: int) -> torch.Tensor:
    """rows×cols×C×S×S view of a C×(S*rows)×(S*cols) image (made contiguous first if it is not)."""
    c = grid_chw.shape[0]
    return grid_chw.contiguous().view(c, rows, size, cols, size).permute(1, 3, 0, 2, 4)


def _exact_pixels(pil: Image.Image, cols: int, rows: int, size: int, thumb: bool, mean, std) -> torch.Tensor:
    import numpy as np
    import torch

    n = cols * rows
    out = torch.empty((n + int(thumb), 3, size, size), dtype=torch.float32)
    resized = pil.resize((size * cols, size * rows))  # PIL's default filter (BICUBIC), as the reference
    grid = _hwc_tensor(resized, None)
    out[:n].view(rows, cols, 3, size, size).copy_(_tiles_view_hwc(grid, cols, rows, size))
    if thumb:
        t = np.frombuffer(pil.resize((size, size)).tobytes(), dtype=np.uint8).reshape(size, size, 3)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", UserWarning)
            out[n].copy_(torch.from_numpy(t).permute(2, 0, 1))
    # torchvision: ToTensor is ``x.float().div(255)``; Normalize is ``sub_(mean).div_(std)`` with float32 stats.
    # The same elementwise IEEE operations in the same order give the same bits, batched or not.
    out.div_(255)
    out.sub_(torch.as_tensor(mean, dtype=torch.float32).view(1, 3, 1, 1))
    out.div_(torch.as_tensor(std, dtype=torch.float32).view(1, 3, 1, 1))
    return out


def _fast_uint8(
    pil: Image.Image | None, arr: np.ndarray | None, cols: int, rows: int, size: int, thumb: bool
) -> tuple[torch.Tensor, torch.Tensor | None]:
    """Grid image (1×3×S*rows×S*cols) and thumbnail (1×3×S×S), uint8, by torch's antialiased bicubic."""
    hwc = _hwc_tensor(pil, arr)
    # A permuted H×W×3 buffer is a channels-last NCHW tensor: torch's fast uint8 resampling path, no copy.
    src = hwc.permute(2, 0, 1).unsqueeze(0)
    grid = _resize_like_pil(src, size * cols, size * rows)
    thumbnail = _resize_like_pil(src, size, size) if thumb else None
    return grid, thumbnail


@functools.lru_cache(maxsize=1)
def _pil_version() -> tuple[int, ...]:
    from PIL import __version__

    return tuple(int(p) for p in __version__.split(".")[:2] if p.isdigit())


def _pil_vertical_first(w: int, h: int, out_w: int, out_h: int) -> bool:
    """Whether the installed Pillow runs the vertical pass of a resize first.

    PIL resizes in two separable passes with a clipped uint8 intermediate, so the pass order changes results by
    many levels on busy images (e.g. a narrow tall image whose width is upscaled). The order is version
    dependent (read from Pillow's ``Resample.c``): 13.x goes vertical-first when the height shrinks by more
    than twice as many pixels as the width; 12.x when the height shrinks and the width does not; older
    versions only for images over 100 times taller than wide whose height shrinks.
    """
    version = _pil_version()
    if version >= (13,):
        return (h - out_h) > 0 and (h - out_h) > 2 * (w - out_w)
    if version >= (12,):
        return out_w >= w and out_h < h
    return h > w * 100 and out_h < h


def _resize_like_pil(src: torch.Tensor, out_w: int, out_h: int) -> torch.Tensor:
    import torch.nn.functional as F

    _, _, h, w = src.shape

    def resize(x: torch.Tensor, size: tuple[int, int]) -> torch.Tensor:
        # antialias=True is PIL's bicubic (a=-0.5) with the support scaled on downsampling, up or down.
        return F.interpolate(x, size=size, mode="bicubic", antialias=True, align_corners=False)

    if h != out_h and w != out_w and _pil_vertical_first(w, h, out_w, out_h):
        # torch does horizontal-then-vertical in one call; match PIL's order with two 1-D passes.
        return resize(resize(src, (out_h, w)), (out_h, out_w))
    return resize(src, (out_h, out_w))


def _normalise_cpu_f32(out5: torch.Tensor, u8: torch.Tensor, scale: Sequence[float], bias: Sequence[float]) -> None:
    # out = u8 * scale + bias per channel in two passes over the output: the uint8 -> float32 copy (which also
    # does the tile permute), then one fused in-place ``bias + scale * x`` per channel. Measured faster than
    # copy/mul/add (3 passes) and than mixed-dtype ops, which fall off torch's vectorised loops.
    import torch

    out5.copy_(u8)
    for ch in range(3):
        plane = out5.select(-3, ch)
        torch.add(torch.tensor(bias[ch], dtype=out5.dtype), plane, alpha=scale[ch], out=plane)


def _fast_pixels(
    pil: Image.Image | None,
    arr: np.ndarray | None,
    cols: int,
    rows: int,
    size: int,
    thumb: bool,
    mean: tuple[float, ...],
    std: tuple[float, ...],
    dtype: torch.dtype,
    device: torch.device,
) -> torch.Tensor:
    import torch

    grid, thumbnail = _fast_uint8(pil, arr, cols, rows, size, thumb)
    n = cols * rows
    scale = [1.0 / (255.0 * s) for s in std]
    bias = [-m / s for m, s in zip(mean, std, strict=True)]
    if device.type != "cpu":
        # Ship uint8 (4x fewer bytes than float32); split into tiles and normalise on the device.
        grid = grid.to(device, non_blocking=True)
        thumbnail = thumbnail.to(device, non_blocking=True) if thumbnail is not None else None
    tiles5 = _tiles_view_chw(grid[0], cols, rows, size)
    out = torch.empty((n + int(thumb), 3, size, size), dtype=dtype, device=device)
    out5 = out[:n].view(rows, cols, 3, size, size)
    if device.type == "cpu" and dtype in (torch.float32, torch.float64):
        _normalise_cpu_f32(out5, tiles5, scale, bias)
        if thumbnail is not None:
            _normalise_cpu_f32(out[n:], thumbnail, scale, bias)
        return out
    # Other dtypes (bf16, fp16) and devices: compute in float32 and round once into the output dtype, a tile
    # at a time on the CPU so the float32 temporary stays small (one tile, cache-resident).
    scale_t = torch.tensor(scale, dtype=torch.float32, device=device).view(3, 1, 1)
    bias_t = torch.tensor(bias, dtype=torch.float32, device=device).view(3, 1, 1)
    sources = [tiles5[r, c] for r in range(rows) for c in range(cols)]
    if thumbnail is not None:
        sources.append(thumbnail[0])
    if device.type == "cpu":
        tmp = torch.empty((3, size, size), dtype=torch.float32)
        for k, src in enumerate(sources):
            tmp.copy_(src)
            torch.addcmul(bias_t, tmp, scale_t, out=tmp)
            out[k].copy_(tmp)
    else:
        out5.copy_(torch.addcmul(bias_t, tiles5.float(), scale_t))
        if thumbnail is not None:
            out[n].copy_(torch.addcmul(bias_t, thumbnail[0].float(), scale_t))
    return out


def tile_image(
    image: Image.Image | np.ndarray,
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

    ``image`` is a PIL image (converted to RGB as the reference does) or a uint8 ``H×W×3`` numpy array.
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
    pil, arr = _as_rgb(image)
    width, height = (pil.width, pil.height) if pil is not None else (arr.shape[1], arr.shape[0])  # type: ignore[union-attr]
    cols, rows = select_grid(width, height, max_tiles, min_tiles, image_size)
    thumb = bool(use_thumbnail) and cols * rows > 1
    with _torch_threads(num_threads):
        if mode == "exact":
            if pil is None:
                from PIL import Image

                pil = Image.fromarray(arr, mode="RGB")
            pixels = _exact_pixels(pil, cols, rows, image_size, thumb, mean_t, std_t)
            # The reference casts on the CPU, then moves: ``.to(torch.bfloat16).cuda()``.
            if out_dtype != torch.float32:
                pixels = pixels.to(out_dtype)
            if out_device.type != "cpu":
                pixels = pixels.to(out_device)
        else:
            pixels = _fast_pixels(pil, arr, cols, rows, image_size, thumb, mean_t, std_t, out_dtype, out_device)
    return TiledImage(
        pixel_values=pixels,
        grid=(cols, rows),
        source_size=(width, height),
        image_size=image_size,
        has_thumbnail=thumb,
    )


def tile_images(
    images: Sequence[Image.Image | np.ndarray],
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
