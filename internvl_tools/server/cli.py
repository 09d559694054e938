"""The server's command line: :func:`main` checks the options and the API key, loads the model, then serves it
with uvicorn (``internvl-tools serve MODEL ...`` or ``python -m internvl_tools.server MODEL ...``).
"""

from __future__ import annotations

import ipaddress
import logging
import os
import sys

from internvl_tools.constants import API_KEY_ENV, LEGACY_API_KEY_ENVS, MAX_TILES_LIMIT
from internvl_tools.errors import DependencyMissingError, InternVLError
from internvl_tools.server.app import create_app, require_fastapi
from internvl_tools.server.settings import ServerSettings, build_media_policy, build_parser, valid_api_key

__all__ = ["main"]

log = logging.getLogger("internvl_tools.server")


def _is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False


def _api_key(given: str | None) -> tuple[str | None, str]:
    """The key to require and where it came from: ``--api-key``, else the environment
    (:func:`~internvl_tools.engines.remote.api_key_from_env`). A variable that is set but empty comes back as ``""``,
    to be refused: an empty key must not quietly mean "no authentication"."""
    if given is not None:
        return given, "--api-key"
    from internvl_tools.engines.remote import api_key_from_env

    names = (API_KEY_ENV, *LEGACY_API_KEY_ENVS)
    source = next((name for name in names if os.environ.get(name)), API_KEY_ENV)
    if source == API_KEY_ENV and os.environ.get(API_KEY_ENV) == "":
        return "", f"${API_KEY_ENV}"
    return api_key_from_env(), f"${source}"


def main(argv: list[str] | None = None) -> int:
    """Run the server (blocks until interrupted); returns the process exit status.

    >>> main(["--help"])  # doctest: +SKIP
    """
    args = build_parser().parse_args(argv)
    if args.max_tiles is not None and not 1 <= args.max_tiles <= MAX_TILES_LIMIT:
        print(f"error: --max-tiles must be between 1 and {MAX_TILES_LIMIT}, got {args.max_tiles}", file=sys.stderr)
        return 2
    if args.max_batch_size < 1 or args.max_images < 0 or args.max_request_mb <= 0 or args.batch_window_ms < 0:
        print(
            "error: --max-batch-size must be >= 1; --max-images, --max-request-mb, --batch-window-ms >= 0",
            file=sys.stderr,
        )
        return 2
    if (
        args.max_concurrent_fetches < 1
        or args.media_timeout <= 0
        or (args.max_prompt_chars is not None and args.max_prompt_chars < 1)
    ):
        print(
            "error: --max-concurrent-fetches, --media-timeout and --max-prompt-chars must be positive", file=sys.stderr
        )
        return 2
    api_key, source = _api_key(args.api_key)
    if api_key is not None and not valid_api_key(api_key):
        print(
            f"error: {source} is {'empty' if not api_key else 'not printable ASCII without spaces'}; give a real "
            f"key, or leave {source} out (and unset {API_KEY_ENV}) to serve without authentication.",
            file=sys.stderr,
        )
        return 2
    logging.basicConfig(level=args.log_level.upper(), format="%(levelname)s %(name)s: %(message)s")
    try:
        require_fastapi()
        import uvicorn
    except (DependencyMissingError, ImportError) as exc:
        print(f"error: {exc} (pip install 'internvl-tools[server]')", file=sys.stderr)
        return 1
    if not _is_loopback(args.host) and not api_key:
        log.warning(
            "Serving on %s without an API key: anyone who can reach this address can use the model. "
            "Pass --api-key or set %s.",
            args.host,
            API_KEY_ENV,
        )
    name = args.served_model_name or args.model
    settings = ServerSettings(
        model_name=name,
        aliases=tuple({args.model, os.path.basename(os.path.normpath(args.model))} - {name}),
        api_key=api_key,
        batching=args.batching,
        max_batch_size=args.max_batch_size,
        batch_window_ms=args.batch_window_ms,
        allow_remote_images=args.allow_remote_images,
        allow_private_hosts=tuple(args.allow_private_host),
        max_request_bytes=int(args.max_request_mb * 1024 * 1024),
        max_images=args.max_images,
        max_tiles=args.max_tiles,
        media_timeout=args.media_timeout,
        max_prompt_chars=args.max_prompt_chars,
        max_concurrent_fetches=args.max_concurrent_fetches,
    )
    from internvl_tools.engines.settings import EngineSettings

    engine = EngineSettings(
        model=args.model,
        device=args.device,
        dtype=args.dtype,
        max_tiles=args.max_tiles,
        trust_remote_code=args.trust_remote_code,
        media_policy=build_media_policy(settings),  # the clients' images arrive decoded; nothing else is read
        engine_kwargs={"template": args.template},
    ).build_engine()
    try:
        engine.load()  # load before binding: once the port answers, the model is ready
    except InternVLError as exc:
        print(f"error: could not load {args.model!r}: {exc}", file=sys.stderr)
        return 1
    app = create_app(engine, settings)
    log.info(
        "Serving %r on http://%s:%d/v1 (batching %s)", name, args.host, args.port, "on" if args.batching else "off"
    )
    uvicorn.run(app, host=args.host, port=args.port, log_level=args.log_level, access_log=False)
    return 0
