"""How ``internvl-tools serve`` is configured: :class:`ServerSettings`, its command line (:func:`build_parser`) and
the media policy for clients' images.

>>> build_parser().parse_args(["tiny"]).port
23333
"""

from __future__ import annotations

import argparse
from dataclasses import dataclass, field
from typing import Any

from internvl_tools.constants import API_KEY_ENV, MAX_TILES_LIMIT
from internvl_tools.errors import ConfigError
from internvl_tools.media.policy import MediaPolicy

__all__ = [
    "CHARS_PER_TOKEN_CEILING",
    "DEFAULT_PORT",
    "ServerSettings",
    "build_media_policy",
    "build_parser",
    "valid_api_key",
]

DEFAULT_PORT = 23333
# No tokenizer we serve packs more than this many characters into one token on any realistic text, so a prompt
# longer than context_length * CHARS_PER_TOKEN_CEILING characters cannot fit and is refused before it is
# tokenized (tokenizing tens of megabytes takes seconds and gigabytes). --max-prompt-chars overrides it.
CHARS_PER_TOKEN_CEILING = 32


@dataclass
class ServerSettings:
    """How the server behaves; ``main`` fills it from the command line.

    ``max_tiles`` caps the tiles of one image (a request's per-image ``max_tiles`` may only lower it).
    ``max_prompt_chars`` caps the characters of a request's text (default: the model's context length times
    :data:`CHARS_PER_TOKEN_CEILING`). ``max_concurrent_fetches`` bounds the requests fetching remote images at
    once; more are answered 503 until one finishes.
    """

    model_name: str
    aliases: tuple[str, ...] = ()
    api_key: str | None = None
    batching: bool = True
    max_batch_size: int = 8
    batch_window_ms: float = 5.0
    allow_remote_images: bool = False
    allow_private_hosts: tuple[str, ...] = ()
    max_request_bytes: int = 20 * 1024 * 1024
    max_images: int = 8
    max_tiles: int | None = None
    media_timeout: float = 10.0
    max_prompt_chars: int | None = None
    max_concurrent_fetches: int = 4
    extra: dict[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        if self.api_key is not None and not valid_api_key(self.api_key):
            raise ConfigError(
                "The API key is empty or holds whitespace or non-ASCII characters; pass a printable ASCII key, "
                "or no key at all to serve without authentication."
            )
        if self.max_concurrent_fetches < 1:
            raise ConfigError(f"max_concurrent_fetches must be >= 1, got {self.max_concurrent_fetches}.")
        if self.max_prompt_chars is not None and self.max_prompt_chars < 1:
            raise ConfigError(f"max_prompt_chars must be >= 1, got {self.max_prompt_chars}.")


def valid_api_key(key: str) -> bool:
    """Whether ``key`` can be an API key: not empty, printable ASCII, no whitespace (an empty key must never
    quietly mean "no authentication").

    >>> valid_api_key("k-123"), valid_api_key(""), valid_api_key("a key")
    (True, False, False)
    """
    return bool(key) and all(33 <= ord(c) <= 126 for c in key)


def build_media_policy(settings: ServerSettings) -> MediaPolicy:
    """The :class:`~internvl_tools.media.MediaPolicy` for clients' images: never the server's own files.

    >>> build_media_policy(ServerSettings(model_name="tiny")).allow_local_files
    False
    """
    return MediaPolicy(
        allow_remote=settings.allow_remote_images,
        allow_local_files=False,
        max_bytes=settings.max_request_bytes,
        timeout=settings.media_timeout,
        allow_private_hosts=frozenset(settings.allow_private_hosts),
    )


def build_parser(prog: str = "internvl-tools serve") -> argparse.ArgumentParser:
    """The argument parser of ``internvl-tools serve`` / ``python -m internvl_tools.server``."""
    parser = argparse.ArgumentParser(
        prog=prog,
        description="Serve an InternVL checkpoint over an OpenAI-compatible API (/v1/models, /v1/chat/completions).",
    )
    parser.add_argument("model", metavar="MODEL", help="hub id, local checkpoint directory, or 'tiny'")
    parser.add_argument("--host", default="127.0.0.1", help="address to bind (default: loopback only)")
    parser.add_argument("--port", type=int, default=DEFAULT_PORT, help=f"port (default {DEFAULT_PORT})")
    parser.add_argument(
        "--api-key", default=None, help=f"require 'Authorization: Bearer KEY' (default: ${API_KEY_ENV} if set)"
    )
    parser.add_argument("--served-model-name", default=None, help="model id reported by /v1/models (default MODEL)")
    parser.add_argument("--device", default="auto", help="auto, cpu, cuda:0, ...")
    parser.add_argument("--dtype", default="auto", help="auto, bfloat16, float16, float32")
    parser.add_argument(
        "--max-tiles",
        type=int,
        default=None,
        help=f"tile budget per request, 1 to {MAX_TILES_LIMIT} (default: the checkpoint's max_dynamic_patch)",
    )
    parser.add_argument("--template", default=None, help="override the conversation template")
    parser.add_argument("--trust-remote-code", action="store_true", help="run the checkpoint's own modeling code")
    parser.add_argument(
        "--no-batching",
        dest="batching",
        action="store_false",
        help="answer requests one at a time instead of batching concurrent ones",
    )
    parser.add_argument("--max-batch-size", type=int, default=8, help="most requests in one batch (default 8)")
    parser.add_argument(
        "--batch-window-ms",
        type=float,
        default=5.0,
        help="how long to wait for more requests to batch with the first one (default 5)",
    )
    parser.add_argument("--max-images", type=int, default=8, help="most images in one request (default 8)")
    parser.add_argument("--max-request-mb", type=float, default=20.0, help="largest request body (default 20 MB)")
    parser.add_argument(
        "--max-prompt-chars",
        type=int,
        default=None,
        help="refuse requests with more text than this, before tokenizing (default: the context "
        f"length times {CHARS_PER_TOKEN_CEILING})",
    )
    parser.add_argument(
        "--media-timeout",
        type=float,
        default=10.0,
        help="seconds for fetching one remote image, redirects included (default 10)",
    )
    parser.add_argument(
        "--max-concurrent-fetches",
        type=int,
        default=4,
        help="requests fetching remote images at once; more are answered 503 (default 4)",
    )
    parser.add_argument(
        "--allow-remote-images",
        action="store_true",
        help="fetch http(s) image URLs (public addresses only, with timeouts and size caps)",
    )
    parser.add_argument(
        "--allow-private-host",
        action="append",
        default=[],
        metavar="HOST",
        help="with --allow-remote-images: also fetch from this private host or network",
    )
    parser.add_argument("--log-level", default="info", choices=["critical", "error", "warning", "info", "debug"])
    return parser
