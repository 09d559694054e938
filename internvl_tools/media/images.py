"""Load images from anything a caller might hold, safely, as RGB ``PIL.Image`` objects.

Every entry point of the package (``InternVL.ask``, the LangChain tools, the LlamaIndex readers, the CLI) calls
:func:`load_image`, so this is where untrusted input is checked: pixel and byte limits, path confinement, and a
remote fetcher that is off by default and refuses private networks when on.

Accepted sources: a path (``str`` or ``os.PathLike``), ``file://`` URI, ``bytes``/``bytearray``/``memoryview``,
a binary file object, a ``PIL.Image.Image``, a numpy array, a base64 string, a ``data:`` URI, and http(s) URLs
when :attr:`MediaPolicy.allow_remote` is set.

Decoding (:mod:`internvl_tools.media.decode`) differs from the reference pipeline (``Image.open(p).convert('RGB')``)
in two optional ways:

* EXIF orientation is applied by default (``exif_transpose=True``); the reference ignores it, so a phone photo
  taken in portrait reaches the model sideways. Pass ``exif_transpose=False`` for the reference behaviour.
* 16/32-bit integer and float images (PIL modes ``I;16*``, ``I``, ``F``) are rescaled to 8 bits
  (``high_bit_depth="scale"``); PIL's ``convert('RGB')`` clips them to 255, which turns most 16-bit scans white.
  ``high_bit_depth="clip"`` reproduces the reference.

Every other mode (L, LA, P with or without transparency, RGBA, CMYK including Adobe-inverted JPEGs, YCbCr, 1, ...)
goes through ``convert('RGB')`` exactly as the reference does; alpha is dropped, not composited.

>>> from PIL import Image
>>> load_image(Image.new("RGBA", (4, 3), (10, 20, 30, 0))).getpixel((0, 0))
(10, 20, 30)
"""

from __future__ import annotations

import base64
import binascii
import io
import os
import stat
import urllib.parse
import urllib.request
from collections.abc import Iterable
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

import numpy as np
from PIL import Image

from internvl_tools.errors import (
    ConfigError,
    ImageDecodeError,
    ImageTooLargeError,
    InternVLError,
    MediaNotFoundError,
    MediaPolicyError,
    UnsupportedSourceError,
    URLBlockedError,
)
from internvl_tools.media.decode import (
    DecodeOptions,
    HighBitDepth,
    check_high_bit_depth,
    decode_bytes,
    decode_stream,
    finish_image,
    image_from_array,
)
from internvl_tools.media.paths import resolve_local_path
from internvl_tools.media.pixels import pil_to_chw
from internvl_tools.media.policy import (
    BASE64_RE,
    DEFAULT_POLICY,
    MAX_PATH_CHARS,
    URL_SCHEME_RE,
    WHITESPACE_RE,
    MediaPolicy,
    describe_source,
)

if TYPE_CHECKING:  # pragma: no cover
    import torch

__all__ = ["encode_image", "load_image", "load_images", "load_pixels", "to_data_uri"]

# Signatures of formats we accept as bare base64 (without a data: URI the string must say what it is).
_MAGIC: tuple[bytes, ...] = (
    b"\x89PNG\r\n\x1a\n", b"\xff\xd8\xff", b"GIF87a", b"GIF89a", b"BM", b"II*\x00", b"MM\x00*", b"RIFF",
    b"\x00\x00\x01\x00", b"\x00\x00\x00\x0cjP  \r\n\x87\n", b"\xff\x4f\xff\x51", b"qoif",
)  # fmt: skip


def load_image(
    source: Any,
    *,
    policy: MediaPolicy | None = None,
    exif_transpose: bool = True,
    high_bit_depth: HighBitDepth = "scale",
) -> Image.Image:
    """Load one image as a new RGB ``PIL.Image.Image``, applying ``policy`` (default: :class:`MediaPolicy()`).

    Raises a subclass of :class:`~internvl_tools.errors.MediaError` naming the input and the fix:
    ``ImageDecodeError`` (empty, truncated, not an image), ``ImageTooLargeError``, ``ImageTooSmallError``,
    ``UnsupportedSourceError``, ``MediaNotFoundError``, ``PathNotAllowedError``, ``RemoteFetchDisabledError``,
    ``URLBlockedError`` or ``FetchError``.

    >>> import numpy as np
    >>> load_image(np.zeros((2, 3), dtype=np.uint8)).size
    (3, 2)
    >>> from internvl_tools.errors import RemoteFetchDisabledError
    >>> try:
    ...     load_image("http://example.com/cat.png")
    ... except RemoteFetchDisabledError:
    ...     print("URLs are refused unless MediaPolicy(allow_remote=True)")
    URLs are refused unless MediaPolicy(allow_remote=True)
    """
    policy = DEFAULT_POLICY if policy is None else policy
    check_high_bit_depth(high_bit_depth)
    opts = DecodeOptions(policy, exif_transpose, high_bit_depth)
    if isinstance(source, Image.Image):
        return finish_image(source, describe_source(source), opts)
    if isinstance(source, np.ndarray):
        return image_from_array(source, opts)
    return _load(source, opts)


