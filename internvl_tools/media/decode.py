"""Decoding untrusted image data with only the decoders we chose, and turning any pixels into RGB.

:func:`open_image` is the one place the package hands user bytes to Pillow; :func:`decode_frame` decodes one
frame under the pixel limit. The rest turns what was decoded (or a numpy array) into the RGB image
:func:`~internvl_tools.media.images.load_image` returns.

Differences from the reference pipeline (``Image.open(p).convert('RGB')``), both optional:

* EXIF orientation is applied by default (``exif_transpose=True``); the reference ignores it, so a phone photo
  taken in portrait reaches the model sideways. Pass ``exif_transpose=False`` for the reference behaviour.
* 16/32-bit integer and float images (PIL modes ``I;16*``, ``I``, ``F``) are rescaled to 8 bits
  (``high_bit_depth="scale"``); PIL's ``convert('RGB')`` clips them to 255, which turns most 16-bit scans white.
  ``high_bit_depth="clip"`` reproduces the reference.

Every other mode (L, LA, P with or without transparency, RGBA, CMYK including Adobe-inverted JPEGs, YCbCr, 1, ...)
goes through ``convert('RGB')`` exactly as the reference does; alpha is dropped, not composited.

>>> image_from_array(np.full((1, 1), 65535, np.uint16), DecodeOptions(DEFAULT_POLICY)).getpixel((0, 0))
(255, 255, 255)
"""

from __future__ import annotations

import io
import struct
import threading
import warnings
from dataclasses import dataclass, replace
from typing import Any, Literal

import numpy as np
from PIL import Image, ImageOps

from internvl_tools.errors import (
    ConfigError,
    ImageDecodeError,
    ImageTooLargeError,
    ImageTooSmallError,
    InternVLError,
    UnsupportedSourceError,
)
from internvl_tools.media.pixels import (
    pil_to_chw,
    png_needs_pillow,
    read_whole_stream,
    torchvision_can_decode,
    torchvision_decode,
)
from internvl_tools.media.policy import DEFAULT_POLICY, MediaPolicy, describe_source

__all__ = ["allowed_formats", "check_image_size", "decode_frame", "open_image"]

HighBitDepth = Literal["scale", "clip"]

_HIGH_BIT_MODES = frozenset({"I;16", "I;16L", "I;16B", "I;16N", "I", "F"})
# PIL's open() warns or raises about big images through process-global state; serialise our use of it.
_OPEN_LOCK = threading.Lock()


@dataclass(frozen=True)
class DecodeOptions:
    """Under which policy, and how decoded pixels become RGB (see the module docstring and ``load_image``)."""

    policy: MediaPolicy
    exif_transpose: bool = True
    high_bit_depth: str = "scale"
    #: ``"pil"``: a new RGB ``PIL.Image``; ``"tensor"``: a uint8 ``3×H×W`` torch tensor (:mod:`.pixels`).
    output: Literal["pil", "tensor"] = "pil"
    #: For ``output="tensor"``: ``"auto"`` lets torchvision decode the PNG/JPEG cases it decodes exactly as Pillow
    #: does; ``"pillow"`` keeps every byte with Pillow.
    decoder: Literal["auto", "pillow"] = "auto"


def check_high_bit_depth(value: str) -> None:
    """Refuse a ``high_bit_depth`` other than ``"scale"`` and ``"clip"`` (before any input is touched)."""
    if value not in ("scale", "clip"):
        raise ConfigError(f"high_bit_depth={value!r} is not supported; use 'scale' (default) or 'clip'.")


def decode_bytes(data: bytes, desc: str, opts: DecodeOptions) -> Any:
    """Decode ``data`` (user bytes) as ``load_image`` does: allowed formats, size checks, RGB."""
    if not data:
        raise ImageDecodeError(f"{desc} is empty (0 bytes); there is no image to decode.")
    return decode_stream(io.BytesIO(data), desc, opts)


