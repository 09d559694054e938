"""Prepared input → answer on loaded weights: left-padded batches, stopping criteria, the lean decoding loop (greedy
and sampling) or beam search through ``generate()``, the cut into a :class:`~internvl_tools.results.ChatResult`,
and the streaming worker behind :meth:`InternVL.stream <internvl_tools.InternVL.stream>`.
"""

from __future__ import annotations

import queue
import threading
from collections.abc import Callable, Generator
from typing import TYPE_CHECKING, Any

from internvl_tools.engines.prepare import PreparedInput, check_context
from internvl_tools.errors import GenerationError, InternVLError
from internvl_tools.generation.decoding import decode
from internvl_tools.generation.options import GenerationOptions
from internvl_tools.generation.stopping import Cancelled, RepetitionGuard, StopStrings, find_repetition
from internvl_tools.generation.text import cut_at_stop, decode_tokens, visible_text
from internvl_tools.results import ChatResult, Usage

if TYPE_CHECKING:
    from internvl_tools.engines.registry import LoadedModel

__all__ = ["finish_result", "generate_rows", "stream_deltas"]

#: ``(prompt_length, max_new_tokens) -> logits processor``: built once the batch width and budget are known.
ProcessorFactory = Callable[[int, int], Any]


def generate_rows(
    prepared: list[PreparedInput],
    options: GenerationOptions,
    state: LoadedModel,
    model_name: str,
    *,
    on_tokens: Callable[[Any], None] | None = None,
    logits_processor_factory: ProcessorFactory | None = None,
    cancel: threading.Event | None = None,
) -> tuple[list[tuple[list[int], int]], int]:
    """Run one (left-padded) generate; return (per row: new token ids, prompt length) and the token budget used."""
    import torch

    budgets = [check_context(p, options.max_new_tokens, state, model_name) for p in prepared]
    max_new = min(budgets)
    width = max(len(p.input_ids) for p in prepared)
    pad = state.pad_token_id
    ids = torch.full((len(prepared), width), pad, dtype=torch.long)
    mask = torch.zeros((len(prepared), width), dtype=torch.long)
    for row, p in enumerate(prepared):
        ids[row, width - len(p.input_ids) :] = torch.tensor(p.input_ids, dtype=torch.long)
        mask[row, width - len(p.input_ids) :] = 1
    pixel_list = [p.pixel_values for p in prepared if p.pixel_values is not None]
    inputs: dict[str, Any] = {"input_ids": ids.to(state.device), "attention_mask": mask.to(state.device)}
    if pixel_list:
        model_dtype = next(state.model.parameters()).dtype
        inputs["pixel_values"] = torch.cat(pixel_list, dim=0).to(device=state.device, dtype=model_dtype)
    criteria: list[Any] = []
    if options.stop:
        criteria.append(StopStrings(state.tokenizer, options.stop, width, state.drop_ids))
    if cancel is not None:
        criteria.append(Cancelled(cancel))
    if options.stop_repetition:
        criteria.append(RepetitionGuard(width))
    processors: list[Any] = []
    if logits_processor_factory is not None:
        processors.append(logits_processor_factory(width, max_new))
    with state.lock:
        if options.seed is not None:
            torch.manual_seed(options.seed)
        try:
            with torch.inference_mode():
                if options.num_beams == 1:
                    new_tokens = decode(
                        state.model,
                        inputs["input_ids"],
                        inputs["attention_mask"],
                        inputs.get("pixel_values"),
                        max_new_tokens=max_new,
                        eos_token_id=state.eos_token_id,
                        pad_token_id=pad,
                        sampling=options.sampling,
                        temperature=options.temperature,
                        top_k=options.top_k,
                        top_p=options.top_p,
                        repetition_penalty=options.repetition_penalty,
                        logits_processors=processors,
                        stopping=criteria,
                        on_tokens=on_tokens,
                    )
                else:
                    new_tokens = _beam_search(inputs, options, state, max_new, processors, criteria)
        except InternVLError:
            raise
        except Exception as exc:
            raise GenerationError(f"Generation failed in {model_name!r}: {type(exc).__name__}: {exc}") from exc
    rows = [(new_tokens[row].tolist(), len(p.input_ids)) for row, p in enumerate(prepared)]
    return rows, max_new