def _load(source: Any, opts: DecodeOptions) -> Any:
    """Bytes, strings, paths and file objects, decoded as ``opts.output`` says."""
    policy = opts.policy
    if isinstance(source, (bytes, bytearray, memoryview)):
        data = bytes(source)
        _check_inline_size(len(data), describe_source(source), policy)
        return decode_bytes(data, describe_source(source), opts)
    if isinstance(source, str):
        return _from_string(source, opts)
    if isinstance(source, os.PathLike):
        return _from_path(os.fspath(source), describe_source(source), opts)  # type: ignore[arg-type]
    if hasattr(source, "read"):
        return _from_file_object(source, opts)
    hint = " (for a torch tensor, pass tensor.numpy() in HxWxC order)" if "torch" in type(source).__module__ else ""
    raise UnsupportedSourceError(
        f"Cannot load an image from {describe_source(source)}{hint}. Pass a path, bytes, a binary file object, "
        "a PIL image, a numpy array, a base64 string or a data: URI."
    )


def load_pixels(
    source: Any,
    *,
    policy: MediaPolicy | None = None,
    exif_transpose: bool = True,
    high_bit_depth: HighBitDepth = "scale",
    decoder: Literal["auto", "pillow"] = "auto",
) -> torch.Tensor:
    """Load one image as a uint8 ``3×H×W`` torch tensor: :func:`load_image`'s pixels, decoded for the tiler.

    The same sources, policy checks and errors as :func:`load_image`, and bit for bit the same pixels; what
    changes is the way there (see :mod:`internvl_tools.media.pixels`): PNG and JPEG files are decoded by
    torchvision straight into the tensor where that gives Pillow's pixels, and no RGB copy or packing pass is
    made. ``decoder="pillow"`` keeps every byte with Pillow. :func:`internvl_tools.tile_image` reads the tensor
    with no copy.

    >>> import numpy as np
    >>> tuple(load_pixels(np.zeros((2, 3), dtype=np.uint8)).shape)
    (3, 2, 3)
    """
    if decoder not in ("auto", "pillow"):
        raise ConfigError(f"decoder={decoder!r} is not supported; use 'auto' (default) or 'pillow'.")
    policy = DEFAULT_POLICY if policy is None else policy
    check_high_bit_depth(high_bit_depth)
    if isinstance(source, (Image.Image, np.ndarray)):
        image = load_image(source, policy=policy, exif_transpose=exif_transpose, high_bit_depth=high_bit_depth)
        return pil_to_chw(image)
    return _load(source, DecodeOptions(policy, exif_transpose, high_bit_depth, output="tensor", decoder=decoder))


def load_images(
    sources: Iterable[Any],
    *,
    policy: MediaPolicy | None = None,
    return_errors: bool = False,
    exif_transpose: bool = True,
    high_bit_depth: HighBitDepth = "scale",
) -> list[Any]:
    """Load many images; one bad item does not stop the others from being tried.

    With ``return_errors=True`` the result holds, per item, the RGB image or the ``InternVLError`` it raised.
    Otherwise every item is still attempted and the first error is raised, with notes naming the other failures.

    >>> out = load_images([b"not an image", np.zeros((1, 1, 3), np.uint8)], return_errors=True)
    >>> [type(x).__name__ for x in out]
    ['ImageDecodeError', 'Image']
    """
    if isinstance(sources, (str, bytes, bytearray, memoryview, os.PathLike, Image.Image, np.ndarray)):
        raise UnsupportedSourceError(
            f"load_images() takes a list of sources, got a single {describe_source(sources)}; wrap it in a list "
            "or call load_image()."
        )
    check_high_bit_depth(high_bit_depth)
    results: list[Any] = []
    for item in sources:
        try:
            results.append(
                load_image(item, policy=policy, exif_transpose=exif_transpose, high_bit_depth=high_bit_depth)
            )
        except InternVLError as err:
            results.append(err)
    if return_errors:
        return results
    failures = [(i, r) for i, r in enumerate(results) if isinstance(r, InternVLError)]
    if failures:
        index, first = failures[0]
        _add_note(first, f"load_images: item {index} of {len(results)} failed.")
        for i, other in failures[1:]:
            _add_note(first, f"load_images: item {i} also failed: {type(other).__name__}: {other}")
        raise first
    return results


