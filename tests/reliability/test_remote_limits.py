"""The server client (``RemoteInternVL``) against servers that lie: compression bombs, bodies longer than they
claim or endless, event-stream lines that never end, bytes dripped slower than any per-read timeout, headers
dripped, bodies that are not JSON or not a chat completion.

Every case must end in a typed :class:`~internvl_tools.errors.ServerError`, within generous multiples of the
configured limits, with the connection closed and without the client's memory growing past its byte caps. The
server is a raw socket server on 127.0.0.1, so it can send anything; each case is a path prefix of ``base_url``.
"""

from __future__ import annotations

import gzip
import json
import re
import socket
import subprocess
import sys
import threading
import time
import zlib
from collections import defaultdict
from collections.abc import Callable, Iterator

import pytest

from internvl_tools.engines import RemoteInternVL
from internvl_tools.errors import InternVLError, ServerError, ServerRequestError, ServerTimeoutError

DECODED = 128 * 1024 * 1024  # what the compressed bodies below expand to
STOP = threading.Event()
HUNG_UP: defaultdict[str, threading.Event] = defaultdict(threading.Event)  # route -> the client closed on us
SEEN: list[dict[str, str]] = []  # request headers, lower-cased


def _completion(text: str = "hello", usage: object = None) -> bytes:
    body = {
        "id": "x", "object": "chat.completion", "model": "m",
        "choices": [{"index": 0, "message": {"role": "assistant", "content": text}, "finish_reason": "stop"}],
        "usage": usage if usage is not None else {"prompt_tokens": 7, "completion_tokens": 3},
    }  # fmt: skip
    return json.dumps(body).encode()


def _event(text: str, finish: str | None = None) -> bytes:
    chunk = {"object": "chat.completion.chunk", "choices": [{"index": 0, "delta": {"content": text},
                                                              "finish_reason": finish}]}  # fmt: skip
    return b"data: " + json.dumps(chunk).encode() + b"\r\n\r\n"


def _zstd_bomb() -> bytes:
    zstandard = pytest.importorskip("zstandard")
    return zstandard.ZstdCompressor(level=3).compress(bytes(DECODED))


BOMBS: dict[str, Callable[[], bytes]] = {
    "gzip": lambda: gzip.compress(bytes(DECODED), compresslevel=9),
    "deflate": lambda: zlib.compress(bytes(DECODED), 9),
    "zstd": _zstd_bomb,
    "br": lambda: b"\x8b\x00" * 4096,  # refused by name before any decoding: any bytes will do
}
_made: dict[str, bytes] = {}


def _bomb(encoding: str) -> bytes:
    if encoding not in _made:
        _made[encoding] = BOMBS[encoding]()
    return _made[encoding]


def _head(status: str = "200 OK", headers: dict[str, str] | None = None) -> bytes:
    lines = [f"HTTP/1.1 {status}", *(f"{k}: {v}" for k, v in (headers or {}).items()), "Connection: close", "", ""]
    return "\r\n".join(lines).encode("latin-1")


JSON = {"Content-Type": "application/json"}
SSE = {"Content-Type": "text/event-stream"}  # no length: the stream runs until the connection closes


def _forever(conn: socket.socket, route: str, piece: Callable[[], bytes], every: float = 0.0) -> None:
    """Send ``piece()`` again and again until the client hangs up (recorded) or the tests end."""
    try:
        while not STOP.wait(every):
            conn.sendall(piece())
    except OSError:
        HUNG_UP[route].set()


