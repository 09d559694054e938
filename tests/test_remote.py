"""The OpenAI-compatible client backend (`InternVL.from_server` → `RemoteInternVL`) against scripted servers.

Request shaping and answer mapping run over `httpx.MockTransport`; the fault behaviours (429 then success, a slow
server, a server that dies mid-stream, nothing listening) run over real sockets against small fake servers.
"""

from __future__ import annotations

import base64
import io
import json
import os
import signal
import socket
import subprocess
import sys
import textwrap
import threading
import time
from collections.abc import Callable
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import httpx
import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from PIL import Image

from internvl_tools import InternVL
from internvl_tools.engines import remote
from internvl_tools.engines.remote import OpenAIBackend, RemoteInfo, RemoteInternVL
from internvl_tools.errors import (
    ConfigError,
    ContextLengthError,
    ImageTooLargeError,
    ServerAuthError,
    ServerConnectionError,
    ServerError,
    ServerRequestError,
    ServerTimeoutError,
)


def _completion(text: str = "hello", finish: str | None = "stop", usage: dict | None = None) -> dict:
    return {
        "id": "x",
        "object": "chat.completion",
        "model": "m",
        "choices": [{"index": 0, "message": {"role": "assistant", "content": text}, "finish_reason": finish}],
        "usage": usage if usage is not None else {"prompt_tokens": 7, "completion_tokens": 3, "total_tokens": 10},
    }


class Script:
    """A MockTransport handler that records requests and answers from a list (the last answer repeats)."""

    def __init__(self, *answers: httpx.Response | Callable[[httpx.Request], httpx.Response]) -> None:
        self.answers = list(answers)
        self.requests: list[httpx.Request] = []
        self.lock = threading.Lock()

    def __call__(self, request: httpx.Request) -> httpx.Response:
        with self.lock:
            self.requests.append(request)
            answer = self.answers[min(len(self.requests), len(self.answers)) - 1]
        return answer(request) if callable(answer) else answer

    def bodies(self) -> list[dict]:
        return [json.loads(r.content) for r in self.requests if r.method == "POST"]


def _client(script: Script, **kw) -> RemoteInternVL:
    kw.setdefault("model", "m")
    kw.setdefault("backoff", 0.001)
    return RemoteInternVL("http://testserver/v1", transport=httpx.MockTransport(script), **kw)


def _noise(w: int, h: int, seed: int = 0) -> Image.Image:
    return Image.fromarray(np.random.default_rng(seed).integers(0, 256, (h, w, 3), dtype=np.uint8))


def _decode_uri(uri: str) -> Image.Image:
    assert uri.startswith("data:image/png;base64,")
    return Image.open(io.BytesIO(base64.b64decode(uri.split(",", 1)[1])))


# ------------------------------------------------------------------------------------------------ construction


@pytest.mark.parametrize(
    "given, expected",
    [
        ("http://127.0.0.1:23333", "http://127.0.0.1:23333/v1"),
        ("http://127.0.0.1:23333/", "http://127.0.0.1:23333/v1"),
        ("http://127.0.0.1:23333/v1", "http://127.0.0.1:23333/v1"),
        ("http://127.0.0.1:23333/v1/", "http://127.0.0.1:23333/v1"),
        ("https://gpu.example.com/openai/v1", "https://gpu.example.com/openai/v1"),
    ],
)
def test_base_url_is_normalised_to_the_api_prefix(given: str, expected: str) -> None:
    assert RemoteInternVL(given, model="m").base_url == expected


@pytest.mark.parametrize("bad", ["", "127.0.0.1:23333", "ftp://host/v1", "http://"])
def test_bad_base_url_is_a_config_error(bad: str) -> None:
    with pytest.raises(ConfigError, match="base_url"):
        RemoteInternVL(bad)


def test_from_server_builds_the_remote_backend_without_contacting_it() -> None:
    vlm = InternVL.from_server("http://127.0.0.1:9", model="m", api_key="k", timeout=5)
    assert isinstance(vlm, RemoteInternVL) and OpenAIBackend is RemoteInternVL
    assert vlm.model_name == "m" and vlm.timeout == 5


