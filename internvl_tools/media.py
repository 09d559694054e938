"""Load images from anything a caller might hold, safely, as RGB ``PIL.Image`` objects.

Every entry point of the package (``InternVL.ask``, the LangChain tools, the LlamaIndex readers, the CLI) calls
:func:`load_image`, so this is where untrusted input is checked: pixel and byte limits, path confinement, and a
remote fetcher that is off by default and refuses private networks when on.

Accepted sources: a path (``str`` or ``os.PathLike``), ``file://`` URI, ``bytes``/``bytearray``/``memoryview``,
a binary file object, a ``PIL.Image.Image``, a numpy array, a base64 string, a ``data:`` URI, and http(s) URLs
when :attr:`MediaPolicy.allow_remote` is set.

Differences from the reference pipeline (``Image.open(p).convert('RGB')``), both optional:

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
import errno
import io
import ipaddress
import os
import re
import stat
import struct
import threading
import urllib.parse
import urllib.request
import warnings
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path, PureWindowsPath
from typing import Any, Literal

import numpy as np
from PIL import Image, ImageOps

from internvl_tools.errors import (
    ConfigError,
    ImageDecodeError,
    ImageTooLargeError,
    ImageTooSmallError,
    InternVLError,
    MediaNotFoundError,
    MediaPolicyError,
    PathNotAllowedError,
    UnsupportedSourceError,
    URLBlockedError,
)

__all__ = [
    "DEFAULT_IMAGE_FORMATS",
    "MediaPolicy",
    "allowed_formats",
    "check_image_size",
    "confine_path",
    "decode_frame",
    "describe_source",
    "encode_image",
    "load_image",
    "load_images",
    "open_confined",
    "open_image",
    "resolve_local_path",
    "to_data_uri",
]

HighBitDepth = Literal["scale", "clip"]

#: Raster formats PIL may open. Formats that shell out (EPS runs Ghostscript) or are rarely images (FITS, GRIB,
#: MPEG, WMF, ...) are left out so a hostile file cannot reach those decoders.
DEFAULT_IMAGE_FORMATS: tuple[str, ...] = (
    "PNG", "JPEG", "MPO", "GIF", "BMP", "DIB", "TIFF", "WEBP", "PPM", "ICO", "TGA", "JPEG2000", "QOI", "PCX",
    "SGI", "AVIF", "HEIF",
)  # fmt: skip

_MAX_PATH_CHARS = 4096
_SCHEME_RE = re.compile(r"^([A-Za-z][A-Za-z0-9+.\-]*)://")
_B64_RE = re.compile(r"^[A-Za-z0-9+/_\-]+={0,2}$")
_WS_RE = re.compile(r"\s+")
# Signatures of formats we accept as bare base64 (without a data: URI the string must say what it is).
_MAGIC: tuple[bytes, ...] = (
    b"\x89PNG\r\n\x1a\n", b"\xff\xd8\xff", b"GIF87a", b"GIF89a", b"BM", b"II*\x00", b"MM\x00*", b"RIFF",
    b"\x00\x00\x01\x00", b"\x00\x00\x00\x0cjP  \r\n\x87\n", b"\xff\x4f\xff\x51", b"qoif",
)  # fmt: skip
_HIGH_BIT_MODES = frozenset({"I;16", "I;16L", "I;16B", "I;16N", "I", "F"})
# PIL's open() warns or raises about big images through process-global state; serialise our use of it.
_OPEN_LOCK = threading.Lock()


# --- policy -------------------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class MediaPolicy:
    """What :func:`load_image` may read, and how much.

    The default reads any local file and inline data and refuses URLs. Agents should use
    :meth:`sandboxed`, which confines paths to given directories.

    Attributes:
        allow_remote: fetch http(s) URLs (off by default).
        allowed_dirs: if set, a path must resolve (symlinks followed) inside one of these; relative paths are
            taken relative to the first. ``None`` allows any path.
        allow_local_files: read paths and ``file://`` URIs at all.
        max_pixels: width × height limit, checked from the header before any pixel is decoded.
        max_bytes: limit for downloaded bodies and inline data (bytes, base64, data URIs, unseekable streams).
        timeout: seconds for the whole download (connect, redirects and body).
        max_redirects: redirects followed, each re-checked against the address rules.
        allowed_schemes: URL schemes that may be fetched (a subset of http and https).
        allow_private_hosts: host names, IP addresses or networks (``"10.0.0.0/8"``) exempt from the
            private-address refusal. Meant for tests against a local server and for intranets; empty by default.
        image_formats: PIL format names that may be opened.

    >>> MediaPolicy().allow_remote
    False
    >>> MediaPolicy.sandboxed(["/srv/uploads"]).allowed_dirs[0].name
    'uploads'
    """

    allow_remote: bool = False
    allowed_dirs: tuple[Path, ...] | None = None
    allow_local_files: bool = True
    max_pixels: int = 120_000_000
    max_bytes: int = 64 * 1024 * 1024
    timeout: float = 10.0
    max_redirects: int = 3
    allowed_schemes: tuple[str, ...] = ("http", "https")
    allow_private_hosts: frozenset[str] = frozenset()
    image_formats: tuple[str, ...] = DEFAULT_IMAGE_FORMATS
    _exempt_names: frozenset[str] = field(init=False, repr=False, compare=False, default=frozenset())
    _exempt_nets: tuple[Any, ...] = field(init=False, repr=False, compare=False, default=())

    def __post_init__(self) -> None:
        set_ = object.__setattr__  # frozen: normalise once, here
        if self.allowed_dirs is not None:
            dirs = (self.allowed_dirs,) if isinstance(self.allowed_dirs, (str, os.PathLike)) else self.allowed_dirs
            resolved = tuple(Path(os.fspath(d)).expanduser().resolve() for d in dirs)
            if not resolved:
                raise ConfigError("MediaPolicy.allowed_dirs is empty; pass None to allow any path, or some dirs.")
            set_(self, "allowed_dirs", resolved)
        schemes = tuple(s.lower() for s in self.allowed_schemes)
        if not set(schemes) <= {"http", "https"}:
            raise ConfigError(f"MediaPolicy.allowed_schemes={schemes!r}: only 'http' and 'https' can be fetched.")
        set_(self, "allowed_schemes", schemes)
        for name in ("max_pixels", "max_bytes", "timeout"):
            if not getattr(self, name) > 0:
                raise ConfigError(f"MediaPolicy.{name} must be positive, got {getattr(self, name)!r}.")
        if self.max_redirects < 0:
            raise ConfigError(f"MediaPolicy.max_redirects must be >= 0, got {self.max_redirects!r}.")
        hosts = frozenset([self.allow_private_hosts] if isinstance(self.allow_private_hosts, str)
                          else self.allow_private_hosts)  # fmt: skip
        set_(self, "allow_private_hosts", hosts)
        names, nets = set(), []
        for entry in hosts:
            try:
                nets.append(ipaddress.ip_network(entry.strip("[]"), strict=False))
            except ValueError:
                names.add(entry.lower().rstrip("."))
        set_(self, "_exempt_names", frozenset(names))
        set_(self, "_exempt_nets", tuple(nets))
        set_(self, "image_formats", tuple(f.upper() for f in self.image_formats))

    @classmethod
    def sandboxed(
        cls, dirs: Iterable[str | os.PathLike[str]] | str | os.PathLike[str], **overrides: Any
    ) -> MediaPolicy:
        """The strict default for agents: files only inside ``dirs``, no URLs.

        >>> MediaPolicy.sandboxed(["/tmp"]).allow_remote
        False
        """
        dirs_t = (dirs,) if isinstance(dirs, (str, os.PathLike)) else tuple(dirs)
        return cls(**{"allowed_dirs": dirs_t, "allow_remote": False, **overrides})

    def exempts(self, host: str, addr: ipaddress.IPv4Address | ipaddress.IPv6Address | None) -> bool:
        """Whether ``allow_private_hosts`` exempts ``host`` (a lower-case name) or ``addr`` from the address rules."""
        if host in self._exempt_names:
            return True
        return addr is not None and any(addr.version == n.version and addr in n for n in self._exempt_nets)

    _exempt = exempts  # the old name, kept until every caller uses exempts


_DEFAULT_POLICY = MediaPolicy()


# --- describing inputs in errors --------------------------------------------------------------------------------


def redact_url(url: str) -> str:
    """``url`` fit for an error message: credentials replaced by ``***``, long URLs shortened.

    >>> redact_url("https://user:hunter2@example.com/a.png")
    'https://***@example.com/a.png'
    """
    try:
        parts = urllib.parse.urlsplit(url)
    except ValueError:
        return _truncate(url)
    if parts.username is not None or parts.password is not None:
        netloc = "***@" + parts.netloc.rsplit("@", 1)[-1]
        url = urllib.parse.urlunsplit(parts._replace(netloc=netloc))
    return _truncate(url)


_redact_url = redact_url  # the old name, kept until every caller uses redact_url


def _truncate(text: str, limit: int = 120) -> str:
    return text if len(text) <= limit else f"{text[: limit - 20]}…{text[-12:]}"


def describe_source(source: Any) -> str:
    """Name an image source for an error message without dumping its contents.

    >>> describe_source(b"\\x89PNG" + bytes(100))
    'bytes (104 bytes)'
    >>> describe_source("iVBORw0KGgo" * 100)
    "base64 string (1100 chars, starts 'iVBORw0KGgoiVBORw0KG…')"
    """
    if isinstance(source, str):
        head = source.lstrip()[:16].lower()
        if head.startswith("data:"):
            meta = source.lstrip()[5:].split(",", 1)[0][:60]
            return f"data URI ({meta or 'no media type'}, {len(source)} chars)"
        if _SCHEME_RE.match(source.strip()):
            return f"URL {_redact_url(source.strip())!r}"
        if len(source) > 200 and _B64_RE.match(_WS_RE.sub("", source[:4000])):
            return f"base64 string ({len(source)} chars, starts {source[:20] + '…'!r})"
        return f"path {_truncate(source)!r}" if len(source) <= _MAX_PATH_CHARS else f"string ({len(source)} chars)"
    if isinstance(source, (bytes, bytearray)):
        return f"{type(source).__name__} ({len(source)} bytes)"
    if isinstance(source, memoryview):
        return f"memoryview ({source.nbytes} bytes)"
    if isinstance(source, os.PathLike):
        return f"path {_truncate(os.fspath(source))!r}"  # type: ignore[arg-type]
    if isinstance(source, Image.Image):
        return f"PIL image (mode {source.mode}, {source.width}x{source.height})"
    if isinstance(source, np.ndarray):
        return f"numpy array (shape {source.shape}, dtype {source.dtype})"
    if hasattr(source, "read"):
        name = getattr(source, "name", None)
        return f"file object {name!r}" if isinstance(name, str) else f"file object ({type(source).__name__})"
    return f"{type(source).__module__}.{type(source).__qualname__} object"


# --- public API ---------------------------------------------------------------------------------------------------


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
    policy = _DEFAULT_POLICY if policy is None else policy
    _check_high_bit_depth(high_bit_depth)
    opts = _Options(policy, exif_transpose, high_bit_depth)
    if isinstance(source, Image.Image):
        return _finish(source, describe_source(source), opts)
    if isinstance(source, np.ndarray):
        return _from_array(source, opts)
    if isinstance(source, (bytes, bytearray, memoryview)):
        data = bytes(source)
        _check_inline_size(len(data), describe_source(source), policy)
        return _decode_bytes(data, describe_source(source), opts)
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
    _check_high_bit_depth(high_bit_depth)
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


@dataclass(frozen=True)
class _Options:
    policy: MediaPolicy
    exif_transpose: bool
    high_bit_depth: str


def _check_high_bit_depth(value: str) -> None:
    if value not in ("scale", "clip"):
        raise ConfigError(f"high_bit_depth={value!r} is not supported; use 'scale' (default) or 'clip'.")


def _check_inline_size(n_bytes: int, desc: str, policy: MediaPolicy) -> None:
    if n_bytes > policy.max_bytes:
        raise ImageTooLargeError(
            f"{desc} holds {n_bytes} bytes, over the limit of {policy.max_bytes} bytes; "
            "raise MediaPolicy(max_bytes=...) if this is intended."
        )


def _from_string(source: str, opts: _Options) -> Image.Image:
    text = source.strip()
    desc = describe_source(source)
    if not text:
        raise ImageDecodeError("Got an empty string as an image; pass a path, base64 data or a data: URI.")
    if text[:5].lower() == "data:":
        return _from_data_uri(text, desc, opts)
    match = _SCHEME_RE.match(text)
    if match:
        scheme = match.group(1).lower()
        if scheme == "file":
            return _from_path(_file_uri_to_path(text, desc), desc, opts)
        from internvl_tools.fetch import fetch_bytes

        return _decode_bytes(fetch_bytes(text, opts.policy), desc, opts)

    policy_error: MediaPolicyError | None = None
    if len(source) <= _MAX_PATH_CHARS and "\x00" not in source and "\n" not in source:
        try:
            path = resolve_local_path(source, opts.policy)
        except MediaPolicyError as err:
            policy_error = err  # maybe it is base64 after all; decide below
        else:
            if _exists(path):
                return _from_path(source, desc, opts)
    data = _b64_image_bytes(text, desc, opts.policy)
    if data is not None:
        return _decode_bytes(data, desc, opts)
    if policy_error is not None:
        raise policy_error
    compact = _WS_RE.sub("", text)
    if len(compact) >= 64 and _B64_RE.match(compact):
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
    compact = _WS_RE.sub("", text)
    if len(compact) < 8 or not _B64_RE.match(compact):
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


def _from_data_uri(text: str, desc: str, opts: _Options) -> Image.Image:
    header, sep, payload = text[5:].partition(",")
    if not sep:
        raise ImageDecodeError(f"{desc} has no ',' separating header and data; expected 'data:image/png;base64,...'.")
    params = [p.strip().lower() for p in header.split(";")]
    if "base64" in params:
        compact = _WS_RE.sub("", urllib.parse.unquote(payload))
        _check_inline_size(len(compact) * 3 // 4, desc, opts.policy)
        try:
            data = _b64decode(compact)
        except binascii.Error as err:
            raise ImageDecodeError(f"{desc} does not hold valid base64 ({err}); re-encode the image.") from err
    else:
        _check_inline_size(len(payload), desc, opts.policy)
        data = urllib.parse.unquote_to_bytes(payload)
    return _decode_bytes(data, desc, opts)


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


def resolve_local_path(raw: str, policy: MediaPolicy) -> Path:
    """``raw`` as a path the policy lets us read: resolved (symlinks followed) and inside ``allowed_dirs``.

    A thin policy wrapper around :func:`confine_path` (``must_exist=False``: whether the file is there is checked
    when it is opened). Relative paths are taken from the first allowed directory that has them (else the first);
    raises :class:`PathNotAllowedError` when local files are off or the path resolves outside, and
    :class:`MediaNotFoundError` for a path that cannot name a file (symlink loop, NUL byte, bad encoding). Shared
    by images and videos.

    >>> resolve_local_path("a.png", MediaPolicy.sandboxed(["/srv/uploads"])).as_posix()
    '/srv/uploads/a.png'
    """
    if not policy.allow_local_files:
        raise PathNotAllowedError(
            f"Reading local files is disabled by the media policy (path {_truncate(_path_text(raw))!r}); pass the "
            "image as bytes or enable MediaPolicy(allow_local_files=True)."
        )
    return confine_path(raw, policy.allowed_dirs, must_exist=False)


#: Longest single file-name component most file systems take (bytes); longer names fail with ENAMETOOLONG.
_NAME_MAX = 255


def confine_path(
    raw: str | bytes | os.PathLike[Any],
    allowed_dirs: Iterable[str | os.PathLike[str]] | str | os.PathLike[str] | None = None,
    *,
    relative: bool = False,
    must_exist: bool = True,
    max_bytes: int | None = None,
) -> Path:
    """The package's one path check: ``raw`` as a readable path inside ``allowed_dirs``, or a typed error.

    Every problem a path can have comes back as a :class:`~internvl_tools.errors.MediaError` whose message names
    the problem and the fix, never as a bare ``OSError``/``ValueError``/``RuntimeError``:

    * :class:`MediaNotFoundError`: empty, NUL byte, not encodable as a file name, too long, ``~user`` with no such
      user, symlink loop, missing, permission denied, a directory, FIFO, device or socket instead of a regular
      file (a FIFO or ``/dev/zero`` would block or never end, so they are refused before anything opens them).
    * :class:`PathNotAllowedError`: resolves (symlinks followed, ``..`` folded) outside ``allowed_dirs``; with
      ``relative=True`` also absolute paths (POSIX or Windows style), ``~`` and any ``..`` component.
    * :class:`MediaPolicyError`: bigger than ``max_bytes``.

    Args:
        raw: the path as ``str``, ``bytes`` (non-UTF-8 names are kept as the OS gives them) or ``os.PathLike``.
        allowed_dirs: directories the path must resolve into; ``None`` confines nothing (the other checks apply).
            A relative path is taken from the first of them that has it (else the first); without dirs, from the
            working directory.
        relative: the path comes from an untrusted caller (an agent's tool call): refuse absolute paths, ``~``
            and ``..`` outright instead of resolving them.
        must_exist: also require an existing, readable-looking regular file (``stat``, no open). With ``False``
            only the name and the confinement are checked (for callers that open later).
        max_bytes: refuse regular files larger than this.

    Returns the resolved path when ``allowed_dirs`` is given, else the ``~``-expanded path as given. To close the
    check-then-open race as well, open with :func:`open_confined`.

    >>> confine_path("a.png", ["/srv/uploads"], must_exist=False).as_posix()
    '/srv/uploads/a.png'
    >>> confine_path("../etc/passwd", ["/srv/uploads"], relative=True)  # doctest: +ELLIPSIS
    Traceback (most recent call last):
    internvl_tools.errors.PathNotAllowedError: Paths may not contain '..' ('../etc/passwd'); give a path inside...
    """
    text = _path_text(raw)
    shown = _truncate(text)
    if not text.strip():
        raise MediaNotFoundError("The path is empty; pass the name of a file.")
    if "\x00" in text:
        raise MediaNotFoundError(
            f"Path {shown!r} contains a NUL byte, which no file name can hold; pass the path without it (it was "
            "probably cut out of binary data)."
        )
    try:
        encoded = os.fsencode(text)
    except UnicodeError as err:
        raise MediaNotFoundError(
            f"Path {shown!r} has characters that cannot be part of a file name on this system ({err.reason}); pass "
            "the name as bytes, or fix its encoding."
        ) from err
    too_long = len(encoded) > _MAX_PATH_CHARS or (
        must_exist and any(len(part) > _NAME_MAX for part in re.split(rb"[/\\]", encoded))
    )
    if too_long:
        raise MediaNotFoundError(
            f"Path {shown!r} is too long ({len(encoded):,} bytes; file systems take at most {_NAME_MAX} bytes per "
            f"name and {_MAX_PATH_CHARS} in all); shorten the name or move the file."
        )
    if relative:
        _refuse_non_relative(text, shown)
    path = Path(text)
    if not relative:
        try:
            path = path.expanduser()
        except RuntimeError as err:  # '~nosuchuser/...'
            raise MediaNotFoundError(f"Cannot expand '~' in {shown!r} ({err}); write the path out in full.") from err
    dirs = _confinement_dirs(allowed_dirs)
    if dirs is not None:
        if not path.is_absolute():
            candidates = [d / path for d in dirs]
            path = next((c for c in candidates if _lexists(c)), candidates[0])
        try:
            resolved = path.resolve()  # follows symlinks and folds '..', so escapes show up here
        except (OSError, RuntimeError, ValueError) as err:
            raise MediaNotFoundError(f"Cannot read {shown!r}: {_path_problem(err)}.") from err
        if not any(resolved.is_relative_to(d) for d in dirs):
            if relative:  # an agent learns neither the link's target nor our directory layout
                raise PathNotAllowedError(f"{shown!r} resolves outside the allowed folder; it cannot be read.")
            allowed = ", ".join(str(d) for d in dirs)
            raise PathNotAllowedError(
                f"Path {shown!r} resolves to {str(resolved)!r}, outside the allowed directories ({allowed}). Copy "
                "the file into an allowed directory or widen the allowed directories (MediaPolicy.allowed_dirs)."
            )
        path = resolved
    if must_exist:
        try:
            info = os.stat(path)
        except (OSError, ValueError) as err:
            if getattr(err, "errno", None) == errno.ENOENT:
                where = "relative to the allowed folder" if relative else "check the name and the working directory"
                raise MediaNotFoundError(f"No such file: {shown!r} ({where}){_windows_hint(text)}.") from err
            raise MediaNotFoundError(f"Cannot read {shown!r}: {_path_problem(err)}.") from err
        _check_regular(info, shown, max_bytes)
    return path


def open_confined(
    raw: str | bytes | os.PathLike[Any],
    allowed_dirs: Iterable[str | os.PathLike[str]] | str | os.PathLike[str] | None = None,
    *,
    relative: bool = False,
    max_bytes: int | None = None,
) -> io.BufferedReader:
    """Check ``raw`` with :func:`confine_path`, open it, and check the *opened* file again (no check-then-open race).

    The file is opened non-blocking (a FIFO swapped in after the check cannot hang the open), then ``fstat`` must
    show the same regular file that was checked, and where the OS tells (Linux), the opened file's real path must
    still lie inside ``allowed_dirs``. Raises the same typed errors as :func:`confine_path`. The caller closes it.
    """
    path = confine_path(raw, allowed_dirs, relative=relative, must_exist=True, max_bytes=max_bytes)
    shown = _truncate(_path_text(raw))
    flags = os.O_RDONLY
    for name in ("O_BINARY", "O_NONBLOCK", "O_NOCTTY", "O_CLOEXEC"):
        flags |= getattr(os, name, 0)
    try:
        checked = os.stat(path)
        fd = os.open(path, flags)
    except (OSError, ValueError) as err:
        raise MediaNotFoundError(f"Cannot open {shown!r}: {_path_problem(err)}.") from err
    try:
        info = os.fstat(fd)
        _check_regular(info, shown, max_bytes)
        swapped = (info.st_dev, info.st_ino) != (checked.st_dev, checked.st_ino)
        dirs = _confinement_dirs(allowed_dirs)
        real = _fd_real_path(fd)
        if swapped or (dirs is not None and real is not None and not any(real.is_relative_to(d) for d in dirs)):
            raise PathNotAllowedError(
                f"{shown!r} changed while it was being opened (a file or link was swapped in); it was not read. "
                "Try again, and keep untrusted writers out of the allowed directories."
            )
        if hasattr(os, "set_blocking"):
            os.set_blocking(fd, True)
        handle = os.fdopen(fd, "rb")
    except BaseException:
        os.close(fd)
        raise
    handle.raw.name = os.fspath(path)  # so messages name the file, not a descriptor number
    return handle


def _path_text(raw: Any) -> str:
    if isinstance(raw, os.PathLike):
        raw = os.fspath(raw)
    if isinstance(raw, (bytes, bytearray)):
        return os.fsdecode(bytes(raw))  # undecodable bytes become surrogate escapes and round-trip to the OS
    if not isinstance(raw, str):
        raise UnsupportedSourceError(f"A path must be str, bytes or os.PathLike, got {type(raw).__name__}.")
    return raw


def _refuse_non_relative(text: str, shown: str) -> None:
    windows = PureWindowsPath(text)
    if text.startswith(("~", "/", "\\")) or windows.drive or windows.root:
        raise PathNotAllowedError(
            f"Absolute paths are not accepted ({shown!r}, also '~' and drive letters); give a path relative to the "
            "allowed folder, e.g. 'scans/receipt.png'."
        )
    if ".." in re.split(r"[/\\]", text):
        raise PathNotAllowedError(f"Paths may not contain '..' ({shown!r}); give a path inside the allowed folder.")


def _confinement_dirs(allowed_dirs: Any) -> tuple[Path, ...] | None:
    if allowed_dirs is None:
        return None
    items = (allowed_dirs,) if isinstance(allowed_dirs, (str, bytes, os.PathLike)) else tuple(allowed_dirs)
    if not items:
        raise ConfigError("allowed_dirs is empty; pass None to allow any path, or some directories.")
    dirs = []
    for item in items:
        try:
            dirs.append(Path(os.fsdecode(item)).expanduser().resolve())
        except (OSError, RuntimeError, ValueError) as err:
            raise ConfigError(f"Allowed directory {item!r} cannot be resolved ({err}); fix the setting.") from err
    return tuple(dirs)


def _lexists(path: Path) -> bool:
    try:
        return os.path.lexists(path)
    except (OSError, ValueError):
        return False


def _path_problem(err: BaseException) -> str:
    """What an OS error about a path means, and what to do about it."""
    code = getattr(err, "errno", None)
    if isinstance(err, RuntimeError) or code == errno.ELOOP:
        return "it runs into a symlink loop; fix or remove the link"
    if code == errno.ENAMETOOLONG:
        return "the name is too long for the file system; shorten it"
    if code in (errno.EACCES, errno.EPERM):
        return "permission denied; make the file readable by this process"
    if code == errno.ENOENT:
        return "no such file; check the name"
    if code == errno.ENOTDIR:
        return "a part of the path is a file, not a directory; check the path"
    if isinstance(err, ValueError):
        return f"it is not a valid path ({err}); check the name"
    return f"{getattr(err, 'strerror', None) or err}; check the path"


def _windows_hint(text: str) -> str:
    if os.name != "nt" and (PureWindowsPath(text).drive or "\\" in text):
        return "; it looks like a Windows path, but this system separates folders with '/'"
    return ""


def _check_regular(info: os.stat_result, shown: str, max_bytes: int | None) -> None:
    mode = info.st_mode
    if stat.S_ISREG(mode):
        if max_bytes is not None and info.st_size > max_bytes:
            raise MediaPolicyError(
                f"{shown!r} is {info.st_size:,} bytes, over the {max_bytes:,}-byte limit; pass a smaller file or "
                "raise the limit."
            )
        return
    if stat.S_ISDIR(mode):
        kind = "a directory; name a file inside it"
    elif stat.S_ISFIFO(mode):
        kind = "a named pipe (FIFO), which could block forever; pass a regular file"
    elif stat.S_ISCHR(mode) or stat.S_ISBLK(mode):
        kind = "a device file (reading it may never end); pass a regular file"
    elif stat.S_ISSOCK(mode):
        kind = "a socket; pass a regular file"
    else:
        kind = "not a regular file; pass a regular file"
    raise MediaNotFoundError(f"{shown!r} is {kind}.")


def _fd_real_path(fd: int) -> Path | None:
    """Where an open descriptor really points (Linux ``/proc``), or ``None`` where the OS does not say."""
    try:
        return Path(os.readlink(f"/proc/self/fd/{fd}"))
    except OSError:
        return None


def _from_path(raw: str, desc: str, opts: _Options) -> Image.Image:
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
            return _decode_stream(fh, desc, opts)
    except PermissionError as err:
        raise MediaNotFoundError(f"{desc} cannot be read ({err.strerror}); check its permissions.") from err


def _from_file_object(fh: Any, opts: _Options) -> Image.Image:
    desc = describe_source(fh)
    if isinstance(fh, io.TextIOBase):
        raise UnsupportedSourceError(f"{desc} is open in text mode; open the file with 'rb'.")
    try:
        seekable = bool(fh.seekable()) if hasattr(fh, "seekable") else False
        if seekable and fh.tell() == 0:
            return _decode_stream(fh, desc, opts)  # PIL reads from the start; no copy needed
        data = fh.read(opts.policy.max_bytes + 1)
    except OSError as err:
        raise ImageDecodeError(f"Could not read {desc}: {err}.") from err
    if not isinstance(data, (bytes, bytearray)):
        raise UnsupportedSourceError(f"{desc}.read() returned {type(data).__name__}, not bytes; open it with 'rb'.")
    _check_inline_size(len(data), f"{desc} (unseekable or mid-stream; read up to the byte cap)", opts.policy)
    return _decode_bytes(bytes(data), desc, opts)


# --- internals: decoding ------------------------------------------------------------------------------------------


def _decode_bytes(data: bytes, desc: str, opts: _Options) -> Image.Image:
    if not data:
        raise ImageDecodeError(f"{desc} is empty (0 bytes); there is no image to decode.")
    return _decode_stream(io.BytesIO(data), desc, opts)


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
    policy = _DEFAULT_POLICY if policy is None else policy
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
    policy = _DEFAULT_POLICY if policy is None else policy
    Image.init()  # registers every installed plugin (once); Image.OPEN is filled lazily otherwise
    return [f for f in policy.image_formats if f in Image.OPEN]


def decode_frame(
    im: Image.Image, index: int = 0, *, policy: MediaPolicy | None = None, desc: str | None = None
) -> Image.Image:
    """Seek ``im`` (from :func:`open_image`) to frame ``index``, check its size against the policy, decode it.

    Each frame of a multi-page TIFF or animated GIF has its own size, so each is checked before it is decoded.
    Returns ``im`` itself, loaded; errors are typed as in :func:`open_image`.
    """
    policy = _DEFAULT_POLICY if policy is None else policy
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
    _check_dims(width, height, desc, _DEFAULT_POLICY if policy is None else policy)


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


def _decode_stream(fh: Any, desc: str, opts: _Options) -> Image.Image:
    im = open_image(fh, policy=opts.policy, desc=desc)
    decode_frame(im, 0, policy=opts.policy, desc=desc)
    return _finish(im, desc, opts)


def _check_dims(width: int, height: int, desc: str, policy: MediaPolicy) -> None:
    if width <= 0 or height <= 0:
        raise ImageTooSmallError(f"{desc} has size {width}x{height}; an image needs at least 1x1 pixels.")
    if width * height > policy.max_pixels:
        raise ImageTooLargeError(
            f"{desc} is {width}x{height} = {width * height} pixels, over the limit of {policy.max_pixels} "
            "(decompression-bomb guard). Downscale it, or raise MediaPolicy(max_pixels=...) if you trust it."
        )


def _finish(im: Image.Image, desc: str, opts: _Options) -> Image.Image:
    _check_dims(im.width, im.height, desc, opts.policy)
    try:
        im.load()
    except (OSError, SyntaxError, ValueError, EOFError, IndexError) as err:
        raise ImageDecodeError(f"{desc} could not be decoded ({err}); it is probably truncated.") from err
    if opts.exif_transpose:
        im = _apply_exif_orientation(im)
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


def _from_array(arr: np.ndarray, opts: _Options) -> Image.Image:
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