def _add_note(err: BaseException, note: str) -> None:
    if hasattr(err, "add_note"):
        err.add_note(note)
    else:  # Python 3.10: same attribute, just not printed by the traceback
        err.__notes__ = [*getattr(err, "__notes__", []), note]  # type: ignore[attr-defined]


def encode_image(image: Any, format: str = "PNG", **save_kwargs: Any) -> bytes:
    """Encode an image (or anything :func:`load_image` accepts) to bytes, lossless PNG by default.

    >>> encode_image(Image.new("RGB", (1, 1)))[:8]
    b'\\x89PNG\\r\\n\\x1a\\n'
    """
    im = image if isinstance(image, Image.Image) else load_image(image)
    fmt = format.upper()
    if fmt in ("JPEG", "JPG") and im.mode not in ("L", "RGB", "CMYK"):
        im = im.convert("RGB")  # JPEG has no alpha; drop it the same way load_image does
    buf = io.BytesIO()
    try:
        im.save(buf, format="JPEG" if fmt == "JPG" else fmt, **save_kwargs)
    except (KeyError, ValueError, OSError) as err:
        raise UnsupportedSourceError(
            f"Cannot encode {describe_source(im)} as {format!r}: {err}. Use 'PNG' (lossless) or 'JPEG'."
        ) from err
    return buf.getvalue()


def to_data_uri(image: Any, format: str = "PNG", **save_kwargs: Any) -> str:
    """Encode an image as a ``data:image/...;base64,`` URI (what OpenAI-compatible servers accept).

    >>> to_data_uri(Image.new("RGB", (1, 1)))[:22]
    'data:image/png;base64,'
    """
    fmt = "JPEG" if format.upper() == "JPG" else format.upper()
    mime = Image.MIME.get(fmt) or f"image/{fmt.lower()}"
    payload = base64.b64encode(encode_image(image, fmt, **save_kwargs)).decode("ascii")
    return f"data:{mime};base64,{payload}"


# --- internals: dispatch ------------------------------------------------------------------------------------------


def _check_inline_size(n_bytes: int, desc: str, policy: MediaPolicy) -> None:
    if n_bytes > policy.max_bytes:
        raise ImageTooLargeError(
            f"{desc} holds {n_bytes} bytes, over the limit of {policy.max_bytes} bytes; "
            "raise MediaPolicy(max_bytes=...) if this is intended."
        )


def _from_string(source: str, opts: DecodeOptions) -> Any:
    text = source.strip()
    desc = describe_source(source)
    if not text:
        raise ImageDecodeError("Got an empty string as an image; pass a path, base64 data or a data: URI.")
    if text[:5].lower() == "data:":
        return _from_data_uri(text, desc, opts)
    match = URL_SCHEME_RE.match(text)
    if match:
        scheme = match.group(1).lower()
        if scheme == "file":
            return _from_path(_file_uri_to_path(text, desc), desc, opts)
        # The fetcher (httpx, httpcore) loads with the first URL: image-only callers never pay for it.
        from internvl_tools.media.fetch import fetch_bytes

        return decode_bytes(fetch_bytes(text, opts.policy), desc, opts)

    policy_error: MediaPolicyError | None = None
    if len(source) <= MAX_PATH_CHARS and "\x00" not in source and "\n" not in source:
        try:
            path = resolve_local_path(source, opts.policy)
        except MediaPolicyError as err:
            policy_error = err  # maybe it is base64 after all; decide below
        else:
            if _exists(path):
                return _from_path(source, desc, opts)
    data = _b64_image_bytes(text, desc, opts.policy)
    if data is not None:
        return decode_bytes(data, desc, opts)
    if policy_error is not None:
        raise policy_error
    compact = WHITESPACE_RE.sub("", text)
    if len(compact) >= 64 and BASE64_RE.match(compact):
        raise ImageDecodeError(
            f"{desc} is not an existing file, and decoded as base64 it is not an image in a supported format. "
            "Check the path, or send the data as 'data:image/<format>;base64,...'."
        )
    raise MediaNotFoundError(
        f"No file at {desc}, and the string is not base64 image data or a data: URI. Check the path "
        "(relative paths are taken from "
        f"{'the first allowed dir' if opts.policy.allowed_dirs else 'the current directory'})."
    )


