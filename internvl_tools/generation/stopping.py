"""Stopping criteria for the decoding loop and ``generate()``: stop strings, a cancelled stream, and a degenerate
repetition loop.

All follow transformers' ``StoppingCriteria`` call convention (``(input_ids, scores) -> bool tensor per row``).

A VLM reading a dense page can fall into a loop ("the the the ...", one table row written 300 times) and burn the
whole token budget. :class:`RepetitionGuard` stops a row as soon as its answer *ends* in a loop: the last
``max(min_repeats * k, min_span)`` tokens repeat a pattern of ``k`` tokens (``1 <= k <= max_period``). The
defaults (10 copies, at least 100 tokens, patterns up to 200 tokens) leave real text alone: a Markdown table rule
``|---|---|`` or a row of dot leaders is far shorter than 100 tokens, and a table with ten identical rows is rare
(and is read again, not lost; see ``read_pdf``). :func:`find_repetition` is the same test on a finished answer;
``finish_result`` uses it to cut the answer after the loop's first copy and report ``finish_reason="repetition"``.

>>> find_repetition([1, 2, 3] + [7, 8] * 60)
(3, 2)
>>> find_repetition(list(range(300))) is None
True
"""

from __future__ import annotations

import threading
from collections.abc import Sequence
from typing import Any

from internvl_tools.generation.text import decode_tokens

__all__ = [
    "REPETITION_MAX_PERIOD",
    "REPETITION_MIN_REPEATS",
    "REPETITION_MIN_SPAN",
    "Cancelled",
    "RepetitionGuard",
    "StopStrings",
    "find_repetition",
]

#: A loop is this many copies of its pattern at least ...
REPETITION_MIN_REPEATS = 10
#: ... covering at least this many tokens ...
REPETITION_MIN_SPAN = 100
#: ... of a pattern at most this many tokens long.
REPETITION_MAX_PERIOD = 200


class StopStrings:
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
        done = [any(s in decode_tokens(self.tokenizer, row, self.drop) for s in self.stops) for row in tails]
        return torch.tensor(done, dtype=torch.bool, device=input_ids.device)


class Cancelled:
    """Stops generation when the consumer of a stream goes away (``event`` is set)."""

    def __init__(self, event: threading.Event) -> None:
        self.event = event

    def __call__(self, input_ids: Any, scores: Any, **kwargs: Any) -> Any:
        import torch

        return torch.full((input_ids.shape[0],), self.event.is_set(), dtype=torch.bool, device=input_ids.device)


def _loop_period(tail: list[int], min_repeats: int, min_span: int, max_period: int) -> int | None:
    """The shortest period ``k`` such that ``tail`` ends in ``max(min_repeats * k, min_span)`` k-periodic tokens."""
    n = len(tail)
    if n < min_span:
        return None
    last = tail[-1]
    for k in range(1, min(max_period, n - 1) + 1):
        if tail[-1 - k] != last:
            continue  # cheap pre-check: a loop of period k repeats the last token k back
        span = max(min_repeats * k, min_span)
        if span > n:
            break  # longer periods need even more tokens
        if tail[n - span + k :] == tail[n - span : n - k]:
            return k
    return None


def find_repetition(
    ids: Sequence[int],
    *,
    min_repeats: int = REPETITION_MIN_REPEATS,
    min_span: int = REPETITION_MIN_SPAN,
    max_period: int = REPETITION_MAX_PERIOD,
) -> tuple[int, int] | None:
    """``(start, period)`` when ``ids`` ends in a degenerate loop (see the module docstring), else ``None``.

    ``start`` is where the loop begins (the earliest index from which the rest is ``period``-periodic), so
    ``ids[: start + period]`` keeps the text before the loop and one copy of it.

    >>> find_repetition([5] * 99) is None, find_repetition([5] * 100)
    (True, (0, 1))
    """
    tail = list(ids)
    period = _loop_period(tail, min_repeats, min_span, max_period)
    if period is None:
        return None
    start = len(tail) - period
    while start > 0 and tail[start - 1] == tail[start - 1 + period]:
        start -= 1
    return start, period


class RepetitionGuard:
    """Stops each row once its generated tokens end in a degenerate loop (:func:`find_repetition`'s test).

    Each call looks at the last ``max(min_repeats * max_period, min_span)`` tokens of each row only, and tries
    just the periods ``k`` whose token ``k`` back equals the last one, so a step costs microseconds.
    """

    def __init__(
        self,
        prompt_length: int,
        *,
        min_repeats: int = REPETITION_MIN_REPEATS,
        min_span: int = REPETITION_MIN_SPAN,
        max_period: int = REPETITION_MAX_PERIOD,
    ) -> None:
        self.prompt_length = prompt_length
        self.min_repeats, self.min_span, self.max_period = min_repeats, min_span, max_period
        self.window = max(min_repeats * max_period, min_span)

    def __call__(self, input_ids: Any, scores: Any, **kwargs: Any) -> Any:
        import torch

        generated = input_ids[:, self.prompt_length :]
        if generated.shape[1] < self.min_span:
            return torch.zeros((input_ids.shape[0],), dtype=torch.bool, device=input_ids.device)
        tails = generated[:, -self.window :].tolist()
        done = [_loop_period(row, self.min_repeats, self.min_span, self.max_period) is not None for row in tails]
        return torch.tensor(done, dtype=torch.bool, device=input_ids.device)