def test_model_is_discovered_and_info_read_from_the_model_list() -> None:
    listing = {
        "object": "list",
        "data": [
            {
                "id": "served",
                "object": "model",
                "max_model_len": 8192,
                "internvl": {"image_size": 224, "max_dynamic_patch": 6, "template": "internvl2_5"},
            },
            {"id": "other", "object": "model"},
        ],
    }
    script = Script(httpx.Response(200, json=listing))
    vlm = _client(script, model=None)
    assert vlm.model_name == "served"
    assert vlm.info == RemoteInfo(image_size=224, max_dynamic_patch=6, template="internvl2_5", context_length=8192)
    assert [r.url.path for r in script.requests] == ["/v1/models"]  # asked once, cached


def test_vllm_style_listing_gives_context_length_and_internvl_defaults() -> None:
    script = Script(httpx.Response(200, json={"data": [{"id": "OpenGVLab/InternVL3-8B", "max_model_len": 32768}]}))
    info = _client(script, model=None).info
    assert (info.image_size, info.max_dynamic_patch, info.context_length, info.template) == (448, 12, 32768, None)


def test_constructor_overrides_win_over_the_server() -> None:
    listing = {"data": [{"id": "m", "internvl": {"image_size": 224, "max_dynamic_patch": 6}}]}
    vlm = _client(Script(httpx.Response(200, json=listing)), max_dynamic_patch=2, template="internlm2-chat")
    assert (vlm.info.image_size, vlm.info.max_dynamic_patch, vlm.info.template) == (224, 2, "internlm2-chat")


def test_info_falls_back_to_defaults_when_the_server_has_no_model_list() -> None:
    vlm = _client(Script(httpx.Response(404, json={"detail": "Not Found"})), image_size=336)
    assert (vlm.info.image_size, vlm.info.max_dynamic_patch, vlm.info.context_length) == (336, 12, None)


def test_empty_model_list_without_a_model_name_is_a_clear_error() -> None:
    with pytest.raises(ServerError, match=r"model=..."):
        _ = _client(Script(httpx.Response(200, json={"data": []})), model=None).model_name


def test_api_key_comes_from_the_argument_or_the_environment(monkeypatch) -> None:
    monkeypatch.setenv("INTERNVL_TOOLS_API_KEY", "from-env")
    script = Script(httpx.Response(200, json=_completion()))
    _client(script).chat("hi")
    _client(script, api_key="explicit").chat("hi")
    assert [r.headers.get("authorization") for r in script.requests] == ["Bearer from-env", "Bearer explicit"]
    monkeypatch.delenv("INTERNVL_TOOLS_API_KEY")
    _client(script).chat("hi")
    assert "authorization" not in script.requests[-1].headers


# ------------------------------------------------------------------------------------------------ request shaping


def test_images_are_sent_as_lossless_png_data_uris_of_the_original_pixels() -> None:
    script = Script(httpx.Response(200, json=_completion()))
    image = _noise(37, 23, seed=1)
    _client(script).chat(
        [
            {
                "role": "user",
                "content": [
                    {"type": "text", "text": "Compare"},
                    {"type": "image", "image": image},
                    {"type": "image", "image": _noise(5, 9, seed=2)},
                ],
            }
        ]
    )
    [body] = script.bodies()
    parts = body["messages"][0]["content"]
    assert [p["type"] for p in parts] == ["text", "image_url", "image_url"]
    sent = _decode_uri(parts[1]["image_url"]["url"])
    assert sent.size == (37, 23) and sent.convert("RGB").tobytes() == image.tobytes()
    assert _decode_uri(parts[2]["image_url"]["url"]).size == (5, 9)


@settings(max_examples=15, deadline=None)
@given(w=st.integers(1, 40), h=st.integers(1, 40), seed=st.integers(0, 2**16), mode=st.sampled_from(["RGB", "L"]))
def test_any_image_round_trips_bit_exactly(w: int, h: int, seed: int, mode: str) -> None:
    script = Script(httpx.Response(200, json=_completion()))
    image = _noise(w, h, seed).convert(mode)
    _client(script).ask(image, "?")
    url = script.bodies()[0]["messages"][0]["content"][0]["image_url"]["url"]
    assert _decode_uri(url).convert("RGB").tobytes() == image.convert("RGB").tobytes()