def _b64_image_bytes(text: str, desc: str, policy: MediaPolicy) -> bytes | None:
    """Decode ``text`` if it is base64 of a recognisable image; ``None`` if it does not look like one."""
    compact = WHITESPACE_RE.sub("", text)
    if len(compact) < 8 or not BASE64_RE.match(compact):
        return None
    _check_inline_size(len(compact) * 3 // 4, desc, policy)
    try:
        data = _b64decode(compact)
    except binascii.Error:
        return None
    return data if data.startswith(_MAGIC) else None


def _b64decode(compact: str) -> bytes:
    if "-" in compact or "_" in compact:
        compact = compact.replace("-", "+").replace("_", "/")
    compact += "=" * (-len(compact) % 4)
    return base64.b64decode(compact, validate=True)


def _from_data_uri(text: str, desc: str, opts: DecodeOptions) -> Any:
    header, sep, payload = text[5:].partition(",")
    if not sep:
        raise ImageDecodeError(f"{desc} has no ',' separating header and data; expected 'data:image/png;base64,...'.")
    params = [p.strip().lower() for p in header.split(";")]
    if "base64" in params:
        compact = WHITESPACE_RE.sub("", urllib.parse.unquote(payload))
        _check_inline_size(len(compact) * 3 // 4, desc, opts.policy)
        try:
            data = _b64decode(compact)
        except binascii.Error as err:
            raise ImageDecodeError(f"{desc} does not hold valid base64 ({err}); re-encode the image.") from err
    else:
        _check_inline_size(len(payload), desc, opts.policy)
        data = urllib.parse.unquote_to_bytes(payload)
    return decode_bytes(data, desc, opts)


def _file_uri_to_path(uri: str, desc: str) -> str:
    parts = urllib.parse.urlsplit(uri)
    if parts.netloc not in ("", "localhost"):
        raise URLBlockedError(f"{desc} names host {parts.netloc!r}; only local file:// URIs can be read.")
    return urllib.request.url2pathname(parts.path)


def _exists(path: Path) -> bool:
    try:
        return path.exists()
    except (OSError, ValueError):  # name too long, symlink loop, NUL byte: not a file we can read
        return False


def _from_path(raw: str, desc: str, opts: DecodeOptions) -> Any:
    path = resolve_local_path(raw, opts.policy)
    # A check-then-open race (symlink swapped in between) can still escape allowed_dirs; callers that let
    # untrusted writers into those directories should not rely on this alone.
    try:
        info = path.stat()
    except (OSError, ValueError) as err:
        raise MediaNotFoundError(
            f"No such image file: {desc} ({getattr(err, 'strerror', None) or err}). Check the path and the "
            "working directory."
        ) from err
    if not stat.S_ISREG(info.st_mode):
        raise MediaNotFoundError(f"{desc} is not a regular file (a directory or device); pass an image file.")
    if info.st_size == 0:
        raise ImageDecodeError(f"{desc} is an empty file (0 bytes); re-export or re-download the image.")
    try:
        with open(path, "rb") as fh:
            return decode_stream(fh, desc, opts)
    except PermissionError as err:
        raise MediaNotFoundError(f"{desc} cannot be read ({err.strerror}); check its permissions.") from err


def _from_file_object(fh: Any, opts: DecodeOptions) -> Any:
    desc = describe_source(fh)
    if isinstance(fh, io.TextIOBase):
        raise UnsupportedSourceError(f"{desc} is open in text mode; open the file with 'rb'.")
    try:
        seekable = bool(fh.seekable()) if hasattr(fh, "seekable") else False
        if seekable and fh.tell() == 0:
            return decode_stream(fh, desc, opts)  # PIL reads from the start; no copy needed
        data = fh.read(opts.policy.max_bytes + 1)
    except OSError as err:
        raise ImageDecodeError(f"Could not read {desc}: {err}.") from err
    if not isinstance(data, (bytes, bytearray)):
        raise UnsupportedSourceError(f"{desc}.read() returned {type(data).__name__}, not bytes; open it with 'rb'.")
    _check_inline_size(len(data), f"{desc} (unseekable or mid-stream; read up to the byte cap)", opts.policy)
    return decode_bytes(bytes(data), desc, opts)