def open_image(
    fp: Any, *, policy: MediaPolicy | None = None, desc: str | None = None, check_size: bool = True
) -> Image.Image:
    """Open untrusted image data with only the formats ``policy.image_formats`` allows; no pixel is decoded yet.

    The one place the package hands user bytes to Pillow (images, document pages, multi-page TIFFs). Every
    installed plugin is registered first (:func:`PIL.Image.init`), so the allow-list means the same in a fresh
    process as after any other open, and ``formats=`` is always passed, so no other decoder (EPS runs Ghostscript)
    ever sees the bytes. With ``check_size`` the width and height from the header are checked against
    ``policy.max_pixels`` before anything is decoded; multi-frame callers pass ``False`` and check each frame with
    :func:`decode_frame`. Raises :class:`ImageDecodeError` (unknown, refused or corrupt format) or
    :class:`ImageTooLargeError` (pixel limit, Pillow's bomb limit, PNG text/ICC chunk limits). The caller closes
    the image.

    >>> open_image(io.BytesIO(b"%!PS-Adobe-3.0 EPSF-3.0\\n%%BoundingBox: 0 0 1 1\\n"))  # doctest: +ELLIPSIS
    Traceback (most recent call last):
    internvl_tools.errors.ImageDecodeError: the image is not an image in an allowed format (PNG, JPEG, ...
    """
    policy = DEFAULT_POLICY if policy is None else policy
    desc = "the image" if desc is None else desc
    formats = allowed_formats(policy)
    if not formats:
        raise ConfigError(
            f"None of MediaPolicy.image_formats={policy.image_formats!r} is a format this Pillow can read; add one "
            f"of {', '.join(sorted(Image.OPEN))}."
        )
    try:
        with _OPEN_LOCK, warnings.catch_warnings():
            # Our own max_pixels check (below) is the policy; PIL's warning threshold would only add noise.
            warnings.simplefilter("ignore", Image.DecompressionBombWarning)
            im = Image.open(fp, formats=formats)
    except Image.UnidentifiedImageError as err:
        raise ImageDecodeError(
            f"{desc} is not an image in an allowed format ({', '.join(formats)}); check that it is a complete "
            "image file, not HTML, text or another format (add the format to MediaPolicy.image_formats only if "
            "you trust its decoder)."
        ) from err
    except BaseException as err:
        raise _decoder_error(err, desc, policy, "has a corrupt image header") from err
    if check_size:
        try:
            check_image_size(im.width, im.height, policy=policy, desc=desc)
        except BaseException:
            im.close()
            raise
    return im


def allowed_formats(policy: MediaPolicy | None = None) -> list[str]:
    """The Pillow format names :func:`open_image` tries for ``policy``: its ``image_formats`` this Pillow has.

    >>> allowed_formats(MediaPolicy(image_formats=("png", "EPS-NOT-A-FORMAT")))
    ['PNG']
    """
    policy = DEFAULT_POLICY if policy is None else policy
    Image.init()  # registers every installed plugin (once); Image.OPEN is filled lazily otherwise
    return [f for f in policy.image_formats if f in Image.OPEN]


def decode_frame(
    im: Image.Image, index: int = 0, *, policy: MediaPolicy | None = None, desc: str | None = None
) -> Image.Image:
    """Seek ``im`` (from :func:`open_image`) to frame ``index``, check its size against the policy, decode it.

    Each frame of a multi-page TIFF or animated GIF has its own size, so each is checked before it is decoded.
    Returns ``im`` itself, loaded; errors are typed as in :func:`open_image`.
    """
    policy = DEFAULT_POLICY if policy is None else policy
    desc = "the image" if desc is None else desc
    try:
        if index != im.tell():
            with _OPEN_LOCK, warnings.catch_warnings():
                warnings.simplefilter("ignore", Image.DecompressionBombWarning)
                im.seek(index)
    except BaseException as err:
        raise _decoder_error(err, desc, policy, f"has no readable frame {index + 1}") from err
    check_image_size(im.width, im.height, policy=policy, desc=desc)
    try:
        im.load()  # decode now, while the file is open and inside this try: truncation fails here
    except BaseException as err:
        what = "could not be decoded; the file is probably truncated or corrupt. Re-download or re-export it"
        raise _decoder_error(err, desc, policy, what) from err
    return im


def check_image_size(width: int, height: int, *, policy: MediaPolicy | None = None, desc: str = "the image") -> None:
    """Raise :class:`ImageTooLargeError` above ``policy.max_pixels`` (or :class:`ImageTooSmallError` at 0 pixels)."""
    _check_dims(width, height, desc, DEFAULT_POLICY if policy is None else policy)


