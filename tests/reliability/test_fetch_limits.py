"""The URL fetcher against servers that lie: compression bombs, headers dripped a byte at a time, redirects
without a Location, bodies shorter or longer than they claim, garbage instead of HTTP.

Every case must end in a typed error (``FetchError`` / ``URLBlockedError``), within the policy's timeout plus a
generous margin, and without the fetcher's memory growing past its byte cap. The server is a raw socket server on
127.0.0.1 (so it can send anything), reached through the ``allow_private_hosts`` opt-in.
"""

from __future__ import annotations

import gzip
import json
import socket
import subprocess
import sys
import threading
import time
import zlib
from collections.abc import Callable, Iterator

import pytest

from internvl_tools.errors import FetchError, InternVLError, MediaPolicyError
from internvl_tools.media import MediaPolicy
from internvl_tools.media.fetch import fetch_bytes

DECODED = 128 * 1024 * 1024  # what the compressed bodies below expand to
STOP = threading.Event()


def _gzip_bomb() -> bytes:
    return gzip.compress(bytes(DECODED), compresslevel=9)


def _deflate_bomb() -> bytes:
    return zlib.compress(bytes(DECODED), 9)


def _zstd_bomb() -> bytes:
    zstandard = pytest.importorskip("zstandard")  # what httpx used to decode with, whole chunks at a time
    return zstandard.ZstdCompressor(level=3).compress(bytes(DECODED))


BOMBS: dict[str, Callable[[], bytes]] = {"gzip": _gzip_bomb, "deflate": _deflate_bomb, "zstd": _zstd_bomb}
_made: dict[str, bytes] = {}


def _bomb(encoding: str) -> bytes:
    if encoding not in _made:
        _made[encoding] = BOMBS[encoding]() if encoding in BOMBS else b"\x8b\x00" * 4096  # br: any bytes will do
    return _made[encoding]


def _head(status: str = "200 OK", headers: dict[str, str] | None = None) -> bytes:
    lines = [f"HTTP/1.1 {status}", *(f"{k}: {v}" for k, v in (headers or {}).items()), "Connection: close", "", ""]
    return "\r\n".join(lines).encode("latin-1")


def _drip(conn: socket.socket, data: bytes, every: float) -> None:
    for i in range(len(data)):
        if STOP.wait(every):
            return
        conn.sendall(data[i : i + 1])