def _respond(conn: socket.socket, route: str) -> None:
    if route.startswith("bomb-"):
        body = _bomb(route[5:])
        headers = {**JSON, "Content-Encoding": route[5:], "Content-Length": str(len(body))}
        conn.sendall(_head(headers=headers) + body)
    elif route == "error-bomb":  # an error answer that is a gzip bomb
        body = _bomb("gzip")
        conn.sendall(_head("400 Bad Request", {**JSON, "Content-Encoding": "gzip", "Content-Length": str(len(body))}))
        conn.sendall(body)
    elif route == "error-endless":  # an error answer that never ends
        conn.sendall(_head("400 Bad Request", JSON) + b'{"error": {"message": "' + b"a" * 1000)
        _forever(conn, route, lambda: b"a" * 65536)
    elif route == "length-lies-short":  # claims 100 bytes, sends an endless JSON document
        conn.sendall(_head(headers={**JSON, "Content-Length": "100"}) + b'{"choices": [{"message": {"content": "')
        _forever(conn, route, lambda: b"a" * 65536)
    elif route == "length-huge":
        conn.sendall(_head(headers={**JSON, "Content-Length": str(10**12)}) + b'{"choices": "')
        _forever(conn, route, lambda: b"a" * 65536)
    elif route == "no-length-endless":  # HTTP/1.0 style: the body runs until the connection closes
        conn.sendall(_head(headers=JSON) + b'{"choices": [{"message": {"content": "')
        _forever(conn, route, lambda: b"a" * 65536)
    elif route == "chunked-endless":
        conn.sendall(_head(headers={**JSON, "Transfer-Encoding": "chunked"}))
        _forever(conn, route, lambda: b"10000\r\n" + b"a" * 0x10000 + b"\r\n")
    elif route == "drip-status":  # not even the status line arrives in time
        data = iter(b"HTTP/1.1 200 OK\r\n" + b"X" * 100_000)
        _forever(conn, route, lambda: bytes([next(data)]), every=0.2)
    elif route == "drip-headers":  # a valid status line, then one header byte every 0.2 s
        conn.sendall(b"HTTP/1.1 200 OK\r\nX-Slow: ")
        _forever(conn, route, lambda: b"a", every=0.2)
    elif route == "drip-body":  # a JSON answer one byte every 0.2 s
        conn.sendall(_head(headers={**JSON, "Content-Length": "100000"}) + b'{"choices": "')
        _forever(conn, route, lambda: b"a", every=0.2)
    elif route == "silent":  # takes the request, answers nothing, waits for the client to give up
        conn.settimeout(0.2)
        while not STOP.is_set():
            try:
                if conn.recv(1) == b"":
                    HUNG_UP[route].set()
                    return
            except TimeoutError:
                continue
            except OSError:
                HUNG_UP[route].set()
                return
    elif route == "not-json":
        body = b"<html><body>502 Bad Gateway</body></html>"
        conn.sendall(_head(headers={"Content-Type": "text/html", "Content-Length": str(len(body))}) + body)
    elif route == "deep-json":  # valid JSON nesting deeper than any parser's recursion limit
        body = b"[" * 200_000 + b"]" * 200_000
        conn.sendall(_head(headers={**JSON, "Content-Length": str(len(body))}) + body)
    elif route == "wrong-shape":
        conn.sendall(_head(headers={**JSON, "Content-Length": "6"}) + b"[1, 2]")
    elif route == "content-not-text":
        body = json.dumps({"choices": [{"message": {"content": {"a": 1}}}]}).encode()
        conn.sendall(_head(headers={**JSON, "Content-Length": str(len(body))}) + body)
    elif route == "usage-infinite":  # Python's json reads Infinity; int(inf) would raise OverflowError
        body = _completion(usage={"prompt_tokens": float("inf"), "completion_tokens": -3})
        conn.sendall(_head(headers={**JSON, "Content-Length": str(len(body))}) + body)
    elif route == "sse-endless-line":  # one "data:" line that never ends, sent as fast as possible
        conn.sendall(_head(headers=SSE) + b'data: {"choices": [{"delta": {"content": "')
        _forever(conn, route, lambda: b"a" * 65536)
    elif route == "sse-drip":  # an event one byte every 0.2 s: every read succeeds, no event completes
        conn.sendall(_head(headers=SSE) + _event("first"))
        _forever(conn, route, lambda: b"d", every=0.2)
    elif route == "sse-comment-drip":  # keep-alive comments, never an event
        conn.sendall(_head(headers=SSE))
        _forever(conn, route, lambda: b": ping\n\n", every=0.2)
    elif route == "sse-endless-events":  # valid events, fast, for ever
        conn.sendall(_head(headers=SSE))
        _forever(conn, route, lambda: _event("x" * 200) * 256)
    elif route == "sse-bomb":
        conn.sendall(_head(headers={**SSE, "Content-Encoding": "gzip"}) + _bomb("gzip"))
    elif route == "sse-not-an-object":
        conn.sendall(_head(headers=SSE) + b"data: [1, 2]\n\n")
    elif route == "sse-bad-choices":
        conn.sendall(_head(headers=SSE) + b'data: {"choices": "abc"}\n\n')
    elif route == "sse-deep":
        conn.sendall(_head(headers=SSE) + b"data: " + b"[" * 100_000 + b"\n\n")
    elif route == "ok":
        body = _completion("served")
        conn.sendall(_head(headers={**JSON, "Content-Length": str(len(body))}) + body)
    elif route == "sse-ok":  # CRLF line ends split across writes, a comment, usage in a last chunk
        data = _event("hel") + b": comment\r\n\r\n" + _event("lo", "stop") + b'data: {"choices": [], "usage": '
        data += b'{"prompt_tokens": 4, "completion_tokens": 2}}\r\n\r\ndata: [DONE]\r\n\r\n'
        conn.sendall(_head(headers=SSE))
        for i in range(0, len(data), 7):
            conn.sendall(data[i : i + 7])
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
                more = conn.recv(65536)
                if not more:
                    return
                data += more
            head, body = data.split(b"\r\n\r\n", 1)
            lines = head.decode("latin-1").split("\r\n")
            headers = {k.strip().lower(): v.strip() for k, v in (line.split(":", 1) for line in lines[1:])}
            SEEN.append(headers)
            missing = int(headers.get("content-length", 0)) - len(body)
            while missing > 0:
                more = conn.recv(min(missing, 65536))
                if not more:
                    return
                missing -= len(more)
            _respond(conn, lines[0].split(" ")[1].split("/")[1])
        except OSError:
            pass


