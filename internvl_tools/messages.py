"""Our own small, typed conversation model, independent of LangChain and LlamaIndex.

A conversation is a list of :class:`Message` (system / user / assistant), each holding ordered parts: text,
image or video. Images may appear in any turn. Plain dicts in the transformers chat format are accepted wherever
messages are, and so is the OpenAI ``image_url`` part:

>>> msgs = normalize_messages([{"role": "user", "content": [{"type": "image", "image": "page.png"},
...                                                         {"type": "text", "text": "What is the total?"}]}])
>>> [type(p).__name__ for p in msgs[0].content]
['ImagePart', 'TextPart']
>>> normalize_messages("Hello")[0].content[0].text
'Hello'
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field

from internvl_tools.constants import MAX_TILES_LIMIT
from internvl_tools.errors import TemplateError

__all__ = ["ImagePart", "Message", "Part", "TextPart", "VideoPart", "normalize_messages", "user_message"]


class TextPart(BaseModel):
    """A run of text."""

    model_config = ConfigDict(frozen=True)
    type: Literal["text"] = "text"
    text: str


class ImagePart(BaseModel):
    """An image: a path, bytes, file object, PIL image, numpy array, base64 string, data URI or URL.

    ``max_tiles`` overrides the engine's per-image tile budget for this image.
    """

    model_config = ConfigDict(frozen=True, arbitrary_types_allowed=True)
    type: Literal["image"] = "image"
    image: Any
    max_tiles: int | None = Field(default=None, ge=1, le=MAX_TILES_LIMIT)


class VideoPart(BaseModel):
    """A video file (path or bytes); ``num_frames`` frames are sampled as the reference does, one tile each."""

    model_config = ConfigDict(frozen=True, arbitrary_types_allowed=True)
    type: Literal["video"] = "video"
    video: Any
    num_frames: int = Field(default=8, ge=1, le=256)
    start: float | None = None
    end: float | None = None


Part = TextPart | ImagePart | VideoPart


class Message(BaseModel):
    """One turn of a conversation."""

    model_config = ConfigDict(frozen=True, arbitrary_types_allowed=True)
    role: Literal["system", "user", "assistant"]
    content: list[Part]

    @property
    def text(self) -> str:
        """The message's text parts joined together."""
        return "".join(p.text for p in self.content if isinstance(p, TextPart))

    @property
    def images(self) -> list[ImagePart]:
        return [p for p in self.content if isinstance(p, ImagePart)]


def user_message(question: str, images: Any = None) -> Message:
    """A user turn with the images first and then the question, as the official ``chat()`` lays them out.

    >>> user_message("Describe.", ["a.png"]).content[0].type
    'image'
    """
    parts: list[Part] = []
    if images is not None:
        if not isinstance(images, (list, tuple)):
            images = [images]
        parts.extend(ImagePart(image=image) for image in images)
    parts.append(TextPart(text=question))
    return Message(role="user", content=parts)


def _part_from_dict(raw: Mapping[str, Any], where: str) -> Part:
    kind = raw.get("type")
    if kind == "text" or (kind is None and "text" in raw):
        text = raw.get("text")
        if not isinstance(text, str):
            raise TemplateError(f"{where}: a text part needs a string 'text', got {type(text).__name__}.")
        return TextPart(text=text)
    if kind == "image":
        for key in ("image", "url", "path", "base64", "data"):
            if raw.get(key) is not None:
                value = raw[key]
                if key == "base64" and raw.get("mime_type"):
                    value = f"data:{raw['mime_type']};base64,{value}"
                return ImagePart(image=value, max_tiles=raw.get("max_tiles"))
        raise TemplateError(f"{where}: an image part needs one of 'image', 'url', 'path' or 'base64'.")
    if kind == "image_url":
        value = raw.get("image_url")
        if isinstance(value, Mapping):
            value = value.get("url")
        if not isinstance(value, str):
            raise TemplateError(f"{where}: an 'image_url' part needs a URL string or {{'url': ...}}.")
        return ImagePart(image=value)
    if kind == "video":
        value = raw.get("video", raw.get("path", raw.get("url")))
        if value is None:
            raise TemplateError(f"{where}: a video part needs 'video' (a path or bytes).")
        extra = {k: raw[k] for k in ("num_frames", "start", "end") if raw.get(k) is not None}
        return VideoPart(video=value, **extra)
    raise TemplateError(
        f"{where}: unsupported content part type {kind!r}; use 'text', 'image', 'image_url' or 'video'."
    )


def _coerce_message(raw: Any, index: int) -> Message:
    if isinstance(raw, Message):
        return raw
    where = f"message {index}"
    if not isinstance(raw, Mapping):
        raise TemplateError(
            f"{where}: expected a Message or a dict with 'role' and 'content', got {type(raw).__name__}."
        )
    role = raw.get("role")
    if role not in ("system", "user", "assistant"):
        raise TemplateError(f"{where}: role must be 'system', 'user' or 'assistant', got {role!r}.")
    content = raw.get("content")
    if content is None:
        content = []
    if isinstance(content, str):
        parts: list[Part] = [TextPart(text=content)]
    elif isinstance(content, (TextPart, ImagePart, VideoPart)):
        parts = [content]
    elif isinstance(content, Sequence):
        parts = []
        for j, item in enumerate(content):
            if isinstance(item, (TextPart, ImagePart, VideoPart)):
                parts.append(item)
            elif isinstance(item, str):
                parts.append(TextPart(text=item))
            elif isinstance(item, Mapping):
                parts.append(_part_from_dict(item, f"{where}, part {j}"))
            else:
                raise TemplateError(f"{where}, part {j}: expected a dict or a string, got {type(item).__name__}.")
    else:
        raise TemplateError(f"{where}: content must be a string or a list of parts, got {type(content).__name__}.")
    return Message(role=role, content=parts)


def normalize_messages(messages: Any) -> list[Message]:
    """Accept a string, one message, or a list of messages/dicts, and return typed :class:`Message` objects.

    Raises :class:`~internvl_tools.errors.TemplateError` naming the message and part that is malformed.
    """
    if isinstance(messages, str):
        return [Message(role="user", content=[TextPart(text=messages)])]
    if isinstance(messages, (Message, Mapping)):
        messages = [messages]
    if not isinstance(messages, Sequence) or not messages:
        raise TemplateError("messages must be a non-empty list of messages (or a single string question).")
    result = [_coerce_message(m, i) for i, m in enumerate(messages)]
    if result[-1].role == "assistant":
        raise TemplateError(
            "The last message is an assistant turn; end the conversation with a user message to get a reply."
        )
    return result
