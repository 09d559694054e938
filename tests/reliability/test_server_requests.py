"""`internvl-tools serve` against hostile clients: every request field out of type or range is a 400 in OpenAI's
error shape naming the field, nothing is ever a plain-text 500, a huge prompt is refused before tokenizing, and
image hosts that hang neither stall text-only requests nor pile up without bound.

The server runs in this process (uvicorn on a thread, the tiny checkpoint) so the tests can see its state.
"""

from __future__ import annotations

import json
import socket
import threading
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import httpx
import pytest

pytest.importorskip("fastapi")
uvicorn = pytest.importorskip("uvicorn")

from internvl_tools.errors import ConfigError  # noqa: E402
from internvl_tools.server import create_app, main  # noqa: E402
from internvl_tools.server.settings import ServerSettings  # noqa: E402

KEY = "reliability-key"
AUTH = {"Authorization": f"Bearer {KEY}"}
MEDIA_TIMEOUT = 3.0
STOP = threading.Event()


# ------------------------------------------------------------------------------------------------ fixtures


def _hang(conn: socket.socket) -> None:
    """An image host that sends its headers one byte every 0.2 s and never finishes them."""
    with conn:
        try:
            conn.recv(4096)
            conn.sendall(b"HTTP/1.1 200 OK\r\n")
            while not STOP.wait(0.2):
                conn.sendall(b"a")
        except OSError:
            pass


@pytest.fixture(scope="module")
def hanging_host() -> Iterator[str]:
    STOP.clear()
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    sock.listen(32)

    def serve() -> None:
        while True:
            try:
                conn, _ = sock.accept()
            except OSError:
                return
            threading.Thread(target=_hang, args=(conn,), daemon=True).start()

    threading.Thread(target=serve, daemon=True).start()
    yield f"http://127.0.0.1:{sock.getsockname()[1]}/cat.png"
    STOP.set()
    sock.close()


@pytest.fixture(scope="module")
def base(tiny_engine: Any) -> Iterator[str]:
    settings = ServerSettings(
        model_name="tiny", api_key=KEY, allow_remote_images=True, allow_private_hosts=("127.0.0.1",),
        media_timeout=MEDIA_TIMEOUT, max_concurrent_fetches=2,
    )  # fmt: skip
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    server = uvicorn.Server(uvicorn.Config(create_app(tiny_engine, settings), host="127.0.0.1", port=port,
                                           log_level="critical"))  # fmt: skip
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    deadline = time.monotonic() + 30
    while not server.started:
        assert time.monotonic() < deadline and thread.is_alive(), "the server did not start"
        time.sleep(0.05)
    yield f"http://127.0.0.1:{port}"
    server.should_exit = True
    thread.join(10)


def _post(base: str, body: Any, timeout: float = 30) -> httpx.Response:
    # 1e999 is valid JSON that Python reads as inf (json.dumps would write the invalid "Infinity").
    content = body if isinstance(body, bytes) else json.dumps(body).replace("Infinity", "1e999").encode()
    headers = {**AUTH, "Content-Type": "application/json"}
    return httpx.post(f"{base}/v1/chat/completions", content=content, headers=headers, timeout=timeout)


def _chat(**fields: Any) -> dict[str, Any]:
    return {"model": "tiny", "max_tokens": 2, "messages": [{"role": "user", "content": "hi"}], **fields}


def _user(*parts: dict[str, Any]) -> list[dict[str, Any]]:
    return [{"role": "user", "content": list(parts)}]


def _error(response: httpx.Response, status: int) -> dict[str, Any]:
    assert response.status_code == status, response.text
    assert response.headers["content-type"].startswith("application/json"), response.text
    error = response.json()["error"]
    assert error["message"] and error["type"]
    return error


# ------------------------------------------------------------------------------------------------ every field

TREE = {"$defs": {"t": {"type": "object", "properties": {"kids": {"type": "array", "items": {"$ref": "#/$defs/t"}}},
                        "required": ["kids"]}}, "$ref": "#/$defs/t"}  # fmt: skip
SELF_REQUIRED = {"type": "object", "properties": {"me": {"$ref": "#"}}, "required": ["me"]}


def _schema(schema: Any) -> dict[str, Any]:
    return {"type": "json_schema", "json_schema": {"name": "x", "schema": schema}}


