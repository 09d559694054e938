"""Conversation templates of every InternVL generation, and the prompts the official ``chat()`` builds.

One place for the templates (system message, role tags, separators, stop tokens), the exact ``chat()`` prompt
(:func:`build_prompt`), a richer builder for the engine (:func:`build_chat_prompt`: images in any turn, ``Image-N``
and ``FrameN`` labels), and family detection from a checkpoint's ``config.json`` (:func:`detect_family`, from
:mod:`internvl_tools.checkpoints.config`).
Source: ``research/internvl_reference.md`` §1–3 and §7, checked against OpenGVLab/InternVL ``conversation.py``.

>>> prompt = build_prompt("internvl2_5", "Describe.", num_patches_list=[1], tokens_per_tile=2)
>>> prompt.endswith("<|im_start|>user\\n<img><IMG_CONTEXT><IMG_CONTEXT></img>\\nDescribe.<|im_end|>\\n"
...                 "<|im_start|>assistant\\n")
True
>>> get_template("internvl2_5").stop_token
'<|im_end|>'
"""

from __future__ import annotations

import difflib
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from types import MappingProxyType
from typing import Any, Literal

from internvl_tools.constants import (
    DEFAULT_TOKENS_PER_TILE,
    IMAGE_PLACEHOLDER,
    IMG_CONTEXT_TOKEN,
    IMG_END_TOKEN,
    IMG_START_TOKEN,
    SYSTEM_MESSAGE_25,
    SYSTEM_MESSAGE_GPT_OSS,
    SYSTEM_MESSAGE_OLD,
)
from internvl_tools.errors import TemplateError

__all__ = [
    "TEMPLATES",
    "ChatPrompt",
    "FamilyInfo",
    "ImageSlot",
    "PromptTurn",
    "Template",
    "VideoSlot",
    "build_chat_prompt",
    "build_prompt",
    "detect_family",
    "detect_template",
    "expand_image_placeholders",
    "get_template",
]

#: What a gpt-oss based InternVL writes right after ``<|start|>assistant`` for its answer (training format).
GPT_OSS_FINAL_HEADER = "<|channel|>final<|message|>"
_GPT_OSS_CHANNEL = "<|channel|>"
_GPT_OSS_MESSAGE = "<|message|>"


@dataclass(frozen=True)
class Template:
    """One InternVL conversation template (the official ``Conversation`` registration, immutable).

    ``style`` is how messages are joined: ``"mpt"`` (role + msg + sep), ``"mpt_two"`` (gpt-oss: ``sep2`` closes
    only a final assistant message) or ``"internvl_zh"`` (V1-1: ``role: msg`` with ``' '`` / ``'</s>'``).

    >>> t = get_template("Hermes-2")
    >>> t.render([("user", "Hi"), ("assistant", None)], system_message="S")
    '<|im_start|>system\\nS<|im_end|><|im_start|>user\\nHi<|im_end|><|im_start|>assistant\\n'
    >>> t.stop_sequences
    ('<|im_end|>', '<|endoftext|>')
    """

    name: str
    system_template: str
    system_message: str
    roles: tuple[str, str]
    sep: str
    sep2: str | None = None
    style: Literal["mpt", "mpt_two", "internvl_zh"] = "mpt"
    stop_str: str | None = None

    @property
    def stop_token(self) -> str:
        """The one token the official code makes the eos: ``sep.strip()``, or ``sep2.strip()`` for gpt-oss."""
        if self.style == "mpt_two" and self.sep2:
            return self.sep2.strip()
        return self.sep.strip()

    @property
    def stop_sequences(self) -> tuple[str, ...]:
        """Strings at which decoded text is cut: the stop token, then the template's ``stop_str`` if any.

        For gpt-oss only ``<|return|>`` is listed: ``<|end|>`` also closes an analysis message that precedes the
        final answer, so cutting there would return the reasoning instead of the answer.
        """
        out = [self.stop_token]
        if self.stop_str and self.stop_str not in out:
            out.append(self.stop_str)
        return tuple(out)

    def system_prompt(self, system_message: str | None = None) -> str:
        """The rendered system block without its separator (``internvl_zh``: the bare message)."""
        message = self.system_message if system_message is None else system_message
        if self.style == "internvl_zh":
            return message
        # Same result as the official ``system_template.format(system_message=...)``, without brace parsing.
        return self.system_template.replace("{system_message}", message)

    def render(
        self,
        turns: Sequence[tuple[str, str | None]],
        system_message: str | None = None,
        *,
        continue_final: bool = False,
    ) -> str:
        """Render ``(role, message)`` turns exactly as the official ``Conversation.get_prompt()``.

        ``role`` is ``"user"`` or ``"assistant"``. A falsy message (``None`` or ``""``) renders the bare role tag,
        as upstream does; end with ``("assistant", None)`` for the open slot the model answers in. The system
        block is always emitted, even for an empty message. ``system_message=None`` uses the template default.

        ``continue_final=True`` leaves the last (assistant) message open, without its separator, so generation
        continues it (answer prefill). Not an upstream feature.

        For gpt-oss, an assistant message that does not start with ``<|channel|>`` gets the
        ``<|channel|>final<|message|>`` header: the official ``chat()`` decodes with special tokens kept, so the
        answers it stores in history carry that header, and training renders assistant turns the same way.

        >>> get_template("internvl_zh").render([("user", "Q"), ("assistant", None)])
        ' <human>: Q <bot>:'
        """
        last = len(turns) - 1
        if continue_final and (not turns or turns[-1][0] != "assistant" or not turns[-1][1]):
            raise TemplateError("continue_final=True needs a final assistant turn with text to continue")
        # internvl_zh opens with the bare system message and sep2 (' '); the others with the system block and sep.
        opener = (self.sep2 or "") if self.style == "internvl_zh" else self.sep
        out = self.system_prompt(system_message) + opener
        for i, (role, message) in enumerate(turns):
            tag = self._role_tag(role)
            if self.style == "mpt_two" and role == "assistant" and message and not message.startswith(_GPT_OSS_CHANNEL):
                message = GPT_OSS_FINAL_HEADER + message
            if self.style == "internvl_zh":
                if not message:
                    out += tag + ":"
                    continue
                out += tag + ": " + message
            else:
                if not message:
                    out += tag
                    continue
                out += tag + message
            if continue_final and i == last:
                break
            out += self._closing_sep(role, is_last=i == last)
        return out

    def postprocess(self, text: str) -> str:
        """Cut decoded model output at the stop sequences and strip it, as the official ``chat()`` does.

        Upstream cuts only at ``stop_token``; cutting at ``stop_str`` too changes nothing for text decoded with
        special tokens skipped. For gpt-oss the reply's ``<|channel|>…<|message|>`` header is removed (the
        official code returns it) and, when an analysis message precedes it, only the final message is kept.

        >>> get_template("internvl2_5").postprocess(" A cat.<|im_end|>junk")
        'A cat.'
        >>> get_template("internvl3_5_gpt_oss").postprocess("<|channel|>final<|message|>A cat.<|return|>")
        'A cat.'
        """
        for stop in self.stop_sequences:
            text = text.split(stop)[0]
        if self.style == "mpt_two":
            if GPT_OSS_FINAL_HEADER in text:
                text = text.rsplit(GPT_OSS_FINAL_HEADER, 1)[1]
            elif text.lstrip().startswith(_GPT_OSS_CHANNEL) and _GPT_OSS_MESSAGE in text:
                text = text.split(_GPT_OSS_MESSAGE, 1)[1]
        return text.strip()

    def _role_tag(self, role: str) -> str:
        if role == "user":
            return self.roles[0]
        if role == "assistant":
            return self.roles[1]
        raise TemplateError(f"unknown role {role!r} in template {self.name!r}; use 'user' or 'assistant'")

    def _closing_sep(self, role: str, *, is_last: bool) -> str:
        if self.style == "internvl_zh":
            # Upstream alternates by message index (user even, assistant odd); keyed by role it is the same
            # for well-formed conversations and stays right if a caller repeats a role.
            return (self.sep2 or "") if role == "user" else self.sep
        if self.style == "mpt_two" and role == "assistant" and is_last and self.sep2 is not None:
            return self.sep2
        return self.sep


