"""How a page that was not read is recorded: its ``error`` / ``error_type`` and the fields every record shares.

>>> error_fields(3, "ContextLengthError", "The prompt needs 9127 tokens")
{'error': 'page 3: ContextLengthError: The prompt needs 9127 tokens', 'error_type': 'ContextLengthError'}
>>> from types import SimpleNamespace
>>> answer_failure(SimpleNamespace(finish_reason="error", error="ContextLengthError: too long"))
('ContextLengthError', 'too long')
"""

from __future__ import annotations

import re
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from internvl_tools.documents.render import RenderedPage

__all__ = ["answer_failure", "error_fields", "exception_fields", "page_fields"]

# How engines spell an item's error in ChatResult.error: "ContextLengthError: The prompt needs ... tokens".
_ERROR_TEXT = re.compile(r"([A-Za-z_]\w*(?:Error|Exception)): (.*)", re.DOTALL)


def page_fields(page: RenderedPage, task: str, question: str | None, model: str | None) -> dict[str, Any]:
    """The fields of a :class:`~.models.PageResult` that come from the rendered page and the run."""
    return {
        "page": page.number,
        "label": page.label,
        "task": task,
        "image_size": page.size_px,
        "page_size_pt": (round(page.width_pt, 3), round(page.height_pt, 3)) if page.width_pt else None,
        "dpi": round(page.dpi, 3) if page.scale else None,
        "question": question,
        "model": model,
    }


def error_fields(number: int, kind: str, message: str) -> dict[str, str]:
    """``error`` / ``error_type`` of a failed page: the error's type name and its message, prefixed by the page."""
    return {"error": f"page {number}: {kind}: {message}", "error_type": kind}


def exception_fields(number: int, exc: BaseException) -> dict[str, str]:
    """:func:`error_fields` of an exception raised while reading page ``number``."""
    return error_fields(number, type(exc).__name__, str(exc))


def answer_failure(answer: Any) -> tuple[str, str] | None:
    """(type name, message) when an engine's answer is an error item (``finish_reason="error"`` or ``error`` set)."""
    error = getattr(answer, "error", None)
    if getattr(answer, "finish_reason", None) != "error" and not error:
        return None
    text = str(error or "the engine answered finish_reason='error' without saying why")
    match = _ERROR_TEXT.fullmatch(text)
    return (match.group(1), match.group(2)) if match else ("GenerationError", text)
