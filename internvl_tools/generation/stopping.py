"""Stopping criteria for the decoding loop and ``generate()``: stop strings, and a cancelled stream.

Both follow transformers' ``StoppingCriteria`` call convention (``(input_ids, scores) -> bool tensor per row``).
"""

from __future__ import annotations

import threading
from collections.abc import Sequence
from typing import Any

from internvl_tools.generation.text import decode_tokens

__all__ = ["Cancelled", "StopStrings"]


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