@pytest.fixture(scope="module")
def liar() -> Iterator[str]:
    for encoding in BOMBS:
        _bomb(encoding)  # built before serving: the server answers at once
    STOP.clear()
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    sock.listen(64)
    threading.Thread(target=_serve, args=(sock,), daemon=True).start()
    yield f"http://127.0.0.1:{sock.getsockname()[1]}"
    STOP.set()
    sock.close()


def _client(liar: str, route: str, **kw: object) -> RemoteInternVL:
    options: dict = {"model": "m", "max_retries": 0, "timeout": 1.0, "total_timeout": 1.0, **kw}
    return RemoteInternVL(f"{liar}/{route}/v1", **options)


def _chat(vlm: RemoteInternVL) -> str:
    return vlm.chat("hi").text


def _stream(vlm: RemoteInternVL) -> str:
    return "".join(vlm.stream("hi"))


def test_the_liar_server_answers_honest_requests_and_is_asked_for_identity(liar: str) -> None:
    SEEN.clear()
    assert _chat(_client(liar, "ok")) == "served"
    stream = _client(liar, "sse-ok").stream("hi")
    assert "".join(stream) == "hello"
    assert stream.result.usage.prompt_tokens == 4 and stream.result.finish_reason == "stop"
    assert [h["accept-encoding"] for h in SEEN] == ["identity", "identity"]


@pytest.mark.parametrize("encoding", list(BOMBS))
def test_compressed_answers_are_refused_by_name(liar: str, encoding: str) -> None:
    with pytest.raises(ServerError, match=f"Content-Encoding '{encoding}'"):
        _chat(_client(liar, f"bomb-{encoding}"))