_CHATML_SYSTEM = "<|im_start|>system\n{system_message}"
_CHATML_ROLES = ("<|im_start|>user\n", "<|im_start|>assistant\n")

TEMPLATES: Mapping[str, Template] = MappingProxyType(
    {
        t.name: t
        for t in (
            # Hermes-2 and internlm2-chat render identically; they differ only in training (<s>), and
            # Hermes-2's stop_str is never read by chat().
            Template(
                "Hermes-2", _CHATML_SYSTEM, SYSTEM_MESSAGE_OLD, _CHATML_ROLES, "<|im_end|>", stop_str="<|endoftext|>"
            ),
            Template("internlm2-chat", _CHATML_SYSTEM, SYSTEM_MESSAGE_OLD, _CHATML_ROLES, "<|im_end|>"),
            Template(
                "phi3-chat",
                "<|system|>\n{system_message}",
                SYSTEM_MESSAGE_OLD,
                ("<|user|>\n", "<|assistant|>\n"),
                "<|end|>",
            ),
            Template("internvl2_5", _CHATML_SYSTEM, SYSTEM_MESSAGE_25, _CHATML_ROLES, "<|im_end|>\n"),
            Template(
                "internvl3_5_gpt_oss",
                "<|start|>system<|message|>{system_message}",
                SYSTEM_MESSAGE_GPT_OSS,
                ("<|start|>user<|message|>", "<|start|>assistant"),
                "<|end|>",
                sep2="<|return|>",
                style="mpt_two",
            ),
            # V1-1: empty system message; user messages end with sep2=' ', assistant messages with sep='</s>'.
            Template("internvl_zh", "", "", ("<human>", "<bot>"), "</s>", sep2=" ", style="internvl_zh"),
        )
    }
)


def _alias_key(name: str) -> str:
    return re.sub(r"[\s._-]+", "", name.lower())


_ALIASES: dict[str, str] = {_alias_key(n): n for n in TEMPLATES}
_ALIASES["gptoss"] = "internvl3_5_gpt_oss"


def get_template(name_or_template: str | Template) -> Template:
    """The template with this name; case, ``-``, ``_`` and ``.`` are ignored (``"internvl2.5"`` works).

    >>> get_template("InternVL2.5").name
    'internvl2_5'
    """
    if isinstance(name_or_template, Template):
        return name_or_template
    if not isinstance(name_or_template, str):
        raise TemplateError(f"template must be a name or a Template, got {type(name_or_template).__name__}")
    if name_or_template in TEMPLATES:
        return TEMPLATES[name_or_template]
    canonical = _ALIASES.get(_alias_key(name_or_template))
    if canonical is None:
        close = difflib.get_close_matches(name_or_template, list(TEMPLATES), n=1, cutoff=0.5)
        hint = f" Did you mean {close[0]!r}?" if close else ""
        raise TemplateError(
            f"unknown conversation template {name_or_template!r}; known templates: {', '.join(TEMPLATES)}.{hint}"
        )
    return TEMPLATES[canonical]


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


# --- family detection lives in families (re-exported: part of the prompt API) ----------------------------------

from internvl_tools.checkpoints.config import FamilyInfo, detect_family, detect_template  # noqa: E402
