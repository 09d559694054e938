"""Our conversation model accepts every form the integrations hand it, and names what is wrong otherwise."""

from __future__ import annotations

import pytest

from internvl_tools.errors import TemplateError
from internvl_tools.messages import ImagePart, Message, TextPart, VideoPart, normalize_messages, user_message


@pytest.mark.parametrize(
    ("raw", "kinds"),
    [
        ("Hello", [["TextPart"]]),
        ({"role": "user", "content": "Hi"}, [["TextPart"]]),
        (
            [{"role": "user", "content": [{"type": "image", "image": "a.png"}, {"type": "text", "text": "Q"}]}],
            [["ImagePart", "TextPart"]],
        ),
        (
            [{"role": "user", "content": [{"type": "image_url", "image_url": {"url": "data:image/png;base64,AA"}}]}],
            [["ImagePart"]],
        ),
        ([{"role": "user", "content": [{"type": "image_url", "image_url": "http://x/y.png"}]}], [["ImagePart"]]),
        ([{"role": "user", "content": [{"type": "image", "base64": "AA", "mime_type": "image/png"}]}], [["ImagePart"]]),
        ([{"role": "user", "content": [{"type": "video", "video": "v.mp4", "num_frames": 4}]}], [["VideoPart"]]),
        (
            [{"role": "system", "content": "Be brief."}, {"role": "user", "content": ["plain", {"text": "t"}]}],
            [["TextPart"], ["TextPart", "TextPart"]],
        ),
    ],
)
def test_accepted_forms(raw: object, kinds: list[list[str]]) -> None:
    messages = normalize_messages(raw)
    assert [[type(p).__name__ for p in m.content] for m in messages] == kinds


def test_base64_block_becomes_a_data_uri() -> None:
    [msg] = normalize_messages(
        [{"role": "user", "content": [{"type": "image", "base64": "AA", "mime_type": "image/png"}]}]
    )
    assert msg.content[0].image == "data:image/png;base64,AA"


def test_typed_messages_pass_through() -> None:
    msg = Message(role="user", content=[TextPart(text="x"), ImagePart(image="a.png", max_tiles=2)])
    assert normalize_messages([msg]) == [msg]
    assert msg.text == "x"
    assert msg.images[0].max_tiles == 2


def test_user_message_puts_images_first() -> None:
    msg = user_message("Q?", ["a.png", "b.png"])
    assert [p.type for p in msg.content] == ["image", "image", "text"]
    assert user_message("Q?", "a.png").content[0].image == "a.png"
    assert [p.type for p in user_message("Q?").content] == ["text"]


@pytest.mark.parametrize(
    ("raw", "fragment"),
    [
        ([], "non-empty"),
        ([{"role": "robot", "content": "x"}], "role must be"),
        ([{"role": "user", "content": [{"type": "audio", "audio": "x.wav"}]}], "unsupported content part type 'audio'"),
        ([{"role": "user", "content": [{"type": "image"}]}], "needs one of"),
        ([{"role": "user", "content": [{"type": "text", "text": 3}]}], "string 'text'"),
        ([{"role": "user", "content": 42}], "content must be"),
        (["not a dict"], "expected a Message"),
        ([{"role": "user", "content": "q"}, {"role": "assistant", "content": "a"}], "assistant turn"),
    ],
)
def test_malformed_messages_name_the_problem(raw: object, fragment: str) -> None:
    with pytest.raises(TemplateError, match=fragment):
        normalize_messages(raw)


def test_video_part_bounds() -> None:
    with pytest.raises(ValueError):
        VideoPart(video="v.mp4", num_frames=0)