def test_a_compressed_event_stream_is_refused(liar: str) -> None:
    with pytest.raises(ServerError, match="Content-Encoding 'gzip'"):
        _stream(_client(liar, "sse-bomb"))


# (route, call, client options, error type, message) — the message names the limit and the option to raise.
CASES = [
    ("length-lies-short", _chat, {}, ServerError, "not JSON"),
    ("length-huge", _chat, {"max_response_bytes": 1 << 20}, ServerError, r"max_response_bytes=1,048,576.*Content-Le"),
    ("no-length-endless", _chat, {"max_response_bytes": 1 << 20}, ServerError, "max_response_bytes=1,048,576"),
    ("chunked-endless", _chat, {"max_response_bytes": 1 << 20}, ServerError, "max_response_bytes=1,048,576"),
    ("drip-status", _chat, {"timeout": 5.0}, ServerTimeoutError, "total_timeout=1s"),
    ("drip-headers", _chat, {"timeout": 5.0}, ServerTimeoutError, "total_timeout=1s"),
    ("drip-headers", _stream, {"timeout": 5.0}, ServerTimeoutError, "total_timeout=1s"),
    ("drip-body", _chat, {"timeout": 5.0}, ServerTimeoutError, "total_timeout=1s"),
    ("silent", _chat, {"timeout": 5.0}, ServerTimeoutError, "total_timeout=1s"),
    ("silent", _stream, {"timeout": 5.0}, ServerTimeoutError, "total_timeout=1s"),
    ("not-json", _chat, {}, ServerError, "not JSON.*Bad Gateway"),
    ("deep-json", _chat, {}, ServerError, "not JSON"),
    ("wrong-shape", _chat, {}, ServerError, "not an OpenAI chat completion"),
    ("content-not-text", _chat, {}, ServerError, "not an OpenAI chat completion"),
    ("error-bomb", _chat, {}, ServerRequestError, "HTTP 400"),
    ("error-endless", _chat, {}, ServerRequestError, "HTTP 400"),
    ("sse-endless-line", _stream, {"max_event_bytes": 1 << 16}, ServerError, "max_event_bytes=65,536"),
    ("sse-drip", _stream, {"total_timeout": 5.0}, ServerTimeoutError, r"no complete event for 1s.*after 5 char"),
    ("sse-comment-drip", _stream, {"total_timeout": 5.0}, ServerTimeoutError, "no complete event for 1s"),
    ("sse-endless-events", _stream, {"max_response_bytes": 1 << 20}, ServerError, "max_response_bytes=1,048,576"),
    ("sse-not-an-object", _stream, {}, ServerError, "not a JSON object"),
    ("sse-bad-choices", _stream, {}, ServerError, "malformed choices"),
    ("sse-deep", _stream, {}, ServerError, "malformed stream event"),
]  # fmt: skip


@pytest.mark.parametrize("route, call, options, error, needle", CASES, ids=[f"{c[0]}-{c[1].__name__}" for c in CASES])
def test_every_lie_is_a_typed_error_on_time(liar: str, route: str, call, options: dict, error, needle: str) -> None:
    HUNG_UP[route].clear()
    vlm = _client(liar, route, **options)
    start = time.monotonic()
    with pytest.raises(InternVLError) as info:
        call(vlm)
    elapsed = time.monotonic() - start
    assert type(info.value) is error, repr(info.value)
    assert info.value.__class__.__module__ == "internvl_tools.errors"
    assert re.search(needle, str(info.value)), str(info.value)
    # Limits of 1 s (total_timeout, or timeout between events) end the call well within 6 s.
    assert elapsed < 6, f"{route} took {elapsed:.1f} s"
    vlm.close()
    if route in ("silent", "sse-drip", "sse-comment-drip", "drip-body", "drip-headers", "no-length-endless"):
        assert HUNG_UP[route].wait(5), f"{route}: the client did not close the connection"


