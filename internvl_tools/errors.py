"""The exception hierarchy of internvl-tools.

Every error the package raises on purpose derives from :class:`InternVLError`, so callers can catch the whole
family with one ``except``. Errors about bad input also derive from :class:`ValueError` (and security refusals
from :class:`PermissionError`), so code written against the standard exceptions keeps working. Each message names
the input that failed and says how to fix it.

The tree (second base classes in brackets)::

    InternVLError
    ├── MediaError [ValueError] .................. an image, video or document could not be loaded or was refused
    │   ├── ImageDecodeError
    │   ├── ImageTooLargeError
    │   ├── ImageTooSmallError
    │   ├── UnsupportedSourceError [TypeError]
    │   ├── MediaNotFoundError [FileNotFoundError]
    │   ├── MediaPolicyError [PermissionError] ... the media policy refused the source
    │   │   ├── RemoteFetchDisabledError
    │   │   ├── URLBlockedError
    │   │   └── PathNotAllowedError
    │   ├── FetchError
    │   ├── VideoError
    │   └── DocumentError
    │       ├── PasswordError [PermissionError]
    │       ├── PageSelectionError
    │       └── PageRenderError
    ├── TemplateError [ValueError]
    ├── ConfigError [ValueError]
    ├── ModelLoadError
    ├── DependencyMissingError [ImportError]
    ├── ContextLengthError [ValueError]
    ├── GenerationError
    │   └── RepetitionError ...................... the answer fell into a loop, also when read again
    ├── StructuredOutputError [ValueError]
    └── ServerError .............................. an OpenAI-compatible server answered with an error
        ├── ServerRequestError [ValueError]
        │   └── ServerAuthError [PermissionError]
        ├── ServerTimeoutError [TimeoutError]
        └── ServerConnectionError [ConnectionError]

>>> from internvl_tools.errors import InternVLError, ImageDecodeError
>>> issubclass(ImageDecodeError, InternVLError)
True
"""

from __future__ import annotations

__all__ = [
    "ConfigError",
    "ContextLengthError",
    "DependencyMissingError",
    "DocumentError",
    "FetchError",
    "GenerationError",
    "ImageDecodeError",
    "ImageTooLargeError",
    "ImageTooSmallError",
    "InternVLError",
    "MediaError",
    "MediaNotFoundError",
    "MediaPolicyError",
    "ModelLoadError",
    "PageRenderError",
    "PageSelectionError",
    "PasswordError",
    "PathNotAllowedError",
    "RemoteFetchDisabledError",
    "RepetitionError",
    "ServerAuthError",
    "ServerConnectionError",
    "ServerError",
    "ServerRequestError",
    "ServerTimeoutError",
    "StructuredOutputError",
    "TemplateError",
    "URLBlockedError",
    "UnsupportedSourceError",
    "VideoError",
]


class InternVLError(Exception):
    """Root of every error raised by internvl-tools."""


# --- media -----------------------------------------------------------------------------------------------------


class MediaError(InternVLError, ValueError):
    """An image, video or document could not be loaded or was refused."""


class ImageDecodeError(MediaError):
    """The bytes are not a decodable image (truncated, empty, or not an image at all)."""


class ImageTooLargeError(MediaError):
    """The image exceeds the pixel or byte limit (decompression-bomb guard)."""


class ImageTooSmallError(MediaError):
    """The image has a zero dimension or is below the minimum size."""


class UnsupportedSourceError(MediaError, TypeError):
    """The object given as an image is of a type or form we cannot read."""


class MediaNotFoundError(MediaError, FileNotFoundError):
    """An image path (or ``file://`` URI) names no readable regular file."""


class MediaPolicyError(MediaError, PermissionError):
    """The media policy refused the source (URL fetching off, blocked address, path outside allowed dirs)."""


class RemoteFetchDisabledError(MediaPolicyError):
    """An http(s) URL was given but remote fetching is off (the default)."""


class URLBlockedError(MediaPolicyError):
    """The URL resolves to a private, loopback, link-local, multicast or reserved address, or its scheme is refused."""


class PathNotAllowedError(MediaPolicyError):
    """A file path lies outside the allowed directories."""


class FetchError(MediaError):
    """Fetching a remote URL failed (timeout, HTTP error, too many bytes)."""


class VideoError(MediaError):
    """A video could not be decoded or sampled."""


class DocumentError(MediaError):
    """A PDF or multi-page image could not be opened, or a document option is invalid (see the subclasses)."""


class PasswordError(DocumentError, PermissionError):
    """The PDF is encrypted and no password, or a wrong one, was given; pass ``password=...``."""


class PageSelectionError(DocumentError):
    """A page selection such as ``"1-3,7"`` is malformed or names pages the document does not have."""


class PageRenderError(DocumentError):
    """One page could not be loaded or rendered (the rest of the document is unaffected)."""


# --- prompts / config / model ------------------------------------------------------------------------------------


class TemplateError(InternVLError, ValueError):
    """Unknown conversation template, or a prompt that does not fit the template's rules."""


class ConfigError(InternVLError, ValueError):
    """A checkpoint config or an option is invalid or unsupported."""


class ModelLoadError(InternVLError):
    """Weights or tokenizer could not be loaded (missing files, hub unreachable, mapping failure)."""


class DependencyMissingError(InternVLError, ImportError):
    """An optional dependency needed for this feature is not installed; the message names the pip extra."""


class ContextLengthError(InternVLError, ValueError):
    """The prompt (text plus image tokens) does not fit the model's context window."""


class GenerationError(InternVLError):
    """Generation failed inside the model."""


class RepetitionError(GenerationError):
    """The answer fell into a degenerate loop ("the the the ...", a row repeated) and did so again when read once
    more with a repetition penalty; a page recorded with it was not read (resume retries it)."""


class StructuredOutputError(InternVLError, ValueError):
    """Constrained output could not be produced or did not validate against the schema."""


# --- OpenAI-compatible servers (internvl_tools.engines.remote) ---------------------------------------------


class ServerError(InternVLError):
    """An OpenAI-compatible server answered with an error (``status_code`` set) or broke the protocol."""

    def __init__(self, message: str, status_code: int | None = None) -> None:
        super().__init__(message)
        self.status_code = status_code


class ServerRequestError(ServerError, ValueError):
    """The server refused the request (HTTP 4xx): fix the request; retrying will not help."""


class ServerAuthError(ServerRequestError, PermissionError):
    """HTTP 401/403: the API key is missing or wrong."""


class ServerTimeoutError(ServerError, TimeoutError):
    """The server did not answer (or stopped sending) within the timeout."""


class ServerConnectionError(ServerError, ConnectionError):
    """The server could not be reached, or closed the connection mid-answer."""
