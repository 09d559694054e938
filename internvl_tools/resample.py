"""Pixel kernels of the tiler: a uint8 source image to normalised ``S×S`` tiles, by two numeric paths.

:mod:`internvl_tools.tiling` owns the grid rule and the :class:`~internvl_tools.tiling.TiledImage` it returns; this
module owns the pixels. A source is a PIL image (converted to RGB as the reference does), a uint8 ``H×W×3`` numpy
array, or a uint8 ``3×H×W`` torch tensor (torchvision's decoders give one; any strides, so a permuted ``H×W×3``
buffer works too). The tensor and array sources reach torch's resampling with no copy of their pixels; a PIL image
costs one packing pass (``tobytes``), because Pillow stores RGB as 4 bytes per pixel.

* :func:`exact_pixels`: PIL bicubic resizes and torchvision's ``ToTensor`` + ``Normalize`` arithmetic,
  bit-identical to the reference pipeline;
* :func:`fast_pixels`: torch's antialiased bicubic resize of the uint8 source (PIL's filter, other fixed-point
  rounding, at most 2 uint8 levels away) and one fused normalisation.

>>> import torch
>>> pil, chw = as_source(torch.zeros((3, 4, 5), dtype=torch.uint8))
>>> pil is None, tuple(chw.shape)
(True, (3, 4, 5))
"""

from __future__ import annotations

import functools
import warnings
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

from internvl_tools.errors import ImageTooSmallError, UnsupportedSourceError

if TYPE_CHECKING:  # pragma: no cover
    import torch
    from PIL import Image

__all__ = [
    "as_source",
    "exact_pixels",
    "fast_pixels",
    "fast_uint8",
    "hwc_from_numpy",
    "hwc_tensor",
    "normalise_cpu_f32",
    "pil_version",
    "pil_vertical_first",
    "resize_like_pil",
    "source_size",
    "tiles_view_chw",
    "tiles_view_hwc",
]


def as_source(image: Any) -> tuple[Image.Image | None, torch.Tensor | None]:
    """``(PIL RGB image, None)`` or ``(None, uint8 3×H×W tensor)``: the two forms the kernels read.

    Raises :class:`~internvl_tools.errors.UnsupportedSourceError` (wrong type, dtype or shape) or
    :class:`~internvl_tools.errors.ImageTooSmallError` (a side of 0 pixels).
    """
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
            return None, hwc_from_numpy(image).permute(2, 0, 1)
        raise UnsupportedSourceError(f"numpy image must be H×W, H×W×1, H×W×3 or H×W×4 uint8, got shape {image.shape}.")
    if type(image).__module__.startswith("torch") and type(image).__name__ == "Tensor":
        import torch

        if image.dtype != torch.uint8 or image.ndim != 3 or image.shape[0] != 3:
            raise UnsupportedSourceError(
                f"a torch image must be a uint8 3×H×W tensor (torchvision's layout), got {image.dtype} of shape "
                f"{tuple(image.shape)}; use torchvision.io.decode_image(..., mode=ImageReadMode.RGB)."
            )
        if image.shape[1] < 1 or image.shape[2] < 1:
            raise ImageTooSmallError(f"image tensor has shape {tuple(image.shape)}; both sides must be at least 1.")
        return None, image
    raise UnsupportedSourceError(
        f"cannot tile a {type(image).__name__}; pass a PIL.Image.Image, a uint8 H×W×3 numpy array or a uint8 "
        "3×H×W torch tensor (use internvl_tools.load_image for paths, bytes and URLs)."
    )


def source_size(pil: Image.Image | None, chw: torch.Tensor | None) -> tuple[int, int]:
    """``(width, height)`` of a source from :func:`as_source`."""
    if pil is not None:
        return pil.width, pil.height
    assert chw is not None
    return int(chw.shape[2]), int(chw.shape[1])


def hwc_from_numpy(arr: Any) -> torch.Tensor:
    """A uint8 ``H×W×3`` numpy array as a tensor sharing its memory (copied only if its strides are negative)."""
    import numpy as np
    import torch

    if any(s < 0 for s in arr.strides):
        arr = np.ascontiguousarray(arr)
    with warnings.catch_warnings():
        # Read-only buffers are fine: the tensor is only ever read.
        warnings.simplefilter("ignore", UserWarning)
        return torch.from_numpy(arr)


def hwc_tensor(pil: Image.Image) -> torch.Tensor:
    """uint8 H×W×3 tensor over one packed copy of a PIL RGB image's pixels (no CHW copy)."""
    import numpy as np

    # tobytes + frombuffer is one packing pass; np.asarray(pil) would add a second copy.
    return hwc_from_numpy(np.frombuffer(pil.tobytes(), dtype=np.uint8).reshape(pil.height, pil.width, 3))


def tiles_view_hwc(grid_hwc: torch.Tensor, cols: int, rows: int, size: int) -> torch.Tensor:
    """rows×cols×C×S×S view of an (S*rows)×(S*cols)×C image: tile (r, c) is ``[r, c]``, no copy."""
    c = grid_hwc.shape[2]
    return grid_hwc.view(rows, size, cols, size, c).permute(0, 2, 4, 1, 3)


def tiles_view_chw(grid_chw: torch.Tensor, cols: int, rows: int, size: int) -> torch.Tensor:
    """rows×cols×C×S×S view of a C×(S*rows)×(S*cols) image (made contiguous first if it is not)."""
    c = grid_chw.shape[0]
    return grid_chw.contiguous().view(c, rows, size, cols, size).permute(1, 3, 0, 2, 4)