def test_exif_orientation_is_applied_before_sending() -> None:
    image = _noise(30, 10, seed=3)
    exif = Image.Exif()
    exif[0x0112] = 6  # rotate 90° clockwise on display
    buf = io.BytesIO()
    image.save(buf, "JPEG", exif=exif.tobytes(), quality=95)
    script = Script(httpx.Response(200, json=_completion()))
    _client(script).ask(buf.getvalue(), "?")
    url = script.bodies()[0]["messages"][0]["content"][0]["image_url"]["url"]
    assert _decode_uri(url).size == (10, 30)


def test_oversized_image_is_refused_before_any_request() -> None:
    script = Script(httpx.Response(200, json=_completion()))
    with pytest.raises(ImageTooLargeError, match="max_image_bytes=1,000"):
        _client(script, max_image_bytes=1000).ask(_noise(100, 100), "?")
    assert script.requests == []


@pytest.mark.parametrize(
    "options, expected",
    [
        ({}, {"temperature": 0.0, "max_tokens": 512}),
        ({"max_new_tokens": 9}, {"temperature": 0.0, "max_tokens": 9}),
        ({"max_tokens": 5}, {"max_tokens": 5}),
        ({"temperature": 0.7, "top_p": 0.9, "top_k": 20}, {"temperature": 0.7, "top_p": 0.9, "top_k": 20}),
        ({"do_sample": True}, {"temperature": 1.0}),
        ({"do_sample": False, "temperature": 0.8, "top_p": 0.5}, {"temperature": 0.0}),
        ({"stop": "END"}, {"stop": ["END"]}),
        (
            {"stop": ["a", "b"], "seed": 3, "repetition_penalty": 1.1},
            {"stop": ["a", "b"], "seed": 3, "repetition_penalty": 1.1},
        ),
    ],
)
def test_generation_options_map_to_openai_fields(options: dict, expected: dict) -> None:
    script = Script(httpx.Response(200, json=_completion()))
    _client(script).chat("hi", **options)
    [body] = script.bodies()
    assert body["model"] == "m" and body["messages"] == [{"role": "user", "content": "hi"}]
    assert {k: body[k] for k in expected} == expected
    if not options.get("temperature") or options.get("do_sample") is False:
        assert "top_p" not in body and "top_k" not in body  # greedy: sampling knobs are meaningless


@pytest.mark.parametrize(
    "call, error",
    [
        (lambda v: v.chat("hi", num_beams=2), "num_beams"),
        (lambda v: v.chat("hi", bogus=1), "bogus"),
        (lambda v: v.chat([{"role": "user", "content": [{"type": "video", "video": "clip.mp4"}]}]), "video"),
        (lambda v: v.generate_structured("hi", {"type": "object"}, stop=["x"]), "stop"),
        (lambda v: v.batch("not a list"), "list of conversations"),
    ],
)
def test_unsupported_requests_fail_locally_with_config_errors(call, error: str) -> None:
    script = Script(httpx.Response(200, json=_completion()))
    with pytest.raises(ConfigError, match=error):
        call(_client(script))
    assert script.requests == []


def test_structured_output_sends_a_strict_json_schema_and_extract_validates() -> None:
    from pydantic import BaseModel

    class Point(BaseModel):
        x: int
        y: int

    script = Script(httpx.Response(200, json=_completion('{"x": 1, "y": 2}')))
    assert _client(script).extract(None, "Where?", Point) == Point(x=1, y=2)
    fmt = script.bodies()[0]["response_format"]
    assert fmt["type"] == "json_schema"
    assert fmt["json_schema"]["strict"] is True and fmt["json_schema"]["name"] == "Point"
    assert fmt["json_schema"]["schema"] == Point.model_json_schema()


