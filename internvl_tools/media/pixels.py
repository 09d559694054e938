"""Decode images straight into the uint8 ``3×H×W`` tensor the tiler reads, with no needless copy.

:func:`~internvl_tools.media.images.load_image` returns a new RGB ``PIL.Image`` (a public contract: callers may
draw on it); getting its pixels to the tiler costs a ``convert('RGB')`` copy and a ``tobytes()`` packing pass
(Pillow keeps RGB as 4 bytes per pixel). :func:`~internvl_tools.media.images.load_pixels` skips both: bytes that
Pillow's header parser identified as 8-bit PNG or baseline JPEG in a plain mode go to torchvision's libpng/libjpeg
decoders (:func:`torchvision_decode`), which write a ``3×H×W`` tensor directly; anything else is decoded by Pillow
exactly as ``load_image`` does, and its pixels are viewed, not converted again, when they already are RGB.

The pixels are the same as ``load_image``'s, bit for bit: :func:`torchvision_can_decode` only admits the cases
whose output the parity tests (``tests/test_pixels.py``) compare exactly against Pillow: PNG RGB/RGBA/L/LA/P and
low bit depths; JPEG 4:2:0/4:2:2/4:4:4, progressive, greyscale, EXIF-rotated and mirrored. 16-bit PNGs, palettes
with a transparency chunk, PNGs with compressed text or EXIF chunks, CMYK JPEGs and every other format stay with Pillow
(the ``high_bit_depth``, CMYK and text-bomb rules live there).

Safety is unchanged: the bytes are first opened by :func:`~internvl_tools.media.decode.open_image` (format
allow-list, header-first pixel limit), so torchvision only ever sees PNG or JPEG data whose declared size is
within ``MediaPolicy.max_pixels``, and a decode that fails is an :class:`~internvl_tools.errors.ImageDecodeError`.

>>> import io
>>> from PIL import Image
>>> buf = io.BytesIO(); Image.new("RGB", (5, 4), (9, 8, 7)).save(buf, "PNG")
>>> from internvl_tools.media.images import load_pixels
>>> t = load_pixels(buf.getvalue()); tuple(t.shape), t[:, 0, 0].tolist()
((3, 4, 5), [9, 8, 7])
"""

from __future__ import annotations

import warnings
from typing import TYPE_CHECKING, Any

from PIL import Image

from internvl_tools.errors import ImageDecodeError

if TYPE_CHECKING:  # pragma: no cover
    import torch

__all__ = ["pil_to_chw", "png_needs_pillow", "read_whole_stream", "torchvision_can_decode", "torchvision_decode"]

# PNG raw modes (8 bits per sample or fewer) whose libpng expansion to RGB equals Pillow's convert("RGB").
_PNG_RAWMODES = frozenset({"RGB", "RGBA", "L", "LA", "P", "P;1", "P;2", "P;4", "1", "L;2", "L;4"})
_JPEG_MODES = frozenset({"RGB", "L"})


def _orientation(im: Image.Image) -> int:
    try:
        return int(im.getexif().get(0x0112, 1))
    except Exception:  # a malformed EXIF block: Pillow's path decides what to do with it
        return -1


def torchvision_can_decode(im: Image.Image, exif_transpose: bool) -> bool:
    """Whether torchvision's decoders give exactly Pillow's RGB pixels for ``im`` (opened, not yet decoded).

    >>> import io
    >>> from PIL import Image
    >>> buf = io.BytesIO(); Image.new("CMYK", (2, 2)).save(buf, "JPEG")
    >>> torchvision_can_decode(Image.open(buf), exif_transpose=True)
    False
    """
    if getattr(im, "n_frames", 1) != 1:
        return False
    if im.format == "PNG":
        rawmode = im.tile[0][3] if im.tile and len(im.tile[0]) > 3 else None
        if not isinstance(rawmode, str) or rawmode not in _PNG_RAWMODES:
            return False
        # The palette expansion with a tRNS chunk differs between the two (alpha handling).
        # (Pillow's getexif() on a PNG decodes the whole image, so EXIF is looked for in the bytes instead:
        # :func:`png_needs_pillow`.)
        return not (im.mode == "P" and "transparency" in im.info)
    if im.format == "JPEG":
        if im.mode not in _JPEG_MODES:
            return False
        return _orientation(im) in range(1, 9) if exif_transpose else True
    return False


def png_needs_pillow(data: bytes) -> bool:
    """Whether a PNG holds a ``zTXt``, ``iTXt`` or ``eXIf`` chunk (walking chunk headers, not reading their data).

    Pillow caps what compressed text inflates to (a text bomb is an :class:`~internvl_tools.errors.ImageTooLargeError`)
    and applies EXIF orientation; libpng reads text after the pixels with other limits and ignores ``eXIf``, so such
    files stay with Pillow.

    >>> png_needs_pillow(bytes(8) + bytes(4) + b"IEND" + bytes(4))
    False
    """
    pos = 8
    while pos + 8 <= len(data):
        length = int.from_bytes(data[pos : pos + 4], "big")
        kind = data[pos + 4 : pos + 8]
        if kind in (b"zTXt", b"iTXt", b"eXIf"):
            return True
        if kind == b"IEND":
            return False
        pos += 12 + length
    return False


def torchvision_decode(data: bytes, kind: str, exif_transpose: bool, desc: str) -> torch.Tensor:
    """Decode PNG or JPEG ``data`` (already opened and checked by Pillow) to a uint8 ``3×H×W`` tensor."""
    import numpy as np
    import torch
    from torchvision.io import ImageReadMode, decode_jpeg, decode_png

    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)  # a read-only buffer: torchvision only reads it
        raw = torch.from_numpy(np.frombuffer(data, dtype=np.uint8))
        try:
            if kind == "JPEG":
                return decode_jpeg(raw, mode=ImageReadMode.RGB, apply_exif_orientation=exif_transpose)
            return decode_png(raw, mode=ImageReadMode.RGB)
        except RuntimeError as err:
            raise ImageDecodeError(
                f"{desc} could not be decoded ({err}); the file is probably truncated or corrupt. Re-download or "
                "re-export it."
            ) from err


def pil_to_chw(im: Image.Image) -> torch.Tensor:
    """A decoded RGB PIL image as a uint8 ``3×H×W`` view over one packed copy of its pixels."""
    import numpy as np
    import torch

    hwc = np.frombuffer(im.tobytes(), dtype=np.uint8).reshape(im.height, im.width, 3)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)
        return torch.from_numpy(hwc).permute(2, 0, 1)


def read_whole_stream(fh: Any, limit: int) -> bytes | None:
    """The whole stream from its start, or ``None`` when it holds more than ``limit`` bytes.

    The stream is left where it was, so a Pillow image opened on it can still decode (the fallback).
    """
    where = fh.tell()
    try:
        fh.seek(0)
        data = fh.read(limit + 1)
    finally:
        fh.seek(where)
    if not isinstance(data, (bytes, bytearray)) or len(data) > limit:
        return None
    return bytes(data)