def _respond(conn: socket.socket, path: str) -> None:
    if path.startswith("/bomb/"):
        encoding = path.rsplit("/", 1)[1]
        body = _bomb(encoding)
        conn.sendall(
            _head(headers={"Content-Type": "image/png", "Content-Encoding": encoding, "Content-Length": str(len(body))})
            + body
        )
    elif path == "/encoding-stacked":
        conn.sendall(_head(headers={"Content-Encoding": "identity, gzip", "Content-Length": "4"}) + b"abcd")
    elif path == "/drip-status":  # not even the status line arrives in time
        _drip(conn, b"HTTP/1.1 200 OK\r\n" + b"X" * 100_000, 0.2)
    elif path == "/drip-headers":  # a valid status line, then one header byte every 0.2 s for ever
        conn.sendall(b"HTTP/1.1 200 OK\r\n")
        _drip(conn, b"X-Slow: " + b"a" * 100_000, 0.2)
    elif path == "/drip-body":
        conn.sendall(_head(headers={"Content-Length": "100000"}))
        _drip(conn, b"a" * 100_000, 0.2)
    elif path == "/endless-100-continue":
        while not STOP.wait(0.2):
            conn.sendall(b"HTTP/1.1 100 Continue\r\n\r\n")
    elif path == "/redirect-no-location":
        conn.sendall(_head("302 Found", {"Content-Length": "0"}))
    elif path == "/redirect-empty-location":
        conn.sendall(_head("301 Moved", {"Location": "", "Content-Length": "0"}))
    elif path == "/redirect-bad-location":
        conn.sendall(_head("302 Found", {"Location": "http://[::1", "Content-Length": "0"}))
    elif path == "/redirect-two-locations":
        conn.sendall(b"HTTP/1.1 302 Found\r\nLocation: /a\r\nLocation: /b\r\nContent-Length: 0\r\n\r\n")
    elif path == "/redirect-loop":
        conn.sendall(_head("307 Temporary Redirect", {"Location": "/redirect-loop", "Content-Length": "0"}))
    elif path == "/length-longer-than-body":
        conn.sendall(_head(headers={"Content-Length": "1000"}) + b"only ten b")
    elif path == "/length-huge":
        conn.sendall(_head(headers={"Content-Length": str(10**12)}) + b"a" * 1000)
    elif path == "/length-negative":
        conn.sendall(_head(headers={"Content-Length": "-5"}) + b"abc")
    elif path == "/length-garbage":
        conn.sendall(_head(headers={"Content-Length": "12abc"}) + b"abc")
    elif path == "/chunked-endless":
        conn.sendall(_head(headers={"Transfer-Encoding": "chunked"}))
        chunk = b"10000\r\n" + b"a" * 0x10000 + b"\r\n"
        while not STOP.is_set():
            conn.sendall(chunk)
    elif path == "/transfer-gzip":
        conn.sendall(_head(headers={"Transfer-Encoding": "gzip"}) + _bomb("gzip")[:1000])
    elif path == "/no-length-endless":  # HTTP/1.0 style: the body runs until the connection closes
        conn.sendall(_head())
        while not STOP.is_set():
            conn.sendall(b"a" * 65536)
    elif path == "/huge-header":
        conn.sendall(b"HTTP/1.1 200 OK\r\nX-Big: " + b"a" * 2_000_000 + b"\r\n\r\n")
    elif path == "/not-http":
        conn.sendall(b"SSH-2.0-OpenSSH_9.0\r\n" * 10)
    elif path == "/close":
        pass
    elif path == "/ok":
        conn.sendall(_head(headers={"Content-Length": "5"}) + b"hello")
    else:
        conn.sendall(_head("404 Not Found", {"Content-Length": "0"}))


def _serve(sock: socket.socket) -> None:
    while not STOP.is_set():
        try:
            conn, _ = sock.accept()
        except OSError:
            return
        threading.Thread(target=_handle, args=(conn,), daemon=True).start()


def _handle(conn: socket.socket) -> None:
    with conn:
        try:
            data = b""
            while b"\r\n\r\n" not in data:
                more = conn.recv(4096)
                if not more:
                    return
                data += more
            path = data.split(b" ", 2)[1].decode()
            _respond(conn, path)
        except OSError:
            pass


@pytest.fixture(scope="module")
def liar() -> Iterator[str]:
    for encoding in ("gzip", "deflate", "zstd", "br"):
        _bomb(encoding)  # built before serving: the server answers at once
    STOP.clear()
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    sock.listen(64)
    threading.Thread(target=_serve, args=(sock,), daemon=True).start()
    yield f"http://127.0.0.1:{sock.getsockname()[1]}"
    STOP.set()
    sock.close()


def _policy(**overrides: object) -> MediaPolicy:
    return MediaPolicy(
        **{
            "allow_remote": True,
            "allow_private_hosts": frozenset({"127.0.0.1"}),
            "timeout": 1.0,
            "max_bytes": 1024 * 1024,
            **overrides,
        }
    )


def test_the_liar_server_answers_honest_requests(liar: str) -> None:
    assert fetch_bytes(f"{liar}/ok", _policy()) == b"hello"


@pytest.mark.parametrize("encoding", ["gzip", "deflate", "zstd", "br"])
def test_compressed_bodies_are_refused_by_name(liar: str, encoding: str) -> None:
    with pytest.raises(FetchError, match=f"Content-Encoding '{encoding}'"):
        fetch_bytes(f"{liar}/bomb/{encoding}", _policy(max_bytes=64 * 1024 * 1024))


def test_a_stacked_encoding_is_refused(liar: str) -> None:
    with pytest.raises(FetchError, match="Content-Encoding 'identity, gzip'"):
        fetch_bytes(f"{liar}/encoding-stacked", _policy())