BAD_FIELDS = [
    # field, value
    ("seed", 2**64), ("seed", -(2**63) - 1), ("seed", "7"), ("seed", 1.5), ("seed", True),
    ("stream_options", "yes"), ("stream_options", ["include_usage"]), ("stream_options", {"include_usage": "yes"}),
    ("model", ["tiny"]), ("model", 5), ("model", {"id": "tiny"}),
    ("repetition_penalty", 0), ("repetition_penalty", -1), ("repetition_penalty", 1e309), ("repetition_penalty", "1"),
    ("temperature", -0.1), ("temperature", 2.5), ("temperature", "hot"), ("temperature", 1e309),
    ("top_p", 1.5), ("top_p", -0.1), ("top_p", [0.5]),
    ("top_k", -2), ("top_k", 1.5), ("top_k", 2**40),
    ("max_tokens", 0), ("max_tokens", -1), ("max_tokens", "10"), ("max_tokens", 1.5), ("max_tokens", 2**40),
    ("max_completion_tokens", 0), ("max_completion_tokens", "x"),
    ("n", 2), ("n", 0), ("n", "1"),
    ("stop", 5), ("stop", [1]), ("stop", ["a", "b", "c", "d", "e"]), ("stop", {"s": "x"}),
    ("stream", "yes"), ("stream", 1),
    ("response_format", "json"), ("response_format", {"type": "xml"}), ("response_format", {"type": "json_schema"}),
    ("response_format", _schema({"$ref": "#"})), ("response_format", _schema(SELF_REQUIRED)),
    ("response_format", _schema({"$ref": "http://169.254.169.254/schema.json"})),
    ("response_format", _schema({"$ref": "#/$defs/missing"})), ("response_format", _schema({"type": 5})),
    ("response_format", _schema({"$dynamicRef": "#node"})), ("response_format", _schema([1])),
    ("messages", []), ("messages", "hi"), ("messages", [{"role": "tool", "content": "x"}]),
    ("messages", [{"role": ["user"], "content": "x"}]), ("messages", [{"role": "user", "content": 5}]),
    ("messages", _user({"type": "input_audio", "input_audio": {}})), ("messages", _user({"type": "text", "text": 5})),
    ("messages", _user({"type": "image_url", "image_url": {"url": 5}})),
    ("messages", _user({"type": "image_url", "image_url": {"url": ""}})),
    ("messages", _user({"type": "image_url", "image_url": {"url": "data:,x", "max_tiles": 0}})),
    ("messages", [{"role": "user", "content": "hi"}, {"role": "assistant", "content": "last"}]),
    ("logprobs", True), ("top_logprobs", 30), ("logit_bias", {"1": 200}), ("logit_bias", {"1": 5}), ("tools", [{}]),
    ("tool_choice", "required"), ("frequency_penalty", 0.5), ("presence_penalty", 3),
    ("user", 5), ("metadata", {"a": 1}), ("store", "yes"),
]  # fmt: skip


@pytest.mark.parametrize("field, value", BAD_FIELDS, ids=[f"{f}={str(v)[:30]}" for f, v in BAD_FIELDS])
def test_every_bad_field_is_a_400_naming_it(base: str, field: str, value: Any) -> None:
    error = _error(_post(base, _chat(**{field: value})), 400)
    assert error["param"] == field, error


@pytest.mark.parametrize(
    "body, needle",
    [
        (b"[" * 100_000 + b"]" * 100_000, "nested"),
        (b'{"messages": ' + b"[" * 65 + b"]" * 65 + b"}", "nested"),
        (b'{"model": "tiny", "temperature": NaN, "messages": [{"role": "user", "content": "hi"}]}', "NaN"),
        (b'{"model": "tiny", "seed": Infinity, "messages": [{"role": "user", "content": "hi"}]}', "Infinity"),
        (b'{"messages": [' + b"{}," * 300_000 + b"{}]}", "objects and arrays"),
        (b'["not", "an", "object"]', "JSON object"),
        (b"{not json", "not valid JSON"),
        ('{"messages": "\udcff"}'.encode("utf-8", "surrogatepass"), "not valid JSON"),
        (b'{"messages": [{"role": "user", "content": "\\ud800 alone"}]}', "surrogate"),
        (b'{"messages": [{"role": "user", "content": "\xff\xfe"}]}', "not valid JSON"),
    ],
    ids=[
        "deep-100000",
        "deep-65",
        "nan",
        "infinity",
        "300k-objects",
        "array",
        "garbage",
        "bad-utf8",
        "lone-surrogate",
        "latin-1",
    ],
)
def test_bad_json_is_a_400_not_a_500(base: str, body: bytes, needle: str) -> None:
    error = _error(_post(base, body), 400)
    assert needle in error["message"]


@pytest.mark.parametrize(
    "fields",
    [
        {"temperature": 1e-300}, {"temperature": 2, "top_p": 0, "top_k": -1, "seed": 2**63 - 1},
        {"seed": -(2**63)}, {"repetition_penalty": 100}, {"stop": ["a", "b", "c", "d"]},
        {"stream_options": {"include_usage": True}}, {"response_format": _schema(TREE)},
        {"response_format": {"type": "text"}}, {"user": "u1", "metadata": {"k": "v"}, "store": False, "n": 1},
        {"tool_choice": "none", "logprobs": False, "frequency_penalty": 0, "unknown_extra": [1, 2]},
        {"messages": [{"role": "developer", "content": "Be brief."}, {"role": "user", "content": [
            {"type": "text", "text": "hi \ud83d\ude00"}]}]},
    ],
    ids=["tiny-temperature", "extremes", "min-seed", "penalty-100", "four-stops", "stream-options", "tree-schema",
         "text-format", "bookkeeping", "defaults-and-extras", "developer-role-emoji"],
)  # fmt: skip
def test_edge_values_that_are_valid_are_answered(base: str, fields: dict[str, Any]) -> None:
    response = _post(base, _chat(**fields), timeout=60)
    assert response.status_code == 200, response.text
    assert response.json()["choices"][0]["message"]["content"] is not None


