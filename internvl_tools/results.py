"""Typed results of generation: text, token usage and why generation stopped.

>>> r = ChatResult(text="Hi", usage=Usage(prompt_tokens=10, completion_tokens=2), finish_reason="stop")
>>> r.usage.total_tokens
12
"""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, computed_field

__all__ = ["ChatResult", "FinishReason", "Usage"]

FinishReason = Literal["stop", "length", "error", "repetition"]


class Usage(BaseModel):
    """Token counts of one generation. ``image_tokens`` is the part of the prompt taken by image tiles."""

    model_config = ConfigDict(frozen=True)
    prompt_tokens: int = Field(ge=0)
    completion_tokens: int = Field(ge=0)
    image_tokens: int = Field(default=0, ge=0)
    num_tiles: int = Field(default=0, ge=0)

    @computed_field  # type: ignore[prop-decorator]
    @property
    def total_tokens(self) -> int:
        return self.prompt_tokens + self.completion_tokens


class ChatResult(BaseModel):
    """The answer to one conversation.

    ``finish_reason`` is ``"stop"`` when the model ended its turn or a stop sequence was reached (the stop
    sequence is trimmed from ``text``), ``"length"`` when ``max_new_tokens`` ran out, ``"repetition"`` when the
    answer fell into a degenerate loop and was stopped (``stop_repetition=True``; ``text`` keeps one copy of the
    loop), ``"error"`` (with ``error`` set) for an item of a batch that could not be answered.
    """

    model_config = ConfigDict(frozen=True)
    text: str
    usage: Usage
    finish_reason: FinishReason
    model: str | None = None
    error: str | None = None

    def __str__(self) -> str:
        return self.text

    @classmethod
    def from_error(cls, exc: BaseException, model: str | None = None) -> ChatResult:
        """The result of an item that could not be answered: no text, no tokens, ``finish_reason="error"``.

        >>> ChatResult.from_error(ValueError("bad image"), "m").error
        'ValueError: bad image'
        """
        return cls(
            text="",
            usage=Usage(prompt_tokens=0, completion_tokens=0),
            finish_reason="error",
            model=model,
            error=f"{type(exc).__name__}: {exc}",
        )