_ROUTES = [
    "/drip-status", "/drip-headers", "/drip-body", "/endless-100-continue", "/redirect-no-location",
    "/redirect-empty-location", "/redirect-bad-location", "/redirect-two-locations", "/redirect-loop",
    "/length-longer-than-body", "/length-huge", "/length-negative", "/length-garbage", "/chunked-endless",
    "/transfer-gzip", "/no-length-endless", "/huge-header", "/not-http", "/close",
]  # fmt: skip


@pytest.mark.parametrize("route", _ROUTES)
def test_every_lie_is_a_typed_error_within_the_deadline(liar: str, route: str) -> None:
    start = time.monotonic()
    with pytest.raises(InternVLError) as info:
        fetch_bytes(liar + route, _policy(timeout=1.0))
    elapsed = time.monotonic() - start
    assert isinstance(info.value, (FetchError, MediaPolicyError)), repr(info.value)
    assert elapsed < 5, f"{route} took {elapsed:.1f} s with timeout=1"
    assert liar.split("//")[1] in str(info.value) or route in str(info.value) or "redirect" in str(info.value)


@pytest.mark.parametrize("route, needle", [
    ("/drip-status", "timed out"), ("/drip-headers", "timed out"), ("/drip-body", "timed out|took longer"),
    ("/endless-100-continue", "timed out"), ("/redirect-no-location", "no Location"),
    ("/redirect-two-locations", "2 Location"), ("/redirect-loop", "redirected more than"),
    ("/length-huge", "Content-Length: 1000000000000"), ("/chunked-endless", "max_bytes"),
    ("/no-length-endless", "max_bytes"),
])  # fmt: skip
def test_errors_say_what_went_wrong(liar: str, route: str, needle: str) -> None:
    with pytest.raises(FetchError, match=needle):
        fetch_bytes(liar + route, _policy(timeout=1.0))


_MEMORY_PROBE = r"""
import json, re, sys

def status(key):
    with open("/proc/self/status") as f:
        return int(re.search(key + r":\s+(\d+) kB", f.read()).group(1))
from internvl_tools.media.fetch import fetch_bytes
from internvl_tools.media import MediaPolicy
from internvl_tools.errors import FetchError
base, routes = sys.argv[1], json.loads(sys.argv[2])
policy = MediaPolicy(allow_remote=True, allow_private_hosts=frozenset({"127.0.0.1"}), timeout=3.0,
                     max_bytes=8 * 1024 * 1024)
fetch_bytes(base + "/ok", policy)  # warm up: imports, first connection
with open("/proc/self/clear_refs", "w") as f:  # reset the peak (VmHWM) to the current RSS: imports peaked higher
    f.write("5")
before = status("VmHWM")
errors = []
for route in routes:
    try:
        fetch_bytes(base + route, policy)
        errors.append("no error")
    except FetchError as exc:
        errors.append(type(exc).__name__)
after = status("VmHWM")
print(json.dumps({"grew_kib": after - before, "errors": errors}))
"""


def test_memory_stays_bounded_by_max_bytes_whatever_the_server_sends(liar: str) -> None:
    if not sys.platform.startswith("linux"):
        pytest.skip("reads the peak RSS from /proc")
    """Peak RSS growth over every bomb and endless body stays near max_bytes (8 MiB), far below the 128 MiB the
    compressed bodies decode to (before the fix, a 24 KB zstd body took a process from 37 to 1,594 MiB)."""
    routes = ["/bomb/gzip", "/bomb/deflate", "/bomb/zstd", "/chunked-endless", "/no-length-endless", "/huge-header"]
    out = subprocess.run([sys.executable, "-c", _MEMORY_PROBE, liar, json.dumps(routes)], capture_output=True,
                         text=True, timeout=120, check=True)  # fmt: skip
    report = json.loads(out.stdout.strip().splitlines()[-1])
    assert report["errors"] == ["FetchError"] * len(routes)
    print(report)
    assert report["grew_kib"] < 48 * 1024, report  # 8 MiB cap, a few copies of it at most, never 128 MiB