def test_a_temperature_too_small_to_divide_by_is_greedy(base: str) -> None:
    tiny = _post(base, _chat(temperature=1e-300, max_tokens=6)).json()["choices"][0]["message"]["content"]
    greedy = _post(base, _chat(temperature=0, max_tokens=6)).json()["choices"][0]["message"]["content"]
    assert tiny == greedy


# ------------------------------------------------------------------------------------------------ never a bare 500


def test_an_unexpected_failure_is_a_json_500_and_the_server_stays_up(base: str, tiny_engine: Any, monkeypatch) -> None:
    def broken(*args: Any, **kwargs: Any) -> Any:
        raise RuntimeError("injected failure")

    monkeypatch.setattr(tiny_engine, "batch", broken)
    monkeypatch.setattr(tiny_engine, "chat", broken)
    error = _error(_post(base, _chat()), 500)
    assert error["type"] == "server_error" and "injected failure" in error["message"]
    monkeypatch.undo()
    assert _post(base, _chat()).status_code == 200


@pytest.mark.parametrize("method, path, status", [("GET", "/nope", 404), ("DELETE", "/v1/chat/completions", 405),
                                                  ("GET", "/v1/chat/completions", 405)])  # fmt: skip
def test_unknown_routes_answer_in_the_openai_error_shape(base: str, method: str, path: str, status: int) -> None:
    _error(httpx.request(method, base + path, headers=AUTH), status)


# ------------------------------------------------------------------------------------------------ authentication


@pytest.mark.parametrize("path", ["/openapi.json", "/v1/models", "/docs", "/redoc"])
def test_every_endpoint_but_health_needs_the_key(base: str, path: str) -> None:
    response = httpx.get(base + path)
    assert response.status_code in (401, 404), response.text  # docs pages do not exist at all
    assert "openapi" not in response.text.lower() or response.status_code == 401
    if path in ("/openapi.json", "/v1/models"):
        _error(response, 401)
        assert httpx.get(base + path, headers=AUTH).status_code == 200
    assert httpx.get(base + "/health").status_code == 200


@pytest.mark.parametrize("argv, env", [(["--api-key", ""], None), (["--api-key", " "], None),
                                       (["--api-key", "a key"], None), ([], ""), ([], "\t")])  # fmt: skip
def test_an_empty_or_blank_api_key_is_a_startup_error(argv: list[str], env: str | None, monkeypatch, capsys) -> None:
    if env is None:
        monkeypatch.delenv("INTERNVL_TOOLS_API_KEY", raising=False)
    else:
        monkeypatch.setenv("INTERNVL_TOOLS_API_KEY", env)
    assert main(["does-not-matter", *argv]) == 2  # refused before any model is loaded
    assert "API_KEY" in capsys.readouterr().err or "--api-key" in capsys.readouterr().err


def test_settings_refuse_an_empty_key_too() -> None:
    with pytest.raises(ConfigError, match="API key"):
        ServerSettings(model_name="tiny", api_key="")


# ------------------------------------------------------------------------------------------------ starvation


def test_a_huge_prompt_is_refused_before_tokenizing_and_others_are_served(base: str, tiny_engine: Any) -> None:
    body = _chat(messages=[{"role": "user", "content": "word " * 3_000_000}])  # 15 MB, under the body cap
    with ThreadPoolExecutor(2) as pool:
        huge = pool.submit(_post, base, body, 60)
        small = pool.submit(_post, base, _chat(), 60)
        error = _error(huge.result(), 400)
        assert small.result().status_code == 200
    assert error["code"] == "context_length_exceeded" and "15,000,000 characters" in error["message"]
    assert str(tiny_engine.info.context_length) in error["message"]


def test_hanging_image_hosts_neither_stall_text_requests_nor_pile_up(base: str, hanging_host: str) -> None:
    image = _chat(messages=_user({"type": "image_url", "image_url": {"url": hanging_host}},
                                 {"type": "text", "text": "what is it?"}))  # fmt: skip
    with ThreadPoolExecutor(4) as pool:
        started = time.monotonic()
        hanging = [pool.submit(_post, base, image, 60) for _ in range(2)]  # every fetch slot (2) taken
        time.sleep(0.5)
        busy = _post(base, image)  # a third is refused at once, not queued
        text = _post(base, _chat())  # text-only requests are not behind the fetches
        assert text.status_code == 200, text.text
        assert not any(f.done() for f in hanging), "the text-only request should not wait for the fetches"
        error = _error(busy, 503)
        assert error["code"] == "server_busy" and busy.headers.get("retry-after")
        for future in hanging:
            failed = _error(future.result(), 400)
            assert "timed out" in failed["message"]
        assert time.monotonic() - started < MEDIA_TIMEOUT + 5  # the whole fetch is bounded, dripped headers too
    assert _post(base, image).status_code == 400  # the slots were given back
