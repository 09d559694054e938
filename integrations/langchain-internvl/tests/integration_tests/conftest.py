"""Integration set-up: a tiny random InternVL (offline), and the standard tests' downloads served locally."""

from __future__ import annotations

import http.server
import threading
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from tests.conftest import make_png, make_scanned_pdf

PNG = make_png((96, 64))
PDF = make_scanned_pdf(1)


def tiny_path() -> str:
    """The core's tiny random checkpoint (built once per machine, cached on disk)."""
    from internvl_tools import tiny_checkpoint

    return str(tiny_checkpoint("qwen2", "native"))


@pytest.fixture(autouse=True)
def _offline_fixture_downloads(monkeypatch: pytest.MonkeyPatch) -> None:
    """langchain-tests fetch a PNG (GitHub) and a PDF (w3.org) with httpx.get: answer those from memory."""

    def fake_get(url: str, *args: object, **kwargs: object) -> httpx.Response:
        body, kind = (PDF, "application/pdf") if str(url).endswith(".pdf") else (PNG, "image/png")
        return httpx.Response(200, content=body, headers={"content-type": kind}, request=httpx.Request("GET", url))

    monkeypatch.setattr(httpx, "get", fake_get)


class _Handler(http.server.BaseHTTPRequestHandler):
    def do_GET(self) -> None:
        body = PNG if self.path.endswith(".png") else b""
        self.send_response(200 if body else 404)
        self.send_header("Content-Type", "image/png")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args: object) -> None:
        pass


@pytest.fixture(scope="session")
def image_server() -> Iterator[str]:
    """A local HTTP server serving a PNG at /image.png (reachable only with allow_private_hosts)."""
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), _Handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_address[1]}"
    server.shutdown()


@pytest.fixture(scope="session")
def tiny() -> str:
    return tiny_path()


@pytest.fixture
def scratch(media_dir: Path) -> Path:
    return media_dir
