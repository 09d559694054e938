"""The MCP server's command line: ``internvl-tools mcp MODEL`` or ``python -m internvl_tools.mcp MODEL``.

stdio by default (what desktop clients start); ``--http`` serves streamable HTTP on loopback, with a bearer key from
``--api-key`` or ``$INTERNVL_TOOLS_API_KEY``. ``--server URL`` uses an OpenAI-compatible InternVL server instead of
local weights. Local files are read only inside ``--allowed-dir`` folders.

>>> build_parser().parse_args(["demo", "--allowed-dir", "/tmp"]).allowed_dir
['/tmp']
"""

from __future__ import annotations

import argparse
import ipaddress
import logging
import sys

from internvl_tools.constants import API_KEY_ENV, DEFAULT_MODEL, MAX_TILES_LIMIT
from internvl_tools.errors import InternVLError

__all__ = ["DEFAULT_MCP_PORT", "build_parser", "main"]

DEFAULT_MCP_PORT = 8765
log = logging.getLogger("internvl_tools.mcp")


def build_parser(prog: str = "internvl-tools mcp") -> argparse.ArgumentParser:
    """The argument parser of ``internvl-tools mcp``."""
    parser = argparse.ArgumentParser(
        prog=prog,
        description="Serve InternVL's vision and document tools (ask, locate, OCR, extract, describe a region) over "
        "the Model Context Protocol: stdio by default, streamable HTTP with --http.",
        epilog=f"examples:\n  {prog} demo --allowed-dir ~/scans\n  {prog} OpenGVLab/InternVL3-1B-hf --http --port "
        f"{DEFAULT_MCP_PORT} --allowed-dir ./docs\n  {prog} --server http://127.0.0.1:23333/v1 --allowed-dir .",
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument(
        "model",
        nargs="?",
        default=DEFAULT_MODEL,
        metavar="MODEL",
        help="hub id, local checkpoint directory, 'demo' or 'tiny'",
    )
    parser.add_argument(
        "--server",
        default=None,
        metavar="URL",
        help="use an OpenAI-compatible InternVL server (internvl-tools serve, vLLM, LMDeploy)",
    )
    parser.add_argument(
        "--allowed-dir",
        action="append",
        default=[],
        metavar="DIR",
        help="a folder the tools may read (relative paths only; repeatable; none: inline images only)",
    )
    parser.add_argument("--allow-remote-urls", action="store_true", help="let tools fetch public http(s) URLs")
    parser.add_argument(
        "--allow-private-host",
        action="append",
        default=[],
        metavar="HOST",
        help="exempt a host or network from the private-address refusal (with --allow-remote-urls)",
    )
    parser.add_argument("--max-input-mb", type=float, default=20.0, help="largest file or inline image (default 20)")
    parser.add_argument("--max-pages", type=int, default=20, help="most pages one OCR call reads (default 20)")
    parser.add_argument("--max-prompt-chars", type=int, default=4000, help="longest question (default 4000)")
    parser.add_argument("--max-new-tokens", type=int, default=1024, help="most new tokens per answer (default 1024)")
    parser.add_argument("--http", action="store_true", help="serve streamable HTTP instead of stdio")
    parser.add_argument("--host", default="127.0.0.1", help="address for --http (default: loopback only)")
    parser.add_argument("--port", type=int, default=DEFAULT_MCP_PORT, help=f"port for --http ({DEFAULT_MCP_PORT})")
    parser.add_argument(
        "--api-key",
        default=None,
        help=f"with --http, require 'Authorization: Bearer KEY' (default: ${API_KEY_ENV} if set)",
    )
    parser.add_argument("--device", default="auto", help="auto, cpu, cuda:0, ...")
    parser.add_argument("--dtype", default="auto", help="auto, bfloat16, float16, float32")
    parser.add_argument("--max-tiles", type=int, default=None, help=f"tile budget per image, 1 to {MAX_TILES_LIMIT}")
    parser.add_argument("--log-level", default="warning", choices=["debug", "info", "warning", "error"])
    return parser


def _is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False


def _fail(message: str, code: int = 2) -> int:
    print(f"internvl-tools mcp: error: {message}", file=sys.stderr, flush=True)
    return code


def main(argv: list[str] | None = None) -> int:
    """Run the MCP server (blocks until the client disconnects or it is interrupted); the exit status."""
    try:
        args = build_parser().parse_args(argv)
    except SystemExit as exc:  # --help exits 0, usage errors 2
        return exc.code if isinstance(exc.code, int) else 2
    logging.basicConfig(level=args.log_level.upper(), stream=sys.stderr, format="%(levelname)s %(name)s: %(message)s")
    from internvl_tools.engines.remote import api_key_from_env
    from internvl_tools.engines.settings import EngineSettings
    from internvl_tools.mcp.app import create_server, http_app, require_mcp, run_stdio
    from internvl_tools.mcp.tools import ToolPolicy
    from internvl_tools.server.settings import valid_api_key

    try:
        require_mcp()
        policy = ToolPolicy(
            allowed_dirs=tuple(args.allowed_dir),
            allow_remote_urls=args.allow_remote_urls,
            allow_private_hosts=tuple(args.allow_private_host),
            max_input_bytes=int(args.max_input_mb * 1024 * 1024),
            max_pages=args.max_pages,
            max_prompt_chars=args.max_prompt_chars,
            max_new_tokens=args.max_new_tokens,
        )
        settings = EngineSettings(
            model=args.model,
            base_url=args.server,
            device=args.device,
            dtype=args.dtype,
            max_tiles=args.max_tiles,
            media_policy=policy.media_policy(),
        )
    except (InternVLError, ValueError) as exc:
        return _fail(" ".join(str(exc).split()), 5 if "pip install" in str(exc) else 2)
    api_key = args.api_key if args.api_key is not None else api_key_from_env()
    if args.http and api_key is not None and not valid_api_key(api_key):
        return _fail(
            f"the API key is empty or not printable ASCII without spaces; give a real key or unset {API_KEY_ENV}."
        )
    if args.http and not _is_loopback(args.host) and not api_key:
        log.warning(
            "Serving MCP on %s without an API key: anyone who can reach it can use the tools. Pass --api-key.",
            args.host,
        )
    try:
        engine = settings.build_engine(server_model=None if args.model == DEFAULT_MODEL else args.model)
        load = getattr(engine, "load", None)
        if callable(load) and not args.server:
            load()  # before serving: once the client can call, the model is ready
    except InternVLError as exc:
        return _fail(f"could not load {args.server or args.model!r}: {' '.join(str(exc).split())}", 3)
    server = create_server(engine, policy, host=args.host, port=args.port)
    if args.http:
        import uvicorn

        log.info("MCP over streamable HTTP on http://%s:%d/mcp", args.host, args.port)
        uvicorn.run(
            http_app(server, api_key if args.http else None),
            host=args.host,
            port=args.port,
            log_level=args.log_level,
            access_log=False,
        )
        return 0
    import anyio

    anyio.run(run_stdio, server)
    return 0