@pytest.mark.parametrize(
    "answer, finish",
    [('{"x": "one", "y": 2}', "stop"), ('{"x": 1', "stop"), ('{"x": 1, "y": 2}', "length")],
    ids=["wrong-type", "truncated", "ran-out-of-tokens"],
)
def test_extract_refuses_answers_that_do_not_validate(answer: str, finish: str) -> None:
    from pydantic import BaseModel

    from internvl_tools.errors import StructuredOutputError

    class Point(BaseModel):
        x: int
        y: int

    script = Script(httpx.Response(200, json=_completion(answer, finish)))
    with pytest.raises(StructuredOutputError):
        _client(script).extract(None, "Where?", Point)


def test_ground_uses_the_local_prompt_and_maps_boxes_to_original_pixels() -> None:
    from internvl_tools import grounding_prompt

    answer = "<ref>the dog</ref><box>[[100, 200, 500, 1000]]</box>"
    script = Script(httpx.Response(200, json=_completion(answer)))
    result = _client(script).ground(_noise(200, 100), "the dog")
    body = script.bodies()[0]
    assert body["messages"][0]["content"][-1] == {"type": "text", "text": grounding_prompt("the dog")}
    assert body["max_tokens"] == 100
    [box] = result.boxes
    assert (box.x1, box.y1, box.x2, box.y2) == pytest.approx((20, 20, 100, 100), abs=1)


# ------------------------------------------------------------------------------------------------ answers


@pytest.mark.parametrize(
    "finish, usage, expected_finish, expected_usage",
    [
        ("stop", {"prompt_tokens": 7, "completion_tokens": 3}, "stop", (7, 3, 0, 0)),
        ("length", {"prompt_tokens": 1, "completion_tokens": 9}, "length", (1, 9, 0, 0)),
        ("eos", None, "stop", (0, 0, 0, 0)),
        (None, {"prompt_tokens": 5}, "stop", (5, 0, 0, 0)),
        (
            "stop",
            {"prompt_tokens": 40, "completion_tokens": 2, "image_tokens": 28, "num_tiles": 7},
            "stop",
            (40, 2, 28, 7),
        ),
    ],
)
def test_usage_and_finish_reason_are_mapped(finish, usage, expected_finish, expected_usage) -> None:
    body = _completion("ok", finish, usage)
    if usage is None:
        del body["usage"]
    result = _client(Script(httpx.Response(200, json=body))).chat("hi")
    u = result.usage
    assert result.finish_reason == expected_finish
    assert (u.prompt_tokens, u.completion_tokens, u.image_tokens, u.num_tiles) == expected_usage
    assert u.total_tokens == expected_usage[0] + expected_usage[1]


def test_an_answer_that_is_not_a_chat_completion_is_a_server_error() -> None:
    with pytest.raises(ServerError, match="not an OpenAI chat completion"):
        _client(Script(httpx.Response(200, json={"result": "hi"}))).chat("hi")


# ------------------------------------------------------------------------------------------------ retries and errors


def test_429_and_5xx_are_retried_with_backoff_honouring_retry_after(monkeypatch) -> None:
    slept: list[float] = []
    monkeypatch.setattr(remote.time, "sleep", slept.append)
    script = Script(
        httpx.Response(429, headers={"Retry-After": "0.25"}, json={"error": {"message": "busy"}}),
        httpx.Response(503, text="overloaded"),
        httpx.Response(200, json=_completion("finally")),
    )
    assert _client(script, backoff=0.01).chat("hi").text == "finally"
    assert len(script.requests) == 3
    assert slept[0] == 0.25 and 0.005 <= slept[1] <= 0.02


def test_retries_give_up_after_max_retries_with_the_status_in_the_error(monkeypatch) -> None:
    monkeypatch.setattr(remote.time, "sleep", lambda s: None)
    script = Script(httpx.Response(500, json={"error": {"message": "CUDA out of memory"}}))
    with pytest.raises(ServerError, match=r"HTTP 500.*CUDA out of memory") as info:
        _client(script, max_retries=2).chat("hi")
    assert info.value.status_code == 500 and len(script.requests) == 3