def exact_pixels(
    pil: Image.Image, cols: int, rows: int, size: int, thumb: bool, mean: Sequence[float], std: Sequence[float]
) -> torch.Tensor:
    """The reference arithmetic: PIL bicubic resizes, then ``ToTensor`` + ``Normalize`` (float32, bit-identical)."""
    import numpy as np
    import torch

    n = cols * rows
    out = torch.empty((n + int(thumb), 3, size, size), dtype=torch.float32)
    resized = pil.resize((size * cols, size * rows))  # PIL's default filter (BICUBIC), as the reference
    grid = hwc_tensor(resized)
    out[:n].view(rows, cols, 3, size, size).copy_(tiles_view_hwc(grid, cols, rows, size))
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


def fast_uint8(
    pil: Image.Image | None, chw: torch.Tensor | None, cols: int, rows: int, size: int, thumb: bool
) -> tuple[torch.Tensor, torch.Tensor | None]:
    """Grid image (1×3×S*rows×S*cols) and thumbnail (1×3×S×S), uint8, by torch's antialiased bicubic."""
    # A permuted H×W×3 buffer is a channels-last NCHW tensor and a decoded 3×H×W tensor a contiguous one: both
    # take torch's fast uint8 resampling path as they are, with no copy of the source.
    src = (hwc_tensor(pil).permute(2, 0, 1) if chw is None else chw).unsqueeze(0)
    grid = resize_like_pil(src, size * cols, size * rows)
    thumbnail = resize_like_pil(src, size, size) if thumb else None
    return grid, thumbnail


@functools.lru_cache(maxsize=1)
def pil_version() -> tuple[int, ...]:
    """The installed Pillow's (major, minor)."""
    from PIL import __version__

    return tuple(int(p) for p in __version__.split(".")[:2] if p.isdigit())


def pil_vertical_first(w: int, h: int, out_w: int, out_h: int) -> bool:
    """Whether the installed Pillow runs the vertical pass of a resize first.

    PIL resizes in two separable passes with a clipped uint8 intermediate, so the pass order changes results by
    many levels on busy images (e.g. a narrow tall image whose width is upscaled). The order is version
    dependent (read from Pillow's ``Resample.c``): 13.x goes vertical-first when the height shrinks by more
    than twice as many pixels as the width; 12.x when the height shrinks and the width does not; older
    versions only for images over 100 times taller than wide whose height shrinks.
    """
    version = pil_version()
    if version >= (13,):
        return (h - out_h) > 0 and (h - out_h) > 2 * (w - out_w)
    if version >= (12,):
        return out_w >= w and out_h < h
    return h > w * 100 and out_h < h


def resize_like_pil(src: torch.Tensor, out_w: int, out_h: int) -> torch.Tensor:
    """PIL's bicubic resize of a uint8 N×3×H×W tensor (any strides) to ``out_w × out_h``, in PIL's pass order."""
    import torch.nn.functional as F

    _, _, h, w = src.shape

    def resize(x: torch.Tensor, size: tuple[int, int]) -> torch.Tensor:
        # antialias=True is PIL's bicubic (a=-0.5) with the support scaled on downsampling, up or down.
        return F.interpolate(x, size=size, mode="bicubic", antialias=True, align_corners=False)

    if h != out_h and w != out_w and pil_vertical_first(w, h, out_w, out_h):
        # torch does horizontal-then-vertical in one call; match PIL's order with two 1-D passes.
        return resize(resize(src, (out_h, w)), (out_h, out_w))
    return resize(src, (out_h, out_w))


def normalise_cpu_f32(out5: torch.Tensor, u8: torch.Tensor, scale: Sequence[float], bias: Sequence[float]) -> None:
    """``out5 = u8 * scale + bias`` per channel, in place (float32/64 on the CPU)."""
    # out = u8 * scale + bias per channel in two passes over the output: the uint8 -> float32 copy (which also
    # does the tile permute), then one fused in-place ``bias + scale * x`` per channel. Measured faster than
    # copy/mul/add (3 passes) and than mixed-dtype ops, which fall off torch's vectorised loops.
    import torch

    out5.copy_(u8)
    for ch in range(3):
        plane = out5.select(-3, ch)
        torch.add(torch.tensor(bias[ch], dtype=out5.dtype), plane, alpha=scale[ch], out=plane)


def fast_pixels(
    pil: Image.Image | None,
    chw: torch.Tensor | None,
    cols: int,
    rows: int,
    size: int,
    thumb: bool,
    mean: tuple[float, ...],
    std: tuple[float, ...],
    dtype: torch.dtype,
    device: torch.device,
) -> torch.Tensor:
    """The ``fast`` path: uint8 resize, then one fused normalisation into ``dtype`` on ``device``."""
    import torch

    grid, thumbnail = fast_uint8(pil, chw, cols, rows, size, thumb)
    n = cols * rows
    scale = [1.0 / (255.0 * s) for s in std]
    bias = [-m / s for m, s in zip(mean, std, strict=True)]
    if device.type != "cpu":
        # Ship uint8 (4x fewer bytes than float32); split into tiles and normalise on the device.
        grid = grid.to(device, non_blocking=True)
        thumbnail = thumbnail.to(device, non_blocking=True) if thumbnail is not None else None
    tiles5 = tiles_view_chw(grid[0], cols, rows, size)
    out = torch.empty((n + int(thumb), 3, size, size), dtype=dtype, device=device)
    out5 = out[:n].view(rows, cols, 3, size, size)
    if device.type == "cpu" and dtype in (torch.float32, torch.float64):
        normalise_cpu_f32(out5, tiles5, scale, bias)
        if thumbnail is not None:
            normalise_cpu_f32(out[n:], thumbnail, scale, bias)
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
