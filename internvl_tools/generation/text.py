"""Token ids and answer text: encoding a prompt, decoding an answer with the grounding tokens kept, the stop-string
cut, and the streaming view that never emits text that is not settled yet.

>>> cut_at_stop("The total is 12 EUR. Thanks", ["EUR", "12"])
'The total is '
>>> cut_at_stop("no stop here", ["END"]) is None
True
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

from internvl_tools.constants import GROUNDING_TOKENS

if TYPE_CHECKING:
    from internvl_tools.engines.registry import LoadedModel

__all__ = ["chat_special_ids", "cut_at_stop", "decode_tokens", "encode_prompt", "visible_text"]


def encode_prompt(tokenizer: Any, text: str) -> list[int]:
    """The token ids of a rendered prompt (special tokens added as the tokenizer does), as a flat list of ints."""
    encoded = tokenizer(text, add_special_tokens=True)
    ids = encoded["input_ids"] if isinstance(encoded, dict) or hasattr(encoded, "keys") else encoded
    if ids and isinstance(ids[0], list):
        ids = ids[0]
    return [int(i) for i in ids]


def chat_special_ids(tokenizer: Any) -> set[int]:
    """Special tokens to drop from answers: every special token except the grounding ones (which we keep)."""
    keep = {tokenizer.convert_tokens_to_ids(t) for t in GROUNDING_TOKENS}
    special: set[int] = set(getattr(tokenizer, "all_special_ids", []) or [])
    decoder = getattr(tokenizer, "added_tokens_decoder", None) or {}
    for token_id, token in decoder.items():
        if getattr(token, "special", False):
            special.add(int(token_id))
    return special - keep


def decode_tokens(tokenizer: Any, ids: list[int], drop: frozenset[int]) -> str:
    """Decode ``ids`` without the tokens in ``drop`` (see :func:`chat_special_ids`), special tokens otherwise kept."""
    return tokenizer.decode([i for i in ids if i not in drop], skip_special_tokens=False)


def cut_at_stop(text: str, stops: Sequence[str]) -> str | None:
    """``text`` up to the first stop string it contains, or ``None`` when it contains none."""
    positions = [text.find(s) for s in stops if s and s in text]
    if not positions:
        return None
    return text[: min(positions)]


def visible_text(state: LoadedModel, ids: list[int], stops: Sequence[str], *, final: bool) -> str:
    """The answer text as far as it is settled after ``ids`` (the streaming view of the final answer text)."""
    used = ids
    if state.eos_token_id in ids:
        used = ids[: ids.index(state.eos_token_id)]
    text = decode_tokens(state.tokenizer, used, state.drop_ids)
    sep = state.template.stop_token
    cut_at_sep = sep and sep in text
    text = state.template.postprocess(text) if final or cut_at_sep else text.lstrip()
    cut = cut_at_stop(text, stops)
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