@pytest.mark.parametrize(
    "status, body, error, needle",
    [
        (400, {"error": {"message": "bad temperature"}}, ServerRequestError, "HTTP 400: bad temperature"),
        (401, {"error": {"message": "Invalid API key"}}, ServerAuthError, "api_key"),
        (403, {"detail": "forbidden"}, ServerAuthError, "HTTP 403"),
        (404, {"detail": "Not Found"}, ServerRequestError, "model name"),
        (422, {"detail": [{"msg": "field required"}]}, ServerRequestError, "field required"),
        (
            400,
            {"error": {"message": "This model's maximum context length is 4096 tokens"}},
            ContextLengthError,
            "maximum context",
        ),
        (400, {"error": {"message": "too big", "code": "context_length_exceeded"}}, ContextLengthError, "too big"),
    ],
)
def test_4xx_is_not_retried_and_raises_a_clear_error(status, body, error, needle) -> None:
    script = Script(httpx.Response(status, json=body))
    with pytest.raises(error, match=needle):
        _client(script).chat("hi")
    assert len(script.requests) == 1


def test_connection_errors_are_retried_then_reported(monkeypatch) -> None:
    monkeypatch.setattr(remote.time, "sleep", lambda s: None)
    calls = []

    def refuse(request: httpx.Request) -> httpx.Response:
        calls.append(request)
        if len(calls) < 3:
            raise httpx.ConnectError("connection refused")
        return httpx.Response(200, json=_completion("up again"))

    assert _client(Script(refuse), max_retries=3).chat("hi").text == "up again"
    calls.clear()
    with pytest.raises(ServerConnectionError, match="after 2 attempt"):
        _client(Script(refuse), max_retries=1).chat("hi")


# ------------------------------------------------------------------------------------------------ streaming


def _sse(*events: object, done: bool = True) -> bytes:
    lines = [f"data: {json.dumps(e)}\n\n" for e in events]
    return ("".join(lines) + ("data: [DONE]\n\n" if done else "")).encode()


def _delta(text: str | None = None, finish: str | None = None) -> dict:
    delta = {"content": text} if text is not None else {}
    return {"object": "chat.completion.chunk", "choices": [{"index": 0, "delta": delta, "finish_reason": finish}]}


def test_stream_yields_the_deltas_of_server_sent_events() -> None:
    body = _sse(
        {"choices": [{"index": 0, "delta": {"role": "assistant", "content": ""}}]},
        _delta("Hel"),
        _delta("lo 世"),
        _delta("界"),
        _delta(finish="stop"),
    )
    script = Script(httpx.Response(200, content=body, headers={"content-type": "text/event-stream"}))
    assert list(_client(script).stream("hi", max_new_tokens=4)) == ["Hel", "lo 世", "界"]
    assert script.bodies()[0]["stream"] is True


def test_stream_is_a_text_stream_whose_result_has_the_servers_usage_and_finish_reason() -> None:
    from internvl_tools.generation.stream import TextStream

    usage = {"prompt_tokens": 7, "completion_tokens": 3, "total_tokens": 10}
    body = _sse(_delta("Hel"), _delta("lo"), _delta(finish="length"), {"choices": [], "usage": usage, "model": "srv"})
    script = Script(httpx.Response(200, content=body, headers={"content-type": "text/event-stream"}))
    stream = _client(script).stream("hi", max_new_tokens=3)
    assert isinstance(stream, TextStream) and stream.result is None
    assert "".join(stream) == "Hello"
    assert stream.result is not None
    assert (stream.result.text, stream.result.finish_reason, stream.result.model) == ("Hello", "length", "srv")
    assert (stream.result.usage.prompt_tokens, stream.result.usage.completion_tokens) == (7, 3)
    assert script.bodies()[0]["stream_options"] == {"include_usage": True}


def test_stream_result_without_usage_from_the_server_has_zero_counts() -> None:
    body = _sse(_delta("Hi"), _delta(finish="stop"))
    script = Script(httpx.Response(200, content=body, headers={"content-type": "text/event-stream"}))
    stream = _client(script).stream("hi")
    assert list(stream) == ["Hi"]
    assert stream.result is not None and stream.result.finish_reason == "stop"
    assert stream.result.usage.total_tokens == 0