def _decoder_error(err: BaseException, desc: str, policy: MediaPolicy, what: str) -> BaseException:
    """Pillow's decoder failures as the package's typed errors; anything else (KeyboardInterrupt) unchanged."""
    if isinstance(err, Image.DecompressionBombError):
        return ImageTooLargeError(
            f"{desc} is a decompression-bomb-sized image ({err}); the limit is MediaPolicy(max_pixels="
            f"{policy.max_pixels}), and Pillow refuses anything above 2 x PIL.Image.MAX_IMAGE_PIXELS="
            f"{Image.MAX_IMAGE_PIXELS} on its own. Downscale it, or if you trust it raise both limits."
        )
    message = str(err)
    if isinstance(err, ValueError) and ("MAX_TEXT_CHUNK" in message or "MAX_TEXT_MEMORY" in message):
        return ImageTooLargeError(
            f"{desc} has a PNG text or ICC-profile chunk that decompresses past Pillow's limit ({message}); it is "
            "probably a decompression bomb. If you trust the file, raise PIL.PngImagePlugin.MAX_TEXT_CHUNK / "
            "MAX_TEXT_MEMORY, or strip its metadata."
        )
    if isinstance(err, MemoryError):
        return ImageTooLargeError(
            f"{desc} needs more memory to decode than is available; lower MediaPolicy(max_pixels=...) or "
            "downscale the image."
        )
    if isinstance(err, InternVLError):
        return err
    if isinstance(err, (OSError, SyntaxError, ValueError, EOFError, IndexError, TypeError, KeyError, struct.error)):
        return ImageDecodeError(f"{desc} {what} ({type(err).__name__}: {err}).")
    return err


def decode_stream(fh: Any, desc: str, opts: DecodeOptions) -> Any:
    """Decode the first frame of a binary stream as ``load_image`` does (``load_pixels`` with ``output="tensor"``)."""
    im = open_image(fh, policy=opts.policy, desc=desc)
    if opts.output == "tensor":
        if opts.decoder == "auto" and torchvision_can_decode(im, opts.exif_transpose):
            data = read_whole_stream(fh, opts.policy.max_bytes)
            if data is not None and not (im.format == "PNG" and png_needs_pillow(data)):
                kind = im.format or ""
                im.close()
                try:
                    return torchvision_decode(data, kind, opts.exif_transpose, desc)
                except ImageDecodeError:
                    # Whatever libpng/libjpeg refuse, Pillow decides (and names the problem when it refuses too), so
                    # load_pixels never fails where load_image succeeds.
                    return decode_stream(io.BytesIO(data), desc, replace(opts, decoder="pillow"))
        decode_frame(im, 0, policy=opts.policy, desc=desc)
        return pil_to_chw(finish_image(im, desc, opts, copy=False))
    decode_frame(im, 0, policy=opts.policy, desc=desc)
    return finish_image(im, desc, opts)


def _check_dims(width: int, height: int, desc: str, policy: MediaPolicy) -> None:
    if width <= 0 or height <= 0:
        raise ImageTooSmallError(f"{desc} has size {width}x{height}; an image needs at least 1x1 pixels.")
    if width * height > policy.max_pixels:
        raise ImageTooLargeError(
            f"{desc} is {width}x{height} = {width * height} pixels, over the limit of {policy.max_pixels} "
            "(decompression-bomb guard). Downscale it, or raise MediaPolicy(max_pixels=...) if you trust it."
        )


def finish_image(im: Image.Image, desc: str, opts: DecodeOptions, *, copy: bool = True) -> Image.Image:
    """An opened image as a new RGB image: size checked, decoded, EXIF-oriented, high bit depths mapped.

    ``copy=False`` returns ``im`` itself when it already is RGB (for an image this package just decoded, which
    nobody else holds).
    """
    _check_dims(im.width, im.height, desc, opts.policy)
    try:
        im.load()
    except (OSError, SyntaxError, ValueError, EOFError, IndexError) as err:
        raise ImageDecodeError(f"{desc} could not be decoded ({err}); it is probably truncated.") from err
    if opts.exif_transpose:
        im = _apply_exif_orientation(im)
    if not copy and im.mode == "RGB":
        return im
    return _to_rgb(im, desc, opts.high_bit_depth)


def _apply_exif_orientation(im: Image.Image) -> Image.Image:
    try:
        orientation = im.getexif().get(0x0112, 1)
        if orientation in (2, 3, 4, 5, 6, 7, 8):
            return ImageOps.exif_transpose(im)
    except Exception:  # a malformed EXIF block must not cost the user the image
        pass
    return im


