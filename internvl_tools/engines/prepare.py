"""Conversation → model input: images tiled under the tile budget, videos sampled, the prompt rendered and encoded,
and the context-length check that refuses prompts which cannot fit.

The preparation settings are the :class:`~internvl_tools.InternVL` constructor's (``max_tiles``, ``min_tiles``,
``history_images``, ``system_message``, ``preprocess``, ``prompt_format``, ``media_policy``); they are checked once
by :func:`check_input_settings` and read from the engine (:class:`InputSettings`) on every call.

>>> check_input_settings(preprocess="fast", prompt_format="official", history_images="split", max_tiles=12)
>>> check_input_settings(preprocess="fast", prompt_format="official", history_images="last", max_tiles=None)
Traceback (most recent call last):
...
internvl_tools.errors.ConfigError: history_images must be 'split' or 'one_tile', got 'last'.
"""

from __future__ import annotations

import os
import re
import threading
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Protocol, TypeVar

from internvl_tools.constants import IMAGE_PLACEHOLDER, IMG_CONTEXT_TOKEN, MAX_TILES_LIMIT, VIDEO_PLACEHOLDER
from internvl_tools.errors import ConfigError, ContextLengthError, GenerationError
from internvl_tools.generation.text import encode_prompt
from internvl_tools.media.video import load_video
from internvl_tools.messages import ImagePart, Message, TextPart, VideoPart, normalize_messages
from internvl_tools.prompts.builder import (
    ImageSlot,
    PromptTurn,
    VideoSlot,
    build_chat_prompt,
    expand_image_placeholders,
)
from internvl_tools.tiling import split_tile_budget, tile_budget, tile_image

if TYPE_CHECKING:
    from internvl_tools.engines.registry import LoadedModel

__all__ = [
    "InputSettings",
    "PreparedInput",
    "check_context",
    "check_input_settings",
    "map_in_threads",
    "prepare_input",
    "usable_cores",
]

T = TypeVar("T")
R = TypeVar("R")
#: Most threads :func:`map_in_threads` uses by default (image decoding stops scaling well beyond this on a CPU).
MAX_PREPARE_THREADS = 4
# Fast tokenizers are not safe to drive from several threads at once ("Already borrowed"); encoding is short.
_ENCODE_LOCK = threading.Lock()


def usable_cores() -> int:
    """CPU cores this process may run on (its affinity mask where the OS has one).

    >>> usable_cores() >= 1
    True
    """
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # macOS, Windows
        return os.cpu_count() or 1


def map_in_threads(fn: Callable[[T], R], items: Sequence[T], threads: int | None = None) -> list[R]:
    """``[fn(x) for x in items]``, in order, on up to ``threads`` threads (``None``: :func:`usable_cores`, at most
    :data:`MAX_PREPARE_THREADS`). One item, or one thread, runs inline. ``fn`` should return its errors.

    >>> map_in_threads(lambda x: x * x, [1, 2, 3], threads=2)
    [1, 4, 9]
    """
    n = min(len(items), threads if threads is not None else min(MAX_PREPARE_THREADS, usable_cores()))
    if n <= 1:
        return [fn(x) for x in items]
    from concurrent.futures import ThreadPoolExecutor

    with ThreadPoolExecutor(max_workers=n, thread_name_prefix="internvl-prepare") as pool:
        return list(pool.map(fn, items))


@dataclass
class PreparedInput:
    """One conversation turned into token ids and pixels."""

    input_ids: list[int]
    pixel_values: Any | None
    num_tiles: int
    image_tokens: int
    text: str


class InputSettings(Protocol):
    """The engine settings that decide how a conversation becomes model input (:class:`~internvl_tools.InternVL`
    has them all)."""

    model_name: str
    max_tiles: int | None
    min_tiles: int
    history_images: str
    system_message: str | None
    preprocess: str
    prompt_format: str
    media_policy: Any