@pytest.mark.parametrize(
    "body, error, needle",
    [
        (_sse(_delta("partial"), {"error": {"message": "CUDA error"}}, done=False), ServerError, "CUDA error"),
        (_sse(_delta("partial"), done=False), ServerConnectionError, "without a finish reason"),
        (b"data: {broken\n\n", ServerError, "malformed"),
    ],
    ids=["error-event", "cut-short", "malformed"],
)
def test_broken_streams_raise_instead_of_returning_partial_text(body: bytes, error, needle: str) -> None:
    script = Script(httpx.Response(200, content=body, headers={"content-type": "text/event-stream"}))
    with pytest.raises(error, match=needle):
        list(_client(script).stream("hi"))


def test_stream_errors_before_the_first_byte_are_clear() -> None:
    with pytest.raises(ServerAuthError):
        list(_client(Script(httpx.Response(401, json={"error": {"message": "no key"}}))).stream("hi"))


# ------------------------------------------------------------------------------------------------ batch


def test_batch_keeps_order_and_limits_concurrency() -> None:
    in_flight, peak, lock = [0], [0], threading.Lock()

    def slow_echo(request: httpx.Request) -> httpx.Response:
        with lock:
            in_flight[0] += 1
            peak[0] = max(peak[0], in_flight[0])
        time.sleep(0.05)
        with lock:
            in_flight[0] -= 1
        text = json.loads(request.content)["messages"][0]["content"]
        return httpx.Response(200, json=_completion(text.upper()))

    vlm = _client(Script(slow_echo), max_concurrency=3)
    started = time.perf_counter()
    results = vlm.batch([f"q{i}" for i in range(9)], batch_size=8)
    elapsed = time.perf_counter() - started
    assert [r.text for r in results] == [f"Q{i}" for i in range(9)]
    assert peak[0] == 3
    assert elapsed < 9 * 0.05  # concurrent, not one by one


def test_batch_item_errors_are_results_but_auth_errors_raise() -> None:
    def answer(request: httpx.Request) -> httpx.Response:
        text = json.loads(request.content)["messages"][0]["content"]
        if text == "bad":
            return httpx.Response(400, json={"error": {"message": "unreadable image"}})
        return httpx.Response(200, json=_completion("ok"))

    results = _client(Script(answer)).batch(["a", "bad", "c"])
    assert [r.finish_reason for r in results] == ["stop", "error", "stop"]
    assert "unreadable image" in results[1].error
    results = _client(Script(answer)).batch(["a", [{"role": "user", "content": [{"type": "image", "image": b"x"}]}]])
    assert results[1].finish_reason == "error" and "ImageDecodeError" in results[1].error
    with pytest.raises(ServerAuthError):
        _client(Script(httpx.Response(401, json={"error": {"message": "no"}}))).batch(["a", "b"])


# ------------------------------------------------------------------------------------------------ real sockets


class _Fake(ThreadingHTTPServer):
    daemon_threads = True

    def handle_error(self, request: object, client_address: object) -> None:
        pass  # clients that time out close their end; the broken pipe is expected here


@pytest.fixture()
def fake_server():
    """Start an http.server with a given handler on a loopback port; yields a starter; always shuts down."""
    servers: list[_Fake] = []

    def start(handle: Callable[[BaseHTTPRequestHandler], None]) -> str:
        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                self.rfile.read(int(self.headers.get("content-length", 0)))
                handle(self)

            do_GET = do_POST

            def log_message(self, *args: object) -> None:
                pass

        server = _Fake(("127.0.0.1", 0), Handler)
        threading.Thread(target=server.serve_forever, daemon=True).start()
        servers.append(server)
        return f"http://127.0.0.1:{server.server_address[1]}/v1"

    yield start
    for server in servers:
        server.shutdown()
        server.server_close()


def _send_json(handler: BaseHTTPRequestHandler, status: int, body: dict, headers: dict | None = None) -> None:
    data = json.dumps(body).encode()
    handler.send_response(status)
    for key, value in {"Content-Type": "application/json", "Content-Length": str(len(data)), **(headers or {})}.items():
        handler.send_header(key, value)
    handler.end_headers()
    handler.wfile.write(data)


