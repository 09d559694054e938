"""What the media layer may read, and how inputs are named in errors: :class:`MediaPolicy` and its helpers.

Every other module of :mod:`internvl_tools.media` takes a :class:`MediaPolicy`; this module imports none of them.
Besides its ``__all__`` it holds the small shared pieces the sibling modules use (``DEFAULT_POLICY``,
``MAX_PATH_CHARS``, ``shorten`` and the patterns that recognise URLs and base64), so each is written once.

>>> MediaPolicy(max_pixels=100).max_pixels
100
"""

from __future__ import annotations

import ipaddress
import os
import re
import urllib.parse
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image

from internvl_tools.errors import ConfigError

__all__ = ["DEFAULT_IMAGE_FORMATS", "MediaPolicy", "describe_source", "redact_url"]

#: Raster formats PIL may open. Formats that shell out (EPS runs Ghostscript) or are rarely images (FITS, GRIB,
#: MPEG, WMF, ...) are left out so a hostile file cannot reach those decoders.
DEFAULT_IMAGE_FORMATS: tuple[str, ...] = (
    "PNG", "JPEG", "MPO", "GIF", "BMP", "DIB", "TIFF", "WEBP", "PPM", "ICO", "TGA", "JPEG2000", "QOI", "PCX",
    "SGI", "AVIF", "HEIF",
)  # fmt: skip

#: Longest path (characters, or bytes once encoded) taken as a path; longer strings are data, not names.
MAX_PATH_CHARS = 4096
#: A URL's scheme (``http://``, ``file://``, ...) at the start of a string.
URL_SCHEME_RE = re.compile(r"^([A-Za-z][A-Za-z0-9+.\-]*)://")
#: A string of base64 (standard or URL-safe alphabet) once whitespace is removed.
BASE64_RE = re.compile(r"^[A-Za-z0-9+/_\-]+={0,2}$")
#: Runs of whitespace (removed from base64 before it is decoded).
WHITESPACE_RE = re.compile(r"\s+")

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


#: The policy used where a caller passes none.
DEFAULT_POLICY = MediaPolicy()


# --- describing inputs in errors --------------------------------------------------------------------------------


def redact_url(url: str) -> str:
    """``url`` fit for an error message: credentials replaced by ``***``, long URLs shortened.

    >>> redact_url("https://user:hunter2@example.com/a.png")
    'https://***@example.com/a.png'
    """
    try:
        parts = urllib.parse.urlsplit(url)
    except ValueError:
        return shorten(url)
    if parts.username is not None or parts.password is not None:
        netloc = "***@" + parts.netloc.rsplit("@", 1)[-1]
        url = urllib.parse.urlunsplit(parts._replace(netloc=netloc))
    return shorten(url)


def shorten(text: str, limit: int = 120) -> str:
    """``text`` cut to about ``limit`` characters for a message, keeping its start and its end."""
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
        if URL_SCHEME_RE.match(source.strip()):
            return f"URL {redact_url(source.strip())!r}"
        if len(source) > 200 and BASE64_RE.match(WHITESPACE_RE.sub("", source[:4000])):
            return f"base64 string ({len(source)} chars, starts {source[:20] + '…'!r})"
        return f"path {shorten(source)!r}" if len(source) <= MAX_PATH_CHARS else f"string ({len(source)} chars)"
    if isinstance(source, (bytes, bytearray)):
        return f"{type(source).__name__} ({len(source)} bytes)"
    if isinstance(source, memoryview):
        return f"memoryview ({source.nbytes} bytes)"
    if isinstance(source, os.PathLike):
        return f"path {shorten(os.fspath(source))!r}"  # type: ignore[arg-type]
    if isinstance(source, Image.Image):
        return f"PIL image (mode {source.mode}, {source.width}x{source.height})"
    if isinstance(source, np.ndarray):
        return f"numpy array (shape {source.shape}, dtype {source.dtype})"
    if hasattr(source, "read"):
        name = getattr(source, "name", None)
        return f"file object {name!r}" if isinstance(name, str) else f"file object ({type(source).__name__})"
    return f"{type(source).__module__}.{type(source).__qualname__} object"