def check_input_settings(*, preprocess: str, prompt_format: str, history_images: str, max_tiles: int | None) -> None:
    """Refuse preparation settings the engine does not know (a :class:`~internvl_tools.errors.ConfigError`)."""
    if preprocess not in {"fast", "exact"}:
        raise ConfigError(f"preprocess must be 'fast' or 'exact', got {preprocess!r}.")
    if prompt_format not in {"official", "checkpoint"}:
        raise ConfigError(f"prompt_format must be 'official' or 'checkpoint', got {prompt_format!r}.")
    if history_images not in {"split", "one_tile"}:
        raise ConfigError(f"history_images must be 'split' or 'one_tile', got {history_images!r}.")
    if max_tiles is not None and not 1 <= int(max_tiles) <= MAX_TILES_LIMIT:
        raise ConfigError(f"max_tiles must be between 1 and {MAX_TILES_LIMIT}, got {max_tiles}.")


def _tile(image: Any, max_tiles: int, state: LoadedModel, settings: InputSettings) -> Any:
    from internvl_tools.media.images import load_image, load_pixels  # PIL and numpy load with the first image

    info = state.info
    # "fast" decodes files straight into the tiler's uint8 tensor (same pixels, no RGB copy or packing pass);
    # "exact" keeps the reference's PIL image, whose resize it reproduces bit for bit.
    load = load_pixels if settings.preprocess == "fast" else load_image
    source = load(image, policy=settings.media_policy)
    return tile_image(
        source,
        max_tiles=max_tiles,
        min_tiles=min(settings.min_tiles, max_tiles),
        image_size=info.image_size,
        use_thumbnail=info.use_thumbnail,
        mode=settings.preprocess,
        mean=tuple(info.image_mean),
        std=tuple(info.image_std),
    )


def _video(part: VideoPart, state: LoadedModel, settings: InputSettings) -> Any:
    info = state.info
    bound = None
    if part.start is not None or part.end is not None:
        bound = (part.start if part.start is not None else -100000, part.end if part.end is not None else 100000)
    return load_video(
        part.video,
        num_segments=part.num_frames,
        bound=bound,
        image_size=info.image_size,
        mode=settings.preprocess,
        mean=tuple(info.image_mean),
        std=tuple(info.image_std),
        policy=settings.media_policy,
    )


def prepare_input(messages: Any, state: LoadedModel, settings: InputSettings) -> PreparedInput:
    """Tile the images, sample the videos, render the prompt and encode it (see :class:`InputSettings`)."""
    import torch

    msgs = normalize_messages(messages)
    info = state.info
    # Messages before `current` have their images at one tile under history_images="one_tile".
    current = 0
    if settings.history_images == "one_tile":
        current = max((i for i, m in enumerate(msgs) if m.role == "user"), default=0)
    n_images = sum(len(m.images) for m in msgs[current:])
    per_image = split_tile_budget(tile_budget(info, settings.max_tiles), n_images) if n_images else 0
    system_message = settings.system_message if settings.system_message is not None else info.system_message
    turns: list[PromptTurn] = []
    pixels: list[Any] = []
    for index, msg in enumerate(msgs):
        parts: list[Any] = []
        for part in msg.content:
            if isinstance(part, TextPart):
                parts.append(part.text)
            elif isinstance(part, ImagePart):
                budget = part.max_tiles if part.max_tiles is not None else (per_image if index >= current else 1)
                if not getattr(info, "dynamic_image_size", True):
                    budget = 1
                tiled = _tile(part.image, budget, state, settings)
                pixels.append(tiled.pixel_values)
                parts.append(ImageSlot(tiled.num_tiles))
            elif isinstance(part, VideoPart):
                frames = _video(part, state, settings)
                pixels.append(frames.pixel_values)
                parts.append(VideoSlot(len(frames.indices)))
        turns.append(PromptTurn(role=msg.role, parts=tuple(parts)))
    if settings.prompt_format == "checkpoint":
        text, patches = _checkpoint_prompt(msgs, turns, state, settings.model_name)
    else:
        chat_prompt = build_chat_prompt(
            state.template, turns, system_message=system_message, tokens_per_tile=info.tokens_per_tile
        )
        text, patches = chat_prompt.text, list(chat_prompt.num_patches_list)
    with _ENCODE_LOCK:
        input_ids = encode_prompt(state.tokenizer, text)
    pixel_values = torch.cat(pixels, dim=0) if pixels else None
    num_tiles = int(sum(patches))
    if pixel_values is not None and pixel_values.shape[0] != num_tiles:
        raise GenerationError(
            f"Internal mismatch: {pixel_values.shape[0]} tiles prepared but the prompt holds {num_tiles}."
        )
    return PreparedInput(
        input_ids=input_ids,
        pixel_values=pixel_values,
        num_tiles=num_tiles,
        image_tokens=num_tiles * int(info.tokens_per_tile),
        text=text,
    )


