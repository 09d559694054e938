"""A lean token-by-token decoding loop for greedy and sampled generation.

``transformers``' ``generate()`` costs about a millisecond of Python per step on top of the model (argument
validation, signature inspection, generic cache plumbing). For the common cases (greedy or sampling, one beam) this
loop does the same work directly: one prefill forward with the pixels, then one forward per token on the KV cache,
with position ids taken from the attention mask exactly as ``generate()`` does for left-padded batches. The
sampling warpers and the repetition penalty are transformers' own classes. Beam search goes through ``generate()``.

Per-token work is kept to what the batch needs: a batch without padding (one row, or rows of equal length) passes
no attention mask to the decoding steps (a growing all-ones mask only costs a concatenation and a mask expansion per
layer and step, and changes no logit), and the sequence of ids so far is only grown when a logits processor, warper
or stopping criterion reads it.

>>> callable(decode)
True
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

__all__ = ["decode"]


def _warpers(
    *,
    sampling: bool,
    temperature: float | None,
    top_k: int | None,
    top_p: float | None,
    repetition_penalty: float | None,
) -> list[Any]:
    from transformers import (
        RepetitionPenaltyLogitsProcessor,
        TemperatureLogitsWarper,
        TopKLogitsWarper,
        TopPLogitsWarper,
    )

    chain: list[Any] = []
    if repetition_penalty is not None and repetition_penalty != 1.0:
        chain.append(RepetitionPenaltyLogitsProcessor(repetition_penalty))
    if sampling:
        if temperature is not None and temperature > 0 and temperature != 1.0:
            chain.append(TemperatureLogitsWarper(temperature))
        if top_k is not None and top_k > 0:
            chain.append(TopKLogitsWarper(top_k))
        if top_p is not None and top_p < 1.0:
            chain.append(TopPLogitsWarper(top_p))
    return chain


def decode(
    model: Any,
    input_ids: Any,
    attention_mask: Any,
    pixel_values: Any | None,
    *,
    max_new_tokens: int,
    eos_token_id: int,
    pad_token_id: int,
    sampling: bool = False,
    temperature: float | None = None,
    top_k: int | None = None,
    top_p: float | None = None,
    repetition_penalty: float | None = None,
    logits_processors: Sequence[Callable[[Any, Any], Any]] = (),
    stopping: Sequence[Callable[..., Any]] = (),
    on_tokens: Callable[[Any], None] | None = None,
) -> Any:
    """Generate up to ``max_new_tokens`` for each row; return the new tokens (rows that finished are padded).

    ``logits_processors`` are called as ``p(ids_so_far, scores) -> scores`` (ids include the prompt, like
    transformers' processors); ``stopping`` criteria as ``c(ids_so_far, scores) -> bool tensor per row``;
    ``on_tokens`` receives each step's new tokens (a streamer's ``put``).
    """
    import torch

    warpers = _warpers(
        sampling=sampling, temperature=temperature, top_k=top_k, top_p=top_p, repetition_penalty=repetition_penalty
    )
    batch = input_ids.shape[0]
    device = input_ids.device
    position_ids = (attention_mask.long().cumsum(-1) - 1).masked_fill(attention_mask == 0, 0)
    padded = not bool(attention_mask.bool().all())
    step_mask = attention_mask if padded else None
    reads_ids = bool(logits_processors or warpers or stopping)
    sequence = input_ids
    unfinished = torch.ones(batch, dtype=torch.bool, device=device)
    outputs = model(
        input_ids=input_ids,
        attention_mask=attention_mask,
        position_ids=position_ids,
        pixel_values=pixel_values,
        use_cache=True,
        logits_to_keep=1,
    )
    new_tokens: list[Any] = []
    for step in range(max_new_tokens):
        scores = outputs.logits[:, -1, :].to(torch.float32)
        for processor in logits_processors:
            scores = processor(sequence, scores)
        for warper in warpers:
            scores = warper(sequence, scores)
        if sampling:
            probs = torch.softmax(scores, dim=-1)
            token = torch.multinomial(probs, num_samples=1).squeeze(1)
        else:
            token = scores.argmax(dim=-1)
        token = torch.where(unfinished, token, torch.full_like(token, pad_token_id))
        new_tokens.append(token)
        if reads_ids:
            sequence = torch.cat([sequence, token[:, None]], dim=1)
        if on_tokens is not None:
            on_tokens(token)
        unfinished &= token != eos_token_id
        for criterion in stopping:
            unfinished &= ~criterion(sequence, scores).to(device)
        if not bool(unfinished.any()) or step == max_new_tokens - 1:
            break
        if padded:
            step_mask = torch.cat([step_mask, step_mask.new_ones((batch, 1))], dim=1)
        position_ids = position_ids[:, -1:] + 1
        outputs = model(
            input_ids=token[:, None],
            attention_mask=step_mask,
            position_ids=position_ids,
            past_key_values=outputs.past_key_values,
            use_cache=True,
        )
    return torch.stack(new_tokens, dim=1)