def test_real_server_429_then_success_is_retried(fake_server) -> None:
    hits = []

    def handle(h: BaseHTTPRequestHandler) -> None:
        hits.append(h.path)
        if len(hits) <= 2:
            _send_json(h, 429, {"error": {"message": "rate limited"}}, {"Retry-After": "0"})
        else:
            _send_json(h, 200, _completion("served"))

    vlm = InternVL.from_server(fake_server(handle), model="m", backoff=0.01)
    assert vlm.chat("hi").text == "served"
    assert hits == ["/v1/chat/completions"] * 3


def test_real_slow_server_times_out_on_time(fake_server) -> None:
    release = threading.Event()

    def handle(h: BaseHTTPRequestHandler) -> None:
        release.wait(10)
        _send_json(h, 200, _completion("too late"))

    vlm = InternVL.from_server(fake_server(handle), model="m", timeout=0.5)
    started = time.perf_counter()
    with pytest.raises(ServerTimeoutError, match=r"timed out.*timeout=0.5"):
        vlm.chat("hi")
    elapsed = time.perf_counter() - started
    release.set()
    assert 0.4 < elapsed < 2.0  # honoured, and not retried (the server may still be generating)


def test_real_stalled_stream_times_out(fake_server) -> None:
    release = threading.Event()

    def handle(h: BaseHTTPRequestHandler) -> None:
        h.send_response(200)
        h.send_header("Content-Type", "text/event-stream")
        h.end_headers()
        h.wfile.write(_sse(_delta("first"), done=False))
        h.wfile.flush()
        release.wait(10)

    stream = InternVL.from_server(fake_server(handle), model="m", timeout=0.5).stream("hi")
    assert next(stream) == "first"
    started = time.perf_counter()
    with pytest.raises(ServerTimeoutError, match="after 5 characters"):
        next(stream)
    release.set()
    assert time.perf_counter() - started < 2.0


def test_nothing_listening_is_a_connection_error() -> None:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]  # closed again: nothing listens here
    vlm = InternVL.from_server(f"http://127.0.0.1:{port}", model="m", max_retries=2, backoff=0.01)
    with pytest.raises(ServerConnectionError, match="Is the server running"):
        vlm.chat("hi")


_DYING_SERVER = textwrap.dedent(
    """
    import json, sys, time
    from http.server import BaseHTTPRequestHandler, HTTPServer

    class H(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"
        def do_POST(self):
            self.rfile.read(int(self.headers["content-length"]))
            self.send_response(200)
            self.send_header("Content-Type", "text/event-stream")
            self.send_header("Transfer-Encoding", "chunked")
            self.end_headers()
            for i in range(1000):
                event = {"choices": [{"index": 0, "delta": {"content": f"tok{i} "}, "finish_reason": None}]}
                data = f"data: {json.dumps(event)}\\n\\n".encode()
                self.wfile.write(f"{len(data):x}\\r\\n".encode() + data + b"\\r\\n")
                self.wfile.flush()
                time.sleep(0.05)
        def log_message(self, *a):
            pass

    server = HTTPServer(("127.0.0.1", 0), H)
    print(server.server_address[1], flush=True)
    server.serve_forever()
    """
)


def test_server_killed_mid_stream_raises_a_clear_error_without_hanging() -> None:
    proc = subprocess.Popen([sys.executable, "-c", _DYING_SERVER], stdout=subprocess.PIPE, text=True)
    try:
        port = int(proc.stdout.readline())
        stream = InternVL.from_server(f"http://127.0.0.1:{port}", model="m", timeout=5).stream("hi")
        received = [next(stream), next(stream)]
        os.kill(proc.pid, signal.SIGKILL)
        proc.wait(5)
        started = time.perf_counter()
        with pytest.raises(ServerConnectionError, match=r"mid-stream|stopped mid-answer"):
            for delta in stream:
                received.append(delta)
        assert time.perf_counter() - started < 3.0
        assert received[:2] == ["tok0 ", "tok1 "]
    finally:
        if proc.poll() is None:
            proc.kill()
        proc.wait(5)