def _checkpoint_prompt(
    msgs: list[Message], turns: list[PromptTurn], state: LoadedModel, model_name: str
) -> tuple[str, list[int]]:
    """Render with the tokenizer's own chat template, then expand its image placeholders in order.

    The ``-hf`` template writes ``<IMG_CONTEXT>`` for each image and ``<video>`` for each video, which the
    transformers processor would expand; we expand them the same way.
    """
    tokenizer = state.tokenizer
    if not getattr(tokenizer, "chat_template", None):
        raise ConfigError(f"{model_name!r} ships no chat template; use prompt_format='official' (the default).")
    conversation = []
    slots: list[Any] = []
    for turn in turns:
        content = []
        for part in turn.parts:
            if isinstance(part, str):
                content.append({"type": "text", "text": part})
            elif isinstance(part, (ImageSlot, VideoSlot)):
                content.append({"type": "image" if isinstance(part, ImageSlot) else "video"})
                slots.append(part)
        conversation.append({"role": turn.role, "content": content})
    text = tokenizer.apply_chat_template(conversation, tokenize=False, add_generation_prompt=True)
    pattern = re.compile(re.escape(IMG_CONTEXT_TOKEN) + "|" + re.escape(VIDEO_PLACEHOLDER))
    pending = iter(slots)
    patches: list[int] = []

    def replace(match: re.Match) -> str:
        slot = next(pending, None)
        if isinstance(slot, VideoSlot) and match.group(0) == VIDEO_PLACEHOLDER:
            patches.extend([1] * slot.num_frames)
            return "\n".join(f"Frame{k + 1}: {IMAGE_PLACEHOLDER}" for k in range(slot.num_frames))
        if isinstance(slot, ImageSlot) and match.group(0) == IMG_CONTEXT_TOKEN:
            patches.append(slot.num_patches)
            return IMAGE_PLACEHOLDER
        raise ConfigError("The checkpoint's chat template placed images and videos in an unexpected order.")

    text = pattern.sub(replace, text)
    if len(patches) != sum(s.num_frames if isinstance(s, VideoSlot) else 1 for s in slots):
        raise ConfigError("The checkpoint's chat template dropped an image; use prompt_format='official'.")
    return expand_image_placeholders(text, patches, state.info.tokens_per_tile), patches


def check_context(prepared: PreparedInput, max_new_tokens: int, state: LoadedModel, model_name: str) -> int:
    """Refuse prompts that cannot fit; return the number of new tokens that can be generated."""
    context = int(state.info.context_length)
    prompt = len(prepared.input_ids)
    if prompt < context:
        return max(1, min(max_new_tokens, context - prompt))
    per_tile = int(state.info.tokens_per_tile)
    text_tokens = prompt - prepared.image_tokens
    room = context - text_tokens - 1
    hint = ""
    if prepared.num_tiles:
        fit_tiles = max(0, room // per_tile)
        hint = f" At most {fit_tiles} tiles fit beside this text"
        hint += f"; try max_tiles={max(1, fit_tiles - 1)}" if fit_tiles >= 2 else "; use fewer or smaller images"
        hint += " (thumbnails count as one tile each)."
    raise ContextLengthError(
        f"The prompt is {prompt} tokens ({text_tokens} text + {prepared.image_tokens} image tokens from "
        f"{prepared.num_tiles} tiles of {per_tile}), but {model_name!r} has a context of {context} tokens." + hint
    )