def _to_rgb(im: Image.Image, desc: str, high_bit_depth: str) -> Image.Image:
    if im.mode in _HIGH_BIT_MODES and high_bit_depth == "scale":
        return Image.fromarray(_scale_to_uint8(np.asarray(im), im.mode), mode="L").convert("RGB")
    try:
        return im.convert("RGB")  # a copy even for RGB input, so callers never share pixels with the source
    except ValueError:
        if im.mode in _HIGH_BIT_MODES:  # "clip" on a mode PIL cannot convert directly
            return Image.fromarray(np.clip(np.asarray(im), 0, 255).astype(np.uint8), mode="L").convert("RGB")
        raise ImageDecodeError(
            f"{desc} has pixel mode {im.mode!r}, which PIL cannot convert to RGB; convert it to RGB first."
        ) from None


def _scale_to_uint8(arr: np.ndarray, mode: str) -> np.ndarray:
    """Map high-bit-depth samples to 0..255.

    ``I;16*`` is 16-bit by definition. Mode ``I`` carries no bit depth, so the value range decides: data within
    0..255 is kept, within 0..65535 is treated as 16-bit, anything else is stretched min..max. ``F`` within 0..1
    is scaled by 255, within 0..255 kept, else stretched.
    """
    if mode.startswith("I;16"):
        wide = arr.astype(np.uint32)
        return ((wide * 255 + 32767) // 65535).astype(np.uint8)
    data = arr.astype(np.float64)
    finite = data[np.isfinite(data)]
    lo, hi = (float(finite.min()), float(finite.max())) if finite.size else (0.0, 0.0)
    if mode == "F" and lo >= 0 and hi <= 1:
        scaled = data * 255
    elif lo >= 0 and hi <= 255:
        scaled = data
    elif mode == "I" and lo >= 0 and hi <= 65535:
        scaled = data * (255 / 65535)
    else:
        scaled = (data - lo) * (255 / (hi - lo)) if hi > lo else np.zeros_like(data)
    return np.clip(np.nan_to_num(np.rint(scaled)), 0, 255).astype(np.uint8)


def image_from_array(arr: np.ndarray, opts: DecodeOptions) -> Image.Image:
    """An HxW, HxWx1, HxWx3 or HxWx4 array (uint8, uint16, bool or float in [0, 1]) as a new RGB image."""
    desc = describe_source(arr)
    if arr.ndim == 3 and arr.shape[2] == 1:
        arr = arr[:, :, 0]
    if not (arr.ndim == 2 or (arr.ndim == 3 and arr.shape[2] in (3, 4))):
        hint = " (channels-first? use arr.transpose(1, 2, 0))" if arr.ndim == 3 and arr.shape[0] in (1, 3, 4) else ""
        raise UnsupportedSourceError(f"{desc} is not HxW, HxWx1, HxWx3 or HxWx4{hint}.")
    _check_dims(arr.shape[1], arr.shape[0], desc, opts.policy)
    arr = _array_to_uint8(arr, desc, opts.high_bit_depth)
    im = Image.fromarray(np.ascontiguousarray(arr))
    return im.convert("RGB")  # RGBA drops alpha, as convert('RGB') does for RGBA files


def _array_to_uint8(arr: np.ndarray, desc: str, high_bit_depth: str) -> np.ndarray:
    kind = arr.dtype.kind
    if arr.dtype == np.uint8:
        return arr
    if kind == "b":
        return arr.astype(np.uint8) * 255
    if arr.dtype == np.uint16:
        if high_bit_depth == "clip":
            return np.minimum(arr, 255).astype(np.uint8)
        return _scale_to_uint8(arr, "I;16")
    if kind == "f":
        if not np.isfinite(arr).all():
            raise UnsupportedSourceError(f"{desc} contains NaN or infinity; clean the array first.")
        lo, hi = float(arr.min()), float(arr.max())
        if lo < -1e-3 or hi > 1 + 1e-3:
            raise UnsupportedSourceError(
                f"{desc} has float values in [{lo:g}, {hi:g}]; float images must lie in [0, 1]. Divide by 255 "
                "(or pass arr.astype(np.uint8)) first."
            )
        return np.rint(np.clip(arr.astype(np.float64), 0, 1) * 255).astype(np.uint8)
    if kind in "iu":
        lo, hi = int(arr.min()), int(arr.max())
        if lo >= 0 and hi <= 255:
            return arr.astype(np.uint8)
        raise UnsupportedSourceError(
            f"{desc} has integer values in [{lo}, {hi}]; pass uint8 (0..255), uint16, or floats in [0, 1]."
        )
    raise UnsupportedSourceError(f"{desc} has dtype {arr.dtype}; pass uint8, uint16, bool or float in [0, 1].")
