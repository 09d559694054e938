"""Prompt strings for InternVL: the exact prompt the official ``chat()`` builds, and the engine's richer builder.

Owns image-token expansion (``<image>`` → ``<img><IMG_CONTEXT>…</img>``, :func:`expand_image_placeholders`), the
``chat()`` prompt (:func:`build_prompt`) and :func:`build_chat_prompt` (images and videos in any user turn,
``Image-N`` and ``FrameN`` labels). Templates come from :mod:`internvl_tools.prompts.templates`.
Source: ``docs/internvl_reference.md`` §2, §3 and §7, checked against OpenGVLab/InternVL ``conversation.py`` and
the ``chat()`` of ``modeling_internvl_chat.py``.

>>> prompt = build_prompt("internvl2_5", "Describe.", num_patches_list=[1], tokens_per_tile=2)
>>> prompt.endswith("<|im_start|>user\\n<img><IMG_CONTEXT><IMG_CONTEXT></img>\\nDescribe.<|im_end|>\\n"
...                 "<|im_start|>assistant\\n")
True
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any, Literal

from internvl_tools.constants import (
    DEFAULT_TOKENS_PER_TILE,
    IMAGE_PLACEHOLDER,
    IMG_CONTEXT_TOKEN,
    IMG_END_TOKEN,
    IMG_START_TOKEN,
)
from internvl_tools.errors import TemplateError
from internvl_tools.prompts.templates import Template, get_template

__all__ = [
    "ChatPrompt",
    "ImageSlot",
    "PromptTurn",
    "VideoSlot",
    "build_chat_prompt",
    "build_prompt",
    "expand_image_placeholders",
    "image_tokens",
]


# --- the official chat() prompt ----------------------------------------------------------------------------------


def _check_tokens_per_tile(tokens_per_tile: int) -> None:
    if isinstance(tokens_per_tile, bool) or not isinstance(tokens_per_tile, int) or tokens_per_tile < 1:
        raise TemplateError(f"tokens_per_tile must be a positive int (256 for 448px tiles), got {tokens_per_tile!r}")


def _check_patch_count(n: Any, where: str) -> None:
    if isinstance(n, bool) or not isinstance(n, int) or n < 1:
        raise TemplateError(f"{where} must be a positive int (tiles of one image), got {n!r}")


def image_tokens(num_patches: int, tokens_per_tile: int = DEFAULT_TOKENS_PER_TILE) -> str:
    """``<img>`` + ``<IMG_CONTEXT>`` × (tokens_per_tile·num_patches) + ``</img>``: what one ``<image>`` becomes.

    >>> image_tokens(1, 2)
    '<img><IMG_CONTEXT><IMG_CONTEXT></img>'
    """
    _check_patch_count(num_patches, "num_patches")
    _check_tokens_per_tile(tokens_per_tile)
    return IMG_START_TOKEN + IMG_CONTEXT_TOKEN * (tokens_per_tile * num_patches) + IMG_END_TOKEN


def expand_image_placeholders(
    prompt: str, num_patches_list: Sequence[int], tokens_per_tile: int = DEFAULT_TOKENS_PER_TILE
) -> str:
    """Replace each ``<image>`` of a rendered prompt, in order, by its image tokens (upstream ``replace(.., 1)``).

    Raises :class:`TemplateError` when the number of ``<image>`` placeholders differs from
    ``len(num_patches_list)`` (upstream would silently leave placeholders, or drop images).

    >>> expand_image_placeholders("a <image> b <image>", [1, 2], tokens_per_tile=1)
    'a <img><IMG_CONTEXT></img> b <img><IMG_CONTEXT><IMG_CONTEXT></img>'
    """
    _check_tokens_per_tile(tokens_per_tile)
    for n in num_patches_list:
        _check_patch_count(n, "each entry of num_patches_list")
    count = prompt.count(IMAGE_PLACEHOLDER)
    if count != len(num_patches_list):
        raise TemplateError(
            f"the prompt has {count} '<image>' placeholder(s) but num_patches_list has {len(num_patches_list)} "
            f"entr{'y' if len(num_patches_list) == 1 else 'ies'}; give one num_patches entry per '<image>' "
            "(images shown in earlier turns included) or add/remove '<image>' placeholders to match"
        )
    pieces = prompt.split(IMAGE_PLACEHOLDER)
    out = [pieces[0]]
    for n, rest in zip(num_patches_list, pieces[1:], strict=True):
        out.append(IMG_START_TOKEN + IMG_CONTEXT_TOKEN * (tokens_per_tile * n) + IMG_END_TOKEN)
        out.append(rest)
    return "".join(out)


def build_prompt(
    template: str | Template,
    question: str,
    history: Sequence[tuple[str, str | None]] = (),
    num_patches_list: Sequence[int] = (),
    tokens_per_tile: int = DEFAULT_TOKENS_PER_TILE,
    system_message: str | None = None,
) -> str:
    """The exact string the official ``model.chat()`` tokenises.

    - ``<image>\\n`` is put before the question only when there is no history, there are images
      (``num_patches_list`` non-empty) and the question has no ``<image>`` of its own. Upstream tests
      ``history is None``; an empty ``history`` counts as none here.
    - History ``(question, answer)`` pairs render before the question; with history no ``<image>`` is added,
      so the first ``<image>`` of the rendered history receives the first image's tokens, as upstream.
    - Each ``<image>`` of the rendered prompt is expanded in ``num_patches_list`` order. Several images under a
      single ``<image>`` ("combined images") are one entry holding their total tile count.
    - ``system_message=None`` means the template default; pass ``config.system_message`` when the checkpoint
      sets one.

    >>> build_prompt("internvl_zh", "Describe.", num_patches_list=[1], tokens_per_tile=1)
    ' <human>: <img><IMG_CONTEXT></img>\\nDescribe. <bot>:'
    """
    tpl = get_template(template)
    if not history and num_patches_list and IMAGE_PLACEHOLDER not in question:
        question = IMAGE_PLACEHOLDER + "\n" + question
    turns: list[tuple[str, str | None]] = []
    for pair in history:
        if len(pair) != 2:
            raise TemplateError(f"each history entry must be a (question, answer) pair, got {pair!r}")
        turns += [("user", pair[0]), ("assistant", pair[1])]
    turns += [("user", question), ("assistant", None)]
    return expand_image_placeholders(tpl.render(turns, system_message), num_patches_list, tokens_per_tile)


# --- the engine's builder: images in any turn, Image-N / FrameN labels --------------------------------------------


@dataclass(frozen=True)
class ImageSlot:
    """An image of ``num_patches`` tiles (thumbnail included) at this point of a message."""

    num_patches: int

    def __post_init__(self) -> None:
        _check_patch_count(self.num_patches, "ImageSlot.num_patches")


@dataclass(frozen=True)
class VideoSlot:
    """A video of ``num_frames`` frames, each frame ``patches_per_frame`` tiles (1, as upstream samples them)."""

    num_frames: int
    patches_per_frame: int = 1

    def __post_init__(self) -> None:
        _check_patch_count(self.num_frames, "VideoSlot.num_frames")
        _check_patch_count(self.patches_per_frame, "VideoSlot.patches_per_frame")


PromptPart = str | ImageSlot | VideoSlot


@dataclass(frozen=True)
class PromptTurn:
    """One message: ``role`` ("system", "user" or "assistant") and its ordered parts (a str is one text part)."""

    role: Literal["system", "user", "assistant"]
    parts: Sequence[PromptPart] = ()

    def __post_init__(self) -> None:
        if self.role not in ("system", "user", "assistant"):
            raise TemplateError(f"PromptTurn.role must be 'system', 'user' or 'assistant', got {self.role!r}")
        parts = (self.parts,) if isinstance(self.parts, str) else tuple(self.parts)
        for p in parts:
            if not isinstance(p, (str, ImageSlot, VideoSlot)):
                raise TemplateError(f"a prompt part must be str, ImageSlot or VideoSlot, got {type(p).__name__}")
        object.__setattr__(self, "parts", parts)


@dataclass(frozen=True)
class ChatPrompt:
    """A rendered conversation: ``text`` is fully expanded; ``num_patches_list`` is in placeholder order."""

    text: str
    num_patches_list: tuple[int, ...]
    num_images: int
    num_video_frames: int
    #: The same prompt with each image still written ``<image>`` (for display and debugging).
    unexpanded: str = field(default="", repr=False)


#: Strings a text part may not contain: they would be expanded as, or tokenised into, image tokens.
_RESERVED_IN_TEXT = (IMAGE_PLACEHOLDER, IMG_CONTEXT_TOKEN, IMG_START_TOKEN, IMG_END_TOKEN)


def _check_text(text: str, role: str) -> None:
    for token in _RESERVED_IN_TEXT:
        if token in text:
            raise TemplateError(
                f"a {role} text part contains {token!r}, which is reserved for images; pass images as "
                "ImageSlot/VideoSlot parts (or build_prompt for the raw upstream form) and remove it from the text"
            )


def build_chat_prompt(
    template: str | Template,
    turns: Sequence[PromptTurn],
    *,
    system_message: str | None = None,
    tokens_per_tile: int = DEFAULT_TOKENS_PER_TILE,
    image_labels: Literal["auto", "always", "never"] = "auto",
) -> ChatPrompt:
    """Render a conversation with images or videos in any user turn, as the official code lays them out.

    Rules:

    1. Parts render in order. Text renders verbatim; text parts are concatenated as they are.
    2. An image renders ``<image>\\n``, as ``Image-{k}: <image>\\n`` when labelled; ``k`` counts images across the
       whole conversation from 1. ``image_labels="auto"`` labels when the conversation has more than one image
       (the README multi-image form; with one image the demo writes plain ``<image>\\n``), ``"always"`` and
       ``"never"`` force it. Video frames are not counted as images.
    3. A video of n frames renders ``Frame1: <image>\\nFrame2: <image>\\n…`` (the README inference form, numbered
       from 1 in each video), one entry of ``patches_per_frame`` tiles per frame in ``num_patches_list``.
    4. A media part that follows text not ending in ``\\n`` starts on a new line (a ``\\n`` is inserted), so
       labels and images always begin a line.
    5. A system turn replaces the system message (it wins over ``system_message``); it may only be the first
       turn and holds text only. ``system_message=None`` and no system turn mean the template default.
    6. Consecutive turns of the same role are merged into one message, joined by a ``\n`` unless the first
       already ends with one: the templates alternate user/assistant and V1-1 depends on it.
    7. The first message must be a user one and no user message may be empty; images and videos only appear
       in user turns. A final user turn gets the open assistant slot; a final assistant turn is a prefill the
       model continues (an empty one is just the open slot; an empty earlier one renders as upstream renders
       an empty answer in history: the bare role tag).
    8. Text (system message included) may not contain ``<image>``, ``<img>``, ``</img>`` or ``<IMG_CONTEXT>``:
       they would be mistaken for image tokens.

    A single user turn ``[ImageSlot(n), "Describe."]`` gives exactly
    ``build_prompt(template, "Describe.", num_patches_list=[n])``.

    >>> p = build_chat_prompt("internvl2_5", [PromptTurn("user", [ImageSlot(2), ImageSlot(1), "Compare."])],
    ...                       tokens_per_tile=1)
    >>> p.unexpanded.split("<|im_start|>user\\n")[1]
    'Image-1: <image>\\nImage-2: <image>\\nCompare.<|im_end|>\\n<|im_start|>assistant\\n'
    >>> p.num_patches_list, p.num_images
    ((2, 1), 2)
    """
    tpl = get_template(template)
    _check_tokens_per_tile(tokens_per_tile)
    if image_labels not in ("auto", "always", "never"):
        raise TemplateError(f"image_labels must be 'auto', 'always' or 'never', got {image_labels!r}")
    turns = list(turns)
    for t in turns:
        if not isinstance(t, PromptTurn):
            raise TemplateError(f"turns must be PromptTurn objects, got {type(t).__name__}: {t!r}")

    if turns and turns[0].role == "system":
        if any(not isinstance(p, str) for p in turns[0].parts):
            raise TemplateError("a system turn may hold text only; put images in a user turn")
        system_message = "".join(turns[0].parts)
        turns = turns[1:]
    if any(t.role == "system" for t in turns):
        raise TemplateError("a system turn is only allowed as the first turn; merge it into the first one")
    if system_message is not None:
        _check_text(system_message, "system")

    merged: list[tuple[str, list[PromptPart | None]]] = []
    for t in turns:
        if merged and merged[-1][0] == t.role:
            merged[-1][1].append(None)  # the seam between two merged turns
            merged[-1][1].extend(t.parts)
        else:
            merged.append((t.role, list(t.parts)))
    if not merged or merged[0][0] != "user":
        raise TemplateError("the conversation must start with a user turn (after an optional system turn)")

    total_images = sum(isinstance(p, ImageSlot) for _, parts in merged for p in parts)
    label = image_labels == "always" or (image_labels == "auto" and total_images > 1)
    num_patches: list[int] = []
    image_index = 0
    frames = 0
    rendered: list[tuple[str, str | None]] = []
    for role, parts in merged:
        chunks: list[str] = []
        for p in parts:
            tail = next((c for c in reversed(chunks) if c), "")
            needs_newline = bool(tail) and not tail.endswith("\n")
            if p is None:
                if needs_newline:
                    chunks.append("\n")
                continue
            if isinstance(p, str):
                _check_text(p, role)
                chunks.append(p)
                continue
            if role != "user":
                raise TemplateError(f"images and videos may only appear in user turns, found one in an {role} turn")
            if needs_newline:
                chunks.append("\n")
            if isinstance(p, ImageSlot):
                image_index += 1
                chunks.append((f"Image-{image_index}: " if label else "") + IMAGE_PLACEHOLDER + "\n")
                num_patches.append(p.num_patches)
            else:
                chunks.extend(f"Frame{i}: {IMAGE_PLACEHOLDER}\n" for i in range(1, p.num_frames + 1))
                num_patches.extend([p.patches_per_frame] * p.num_frames)
                frames += p.num_frames
        content = "".join(chunks)
        if role == "user" and not content:
            # Upstream would render a bare role tag with no separator: a malformed prompt, never intended.
            raise TemplateError("a user turn has no content; give it text, an ImageSlot or a VideoSlot, or drop it")
        rendered.append((role, content))

    prefill = rendered[-1][0] == "assistant"
    if prefill and not rendered[-1][1]:
        rendered.pop()  # an empty final assistant turn is just the open slot
        prefill = False
    if not prefill:
        rendered.append(("assistant", None))
    unexpanded = tpl.render(rendered, system_message, continue_final=prefill)
    text = expand_image_placeholders(unexpanded, num_patches, tokens_per_tile)
    return ChatPrompt(text, tuple(num_patches), image_index, frames, unexpanded)