def test_usage_the_server_cannot_count_is_zero_not_an_overflow(liar: str) -> None:
    result = _client(liar, "usage-infinite").chat("hi")
    assert result.text == "hello" and result.usage.prompt_tokens == 0 and result.usage.completion_tokens == 0


def test_a_batch_item_with_a_bomb_is_an_error_result(liar: str) -> None:
    results = _client(liar, "bomb-gzip").batch(["a", "b"])
    assert [r.finish_reason for r in results] == ["error", "error"]
    assert all("Content-Encoding" in (r.error or "") for r in results)


def test_total_timeout_defaults_to_twice_timeout_and_is_validated() -> None:
    assert RemoteInternVL("http://127.0.0.1:9", model="m", timeout=7).total_timeout == 14
    assert RemoteInternVL("http://127.0.0.1:9", model="m").max_response_bytes == 64 * 1024 * 1024
    for bad in ({"total_timeout": 0}, {"max_response_bytes": 0}, {"max_event_bytes": -1}):
        with pytest.raises(InternVLError, match=next(iter(bad))):
            RemoteInternVL("http://127.0.0.1:9", model="m", **bad)


_MEMORY_PROBE = r"""
import json, re, sys

def status(key):
    with open("/proc/self/status") as f:
        return int(re.search(key + r":\s+(\d+) kB", f.read()).group(1))
from internvl_tools.engines import RemoteInternVL
from internvl_tools.errors import ServerError
base, cases = sys.argv[1], json.loads(sys.argv[2])
def client(route):
    return RemoteInternVL(f"{base}/{route}/v1", model="m", max_retries=0, timeout=3.0, total_timeout=3.0,
                          max_response_bytes=8 * 1024 * 1024, max_event_bytes=1024 * 1024)
client("ok").chat("hi")  # warm up: imports, first connection
"".join(client("sse-ok").stream("hi"))
with open("/proc/self/clear_refs", "w") as f:  # reset the peak (VmHWM) to the current RSS: imports peaked higher
    f.write("5")
before = status("VmHWM")
errors = []
for route, kind in cases:
    vlm = client(route)
    try:
        vlm.chat("hi") if kind == "chat" else "".join(vlm.stream("hi"))
        errors.append("no error")
    except ServerError as exc:
        errors.append(type(exc).__name__)
    vlm.close()
after = status("VmHWM")
print(json.dumps({"grew_kib": after - before, "errors": errors}))
"""


def test_memory_stays_bounded_by_the_caps_whatever_the_server_sends(liar: str) -> None:
    """Peak RSS growth over every bomb and endless body stays near the caps (8 MiB answers, 1 MiB lines), far
    below the 128 MiB the compressed bodies decode to or the gigabytes an endless body would reach."""
    if not sys.platform.startswith("linux"):
        pytest.skip("reads the peak RSS from /proc")
    cases = [
        ("bomb-gzip", "chat"), ("bomb-deflate", "chat"), ("bomb-zstd", "chat"), ("error-bomb", "chat"),
        ("error-endless", "chat"), ("no-length-endless", "chat"), ("chunked-endless", "chat"),
        ("length-lies-short", "chat"), ("sse-bomb", "stream"), ("sse-endless-line", "stream"),
        ("sse-endless-events", "stream"),
    ]  # fmt: skip
    refused = {"error-bomb": "ServerRequestError", "error-endless": "ServerRequestError"}
    started = time.monotonic()
    out = subprocess.run([sys.executable, "-c", _MEMORY_PROBE, liar, json.dumps(cases)], capture_output=True,
                         text=True, timeout=120, check=True)  # fmt: skip
    report = json.loads(out.stdout.strip().splitlines()[-1])
    print(f"peak RSS grew {report['grew_kib'] / 1024:.1f} MiB over {len(cases)} cases in "
          f"{time.monotonic() - started:.1f} s")  # fmt: skip
    assert report["errors"] == [refused.get(route, "ServerError") for route, _ in cases], report
    assert report["grew_kib"] < 100 * 1024, report
