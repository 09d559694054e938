"""Decoding-time pieces shared by the engine's generation paths: options, stop strings, and turning token ids into
the answer text (the end-of-turn cut, grounding tokens kept, the streaming view that never emits unsettled text).

>>> GenerationOptions.from_kwargs({"max_tokens": 8, "stop": "END"}).stop
('END',)
"""

from __future__ import annotations

import threading
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from internvl_tools.errors import ConfigError, InternVLError
from internvl_tools.results import ChatResult, Usage

__all__ = ["DEFAULT_MAX_NEW_TOKENS", "GenerationOptions", "TextStream"]

DEFAULT_MAX_NEW_TOKENS = 512


class TextStream:
    """An iterator of text deltas; once exhausted, ``result`` holds the :class:`ChatResult` (usage, finish reason).

    >>> s = TextStream(iter(["a", "b"]))
    >>> "".join(s), s.result is None
    ('ab', True)
    """

    def __init__(self, deltas: Any) -> None:
        self._deltas = deltas
        self.result: ChatResult | None = None

    def __iter__(self) -> TextStream:
        return self

    def __next__(self) -> str:
        return next(self._deltas)

    def close(self) -> None:
        """Stop generating (the model stops at its next token)."""
        close = getattr(self._deltas, "close", None)
        if close is not None:
            close()


@dataclass(frozen=True)
class GenerationOptions:
    """Decoding settings of one call. ``temperature > 0`` without ``do_sample`` turns sampling on."""

    max_new_tokens: int = DEFAULT_MAX_NEW_TOKENS
    temperature: float | None = None
    top_p: float | None = None
    top_k: int | None = None
    do_sample: bool | None = None
    num_beams: int = 1
    repetition_penalty: float | None = None
    stop: tuple[str, ...] = ()
    seed: int | None = None

    @classmethod
    def from_kwargs(cls, kwargs: dict[str, Any]) -> GenerationOptions:
        known = {f for f in cls.__dataclass_fields__}
        unknown = sorted(set(kwargs) - known - {"max_tokens"})
        if unknown:
            raise ConfigError(
                f"Unknown generation option(s) {unknown}; known: {sorted(known)} (max_tokens is an alias of "
                "max_new_tokens)."
            )
        values = {k: v for k, v in kwargs.items() if v is not None and k != "max_tokens"}
        if kwargs.get("max_tokens") is not None and "max_new_tokens" not in values:
            values["max_new_tokens"] = kwargs["max_tokens"]
        stop = values.get("stop", ())
        if isinstance(stop, str):
            stop = (stop,)
        values["stop"] = tuple(s for s in stop if s)
        options = cls(**values)
        if options.max_new_tokens < 1:
            raise ConfigError(f"max_new_tokens must be >= 1, got {options.max_new_tokens}.")
        if options.temperature is not None and options.temperature < 0:
            raise ConfigError(f"temperature must be >= 0, got {options.temperature}.")
        if options.num_beams < 1:
            raise ConfigError(f"num_beams must be >= 1, got {options.num_beams}.")
        return options

    @property
    def sampling(self) -> bool:
        if self.do_sample is not None:
            return self.do_sample
        return bool(self.temperature and self.temperature > 0)


def _error_result(exc: InternVLError, model: str) -> ChatResult:
    return ChatResult(
        text="",
        usage=Usage(prompt_tokens=0, completion_tokens=0),
        finish_reason="error",
        model=model,
        error=f"{type(exc).__name__}: {exc}",
    )


def _encode(tokenizer: Any, text: str) -> list[int]:
    encoded = tokenizer(text, add_special_tokens=True)
    ids = encoded["input_ids"] if isinstance(encoded, dict) or hasattr(encoded, "keys") else encoded
    if ids and isinstance(ids[0], list):
        ids = ids[0]
    return [int(i) for i in ids]


def _chat_special_ids(tokenizer: Any) -> set[int]:
    """Special tokens to drop from answers: every special token except the grounding ones (which we keep)."""
    from internvl_tools.constants import GROUNDING_TOKENS

    keep = {tokenizer.convert_tokens_to_ids(t) for t in GROUNDING_TOKENS}
    special: set[int] = set(getattr(tokenizer, "all_special_ids", []) or [])
    decoder = getattr(tokenizer, "added_tokens_decoder", None) or {}
    for token_id, token in decoder.items():
        if getattr(token, "special", False):
            special.add(int(token_id))
    return special - keep


def _decode(tokenizer: Any, ids: list[int], drop: frozenset[int]) -> str:
    return tokenizer.decode([i for i in ids if i not in drop], skip_special_tokens=False)


def _cut_at_stop(text: str, stops: Sequence[str]) -> str | None:
    positions = [text.find(s) for s in stops if s and s in text]
    if not positions:
        return None
    return text[: min(positions)]


def _visible_text(state: Any, ids: list[int], stops: Sequence[str], *, final: bool) -> str:
    """The answer text as far as it is settled after ``ids`` (the streaming view of ``_finish``)."""
    used = ids
    if state.eos_token_id in ids:
        used = ids[: ids.index(state.eos_token_id)]
    text = _decode(state.tokenizer, used, state.drop_ids)
    sep = state.template.stop_token
    cut_at_sep = sep and sep in text
    text = state.template.postprocess(text) if final or cut_at_sep else text.lstrip()
    cut = _cut_at_stop(text, stops)
    if cut is not None:
        return cut.strip()
    if final:
        return text.strip()
    # Hold back what is not settled yet: a partial UTF-8 character, trailing whitespace (the final text is
    # stripped), and a tail that could be the start of a stop sequence or of the end-of-turn separator.
    text = text.rstrip("\ufffd")
    text = text.rstrip()
    hold = 0
    for s in [*stops, sep]:
        for k in range(min(len(s) - 1, len(text)), 0, -1):
            if text.endswith(s[:k]):
                hold = max(hold, k)
                break
    return text[: len(text) - hold] if hold else text


class _StopStrings:
    """Stops each row once its generated text contains one of the stop strings."""

    def __init__(self, tokenizer: Any, stops: Sequence[str], prompt_length: int, drop: frozenset[int]) -> None:
        self.tokenizer = tokenizer
        self.stops = list(stops)
        self.prompt_length = prompt_length
        self.drop = drop
        # Every token carries at least one byte and a character at most four, so a stop string that has just been
        # completed lies within the last 4 * len + 1 tokens: decoding that tail keeps each step O(1) in the answer
        # length instead of re-decoding the whole answer.
        # Callers keep a row finished once it has been reported done, so looking at the tail alone is enough (and
        # holds no per-row state, which beam search would reorder).
        self.window = 4 * max((len(s) for s in self.stops), default=1) + 1

    def __call__(self, input_ids: Any, scores: Any, **kwargs: Any) -> Any:
        import torch

        tails = input_ids[:, self.prompt_length :][:, -self.window :].tolist()
        done = [any(s in _decode(self.tokenizer, row, self.drop) for s in self.stops) for row in tails]
        return torch.tensor(done, dtype=torch.bool, device=input_ids.device)


class _Cancelled:
    """Stops generation when the consumer of a stream goes away."""

    def __init__(self, event: threading.Event) -> None:
        self.event = event

    def __call__(self, input_ids: Any, scores: Any, **kwargs: Any) -> Any:
        import torch

        return torch.full((input_ids.shape[0],), self.event.is_set(), dtype=torch.bool, device=input_ids.device)
