"""Tool references are confined; every refusal is an error ToolMessage (never an exception), before any model work."""

from __future__ import annotations

from pathlib import Path

import pytest
from langchain_core.messages import ToolMessage

from langchain_internvl import InternVLGroundingTool, InternVLOCRTool, InternVLVisionTool


def call(tool, args: dict) -> ToolMessage:
    return tool.invoke({"name": tool.name, "args": args, "id": "call-1", "type": "tool_call"})


@pytest.mark.parametrize(
    ("image", "needle"),
    [
        ("../secret.png", "'..'"),
        ("sub/../../secret.png", "'..'"),
        ("/etc/passwd", "Absolute paths"),
        ("~/secret.png", "Absolute paths"),
        ("missing.png", "No such file"),
        ("http://127.0.0.1/x.png", "URLs are disabled"),
        ("file:///etc/passwd", "Unsupported reference"),
        ("", "empty"),
    ],
)
@pytest.mark.parametrize("tool_cls", [InternVLVisionTool, InternVLGroundingTool, InternVLOCRTool])
def test_bad_references_come_back_as_error_tool_messages(
    tool_cls: type, image: str, needle: str, media_dir: Path
) -> None:
    tool = tool_cls(model="does/not-exist", allowed_dirs=[str(media_dir)])
    args = {"image": image, "question": "q", "phrase": "p"}
    fields = tool.args_schema.model_fields
    message = call(tool, {k: v for k, v in args.items() if k in fields})
    assert isinstance(message, ToolMessage)
    assert message.status == "error"
    assert needle in message.content
    assert tool._engines == {}  # refused before an engine was created


def test_symlinks_out_of_the_sandbox_are_refused(media_dir: Path) -> None:
    (media_dir / "link.png").symlink_to(media_dir.parent / "secret.png")
    tool = InternVLVisionTool(model="does/not-exist", allowed_dirs=[str(media_dir)])
    message = call(tool, {"image": "link.png", "question": "What?"})
    assert message.status == "error" and "outside the allowed folder" in message.content


def test_without_allowed_dirs_no_local_file_is_read(media_dir: Path) -> None:
    tool = InternVLOCRTool(model="does/not-exist")
    message = call(tool, {"image": "street.png"})
    assert message.status == "error" and "allowed_dirs" in message.content


def test_validation_errors_are_error_messages_too(media_dir: Path) -> None:
    tool = InternVLVisionTool(model="does/not-exist", allowed_dirs=[str(media_dir)])
    message = call(tool, {"image": "street.png"})  # no question
    assert message.status == "error"


def test_page_on_an_image_is_refused(media_dir: Path) -> None:
    tool = InternVLVisionTool(model="does/not-exist", allowed_dirs=[str(media_dir)])
    message = call(tool, {"image": "street.png", "question": "q", "page": 3})
    assert message.status == "error" and "not a PDF" in message.content