def _beam_search(
    inputs: dict[str, Any],
    options: GenerationOptions,
    state: LoadedModel,
    max_new: int,
    processors: list[Any],
    criteria: list[Any],
) -> Any:
    """Beam search through transformers' ``generate()`` (the lean loop covers greedy and sampling)."""
    from transformers import GenerationConfig, LogitsProcessorList, StoppingCriteriaList

    config = GenerationConfig(
        max_new_tokens=max_new,
        do_sample=options.sampling,
        num_beams=options.num_beams,
        eos_token_id=state.eos_token_id,
        pad_token_id=state.pad_token_id,
    )
    if options.sampling:
        config.temperature = options.temperature if options.temperature else 1.0
        if options.top_p is not None:
            config.top_p = options.top_p
        if options.top_k is not None:
            config.top_k = options.top_k
    if options.repetition_penalty is not None:
        config.repetition_penalty = options.repetition_penalty
    out = state.model.generate(
        **inputs,
        generation_config=config,
        stopping_criteria=StoppingCriteriaList(criteria),
        logits_processor=LogitsProcessorList(processors),
    )
    return out[:, inputs["input_ids"].shape[1] :]


def finish_result(
    new_ids: list[int],
    prompt_len: int,
    prepared: PreparedInput,
    options: GenerationOptions,
    state: LoadedModel,
    max_new: int,
    model_name: str,
) -> ChatResult:
    """Turn new token ids into a ChatResult: cut at the end-of-turn token and stop sequences."""
    eos, pad = state.eos_token_id, state.pad_token_id
    finish = "length"
    used = len(new_ids)
    if eos in new_ids:
        used = new_ids.index(eos) + 1
        finish = "stop"
    elif pad != eos and pad in new_ids:
        used = new_ids.index(pad)
    loop = find_repetition(new_ids[: used - (finish == "stop")]) if options.stop_repetition else None
    if loop is not None:
        # Stopped in (or ended after) a degenerate loop: keep the text before it and one copy of the loop.
        used = loop[0] + loop[1]
        finish = "repetition"
    text = decode_tokens(state.tokenizer, new_ids[:used], state.drop_ids)
    text = state.template.postprocess(text)
    cut = cut_at_stop(text, options.stop)
    if cut is not None:
        text, finish = cut.strip(), "stop"
    elif finish == "length" and used < min(max_new, len(new_ids)):
        finish = "stop"  # ended on padding: another row's criteria stopped it early (a stop string)
    return ChatResult(
        text=text,
        usage=Usage(
            prompt_tokens=prompt_len,
            completion_tokens=used,
            image_tokens=prepared.image_tokens,
            num_tiles=prepared.num_tiles,
        ),
        finish_reason=finish,  # type: ignore[arg-type]
        model=model_name,
    )


def stream_deltas(
    prepared: PreparedInput, options: GenerationOptions, state: LoadedModel, model_name: str
) -> Generator[str, None, ChatResult]:
    """Generate in a worker thread and yield the settled text as it grows; return the final ChatResult.

    Closing the generator (or abandoning it) cancels generation at the next token.
    """
    tokens: queue.Queue = queue.Queue()
    cancel = threading.Event()
    done = object()
    error: list[BaseException] = []

    def put(step_tokens: Any) -> None:
        for token in step_tokens.reshape(-1).tolist():
            tokens.put(int(token))

    def run() -> None:
        try:
            generate_rows([prepared], options, state, model_name, on_tokens=put, cancel=cancel)
        except BaseException as exc:
            error.append(exc)
        finally:
            tokens.put(done)

    worker = threading.Thread(target=run, name="internvl-stream", daemon=True)
    worker.start()
    ids: list[int] = []
    emitted = ""
    try:
        while True:
            item = tokens.get()
            if item is done:
                break
            ids.append(item)
            if item == state.eos_token_id:
                break
            visible = visible_text(state, ids, options.stop, final=False)
            if len(visible) > len(emitted) and visible.startswith(emitted):
                yield visible[len(emitted) :]
                emitted = visible
        worker.join()
        if error:
            raise error[0]
        final = visible_text(state, ids, options.stop, final=True)
        if final.startswith(emitted) and len(final) > len(emitted):
            yield final[len(emitted) :]
        max_new = check_context(prepared, options.max_new_tokens, state, model_name)
        return finish_result(ids, len(prepared.input_ids), prepared, options, state, max_new, model_name)
    finally:
        cancel.set()
