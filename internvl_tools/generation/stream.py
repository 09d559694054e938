"""The stream every backend's ``stream()`` returns: text deltas, then the final :class:`ChatResult`.

A backend wraps a generator of deltas whose ``return`` value is the ``ChatResult``; once the stream is exhausted
that value is in ``result``. A plain iterator works too (``result`` stays ``None``).

>>> from internvl_tools.results import Usage
>>> def deltas():
...     yield "Hel"
...     yield "lo"
...     return ChatResult(text="Hello", usage=Usage(prompt_tokens=3, completion_tokens=2), finish_reason="stop")
>>> s = TextStream(deltas())
>>> "".join(s), s.result.finish_reason, s.result.usage.total_tokens
('Hello', 'stop', 5)
>>> s = TextStream(iter(["a", "b"]))
>>> "".join(s), s.result is None
('ab', True)
"""

from __future__ import annotations

from collections.abc import Iterator

from internvl_tools.results import ChatResult

__all__ = ["TextStream"]


class TextStream(Iterator[str]):
    """An iterator of text deltas; once exhausted, ``result`` holds the :class:`ChatResult` (usage, finish reason).

    Args:
        deltas: the text deltas; when it is a generator, the ``ChatResult`` it returns becomes ``result``.
    """

    def __init__(self, deltas: Iterator[str]) -> None:
        self._deltas = deltas
        self.result: ChatResult | None = None

    def __iter__(self) -> TextStream:
        return self

    def __next__(self) -> str:
        try:
            return next(self._deltas)
        except StopIteration as stop:
            if isinstance(stop.value, ChatResult):
                self.result = stop.value
            raise

    def close(self) -> None:
        """Stop generating (the model stops at its next token; the server connection is closed)."""
        close = getattr(self._deltas, "close", None)
        if close is not None:
            close()
