"""Message conversion: every LangChain input style maps to the core's parts; bad inputs fail clearly."""

from __future__ import annotations

import base64
import json
from pathlib import Path

import pytest
from internvl_tools import MediaPolicy, PathNotAllowedError, RemoteFetchDisabledError
from langchain_core.messages import AIMessage, HumanMessage, SystemMessage, ToolMessage
from PIL import Image

from langchain_internvl import UnsupportedContentError
from langchain_internvl._messages import to_core_messages
from tests.conftest import make_png, make_scanned_pdf

PNG = make_png()
B64 = base64.b64encode(PNG).decode()
DATA_URI = f"data:image/png;base64,{B64}"


def kinds(core: list[dict]) -> list[list[str]]:
    return [[p["type"] for p in m["content"]] for m in core]


@pytest.mark.parametrize(
    "block",
    [
        {"type": "image_url", "image_url": {"url": DATA_URI}},
        {"type": "image_url", "image_url": DATA_URI},
        {"type": "image", "base64": B64, "mime_type": "image/png"},
        {"type": "image", "source_type": "base64", "data": B64, "mime_type": "image/png"},
        {"type": "image", "url": DATA_URI},
    ],
    ids=["openai-dict", "openai-str", "v1-base64", "v0-base64", "v1-data-url"],
)
def test_inline_images_become_data_uris_that_decode_to_the_same_pixels(block: dict) -> None:
    core = to_core_messages([HumanMessage([{"type": "text", "text": "What?"}, block])], MediaPolicy())
    image_parts = [p for p in core[0]["content"] if p["type"] == "image"]
    assert len(image_parts) == 1
    from internvl_tools import load_image

    assert load_image(image_parts[0]["image"]).tobytes() == load_image(PNG).tobytes()


def test_roles_and_order_are_kept_for_system_history_and_tool_results() -> None:
    messages = [
        SystemMessage("Be brief."),
        HumanMessage([{"type": "image", "base64": B64, "mime_type": "image/png"}, "Describe."]),
        AIMessage("", tool_calls=[{"name": "zoom", "args": {"x": 1}, "id": "1", "type": "tool_call"}]),
        ToolMessage([{"type": "image_url", "image_url": {"url": DATA_URI}}], tool_call_id="1", name="zoom"),
    ]
    core = to_core_messages(messages, MediaPolicy())
    assert [m["role"] for m in core] == ["system", "user", "assistant", "user"]
    assert kinds(core) == [["text"], ["image", "text"], ["text"], ["text", "image"]]
    # The assistant turn shows the call as the JSON the model writes under bind_tools; the result names the tool.
    assert json.loads(core[2]["content"][0]["text"]) == {"tool": "zoom", "arguments": {"x": 1}}
    assert core[3]["content"][0]["text"].startswith("Tool result (zoom)")


def test_http_urls_are_refused_unless_enabled() -> None:
    block = {"type": "image", "url": "http://example.com/cat.png"}
    with pytest.raises(RemoteFetchDisabledError):
        to_core_messages([HumanMessage([block])], MediaPolicy(allow_remote=False))
    with pytest.raises(RemoteFetchDisabledError):
        to_core_messages([HumanMessage([{"type": "image_url", "image_url": "https://example.com/a.png"}])],
                         MediaPolicy())  # fmt: skip


def test_file_urls_are_confined_to_allowed_dirs(tmp_path: Path) -> None:
    inside = tmp_path / "in"
    inside.mkdir()
    (inside / "ok.png").write_bytes(PNG)
    (tmp_path / "secret.png").write_bytes(PNG)
    policy = MediaPolicy(allowed_dirs=(inside,))
    ok = to_core_messages([HumanMessage([{"type": "image", "url": f"file://{inside / 'ok.png'}"}])], policy)
    assert isinstance(ok[0]["content"][0]["image"], Image.Image)
    with pytest.raises(PathNotAllowedError):
        to_core_messages([HumanMessage([{"type": "image", "url": f"file://{tmp_path / 'secret.png'}"}])], policy)
    with pytest.raises(PathNotAllowedError):  # the chat model's default: no allowed dirs, no local files at all
        to_core_messages([HumanMessage([{"type": "image", "url": f"file://{inside / 'ok.png'}"}])],
                         MediaPolicy(allow_local_files=False))  # fmt: skip


@pytest.mark.parametrize(
    ("block", "needle"),
    [
        ({"type": "image", "file_id": "file-abc"}, "file_id"),
        ({"type": "file", "file_id": "file-abc", "mime_type": "application/pdf"}, "file_id"),
        ({"type": "audio", "base64": "AAAA", "mime_type": "audio/wav"}, "audio"),
        ({"type": "file", "url": "https://example.com/a.pdf", "mime_type": "application/pdf"}, "not fetched"),
        ({"type": "file", "base64": "AAAA", "mime_type": "application/zip"}, "application/zip"),
    ],
    ids=["image-file-id", "file-file-id", "audio", "pdf-url", "zip"],
)
def test_unsupported_inputs_fail_with_a_message_naming_the_problem(block: dict, needle: str) -> None:
    with pytest.raises(UnsupportedContentError, match=needle):
        to_core_messages([HumanMessage([{"type": "text", "text": "x"}, block])], MediaPolicy())


@pytest.mark.parametrize(
    "block",
    [
        {"type": "file", "base64": base64.b64encode(make_scanned_pdf(2)).decode(), "mime_type": "application/pdf"},
        {
            "type": "file",
            "file": {
                "filename": "a.pdf",
                "file_data": "data:application/pdf;base64," + base64.b64encode(make_scanned_pdf(2)).decode(),
            },
        },
    ],
    ids=["v1-file", "openai-file"],
)
def test_pdf_blocks_become_one_labelled_image_per_page(block: dict) -> None:
    core = to_core_messages([HumanMessage([{"type": "text", "text": "Summarize"}, block])], MediaPolicy())
    assert kinds(core) == [["text", "text", "image", "text", "image"]]
    assert [p["text"] for p in core[0]["content"][1::2]] == ["Page 1:", "Page 2:"]


def test_pdfs_longer_than_the_page_limit_are_refused() -> None:
    block = {"type": "file", "base64": base64.b64encode(make_scanned_pdf(3)).decode(), "mime_type": "application/pdf"}
    with pytest.raises(UnsupportedContentError, match="max_pdf_pages=2"):
        to_core_messages([HumanMessage([block])], MediaPolicy(), max_pdf_pages=2)


def test_conversation_must_end_with_a_user_turn_and_system_is_text_only() -> None:
    with pytest.raises(UnsupportedContentError, match="ends with an AI message"):
        to_core_messages([HumanMessage("hi"), AIMessage("hello")], MediaPolicy())
    with pytest.raises(UnsupportedContentError, match="system messages carry text only"):
        to_core_messages([SystemMessage([{"type": "image", "base64": B64, "mime_type": "image/png"}]),
                          HumanMessage("hi")], MediaPolicy())  # fmt: skip
