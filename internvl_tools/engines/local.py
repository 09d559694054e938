"""The InternVL engine: load any InternVL checkpoint on transformers' native architecture and talk to it.

>>> from internvl_tools import InternVL
>>> vlm = InternVL.from_pretrained("tiny")          # a tiny random checkpoint built offline: meaningless answers
>>> isinstance(vlm.ask(None, "Hello?", max_new_tokens=4), str)
True

Construction is cheap; weights load on first use (or :meth:`InternVL.load`), once per checkpoint and settings,
and are shared by every engine (and every LangChain/LlamaIndex wrapper) that asks for the same ones.
"""

from __future__ import annotations

import re
import threading
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from internvl_tools.engines.base import VisionLanguageModel
from internvl_tools.errors import (
    ConfigError,
    ContextLengthError,
    GenerationError,
    InternVLError,
)
from internvl_tools.generation.options import GenerationOptions, TextStream, _Cancelled, _cut_at_stop, _decode, _encode, _error_result, _StopStrings, _visible_text
from internvl_tools.checkpoints.registry import REGISTRY, REGISTRY_LOCK, LoadedModel, load_shared, resolve_model_source
from internvl_tools.messages import ImagePart, Message, TextPart, VideoPart, normalize_messages
from internvl_tools.results import ChatResult, Usage

__all__ = ["GenerationOptions", "InternVL"]


@dataclass
class _Prepared:
    """One conversation turned into token ids and pixels."""

    input_ids: list[int]
    pixel_values: Any | None
    num_tiles: int
    image_tokens: int
    text: str


class InternVL(VisionLanguageModel):
    """An InternVL vision-language model: ``chat``, ``ask``, ``stream``, ``batch`` and ``extract``.

    Args:
        model: a hub id (``"OpenGVLab/InternVL3-1B-hf"``, ``"OpenGVLab/InternVL2_5-8B"``), a local checkpoint
            directory, or ``"tiny"`` for a tiny random checkpoint built offline (for tests; meaningless answers).
        device: ``"auto"`` (CUDA, then Apple MPS, then CPU), ``"cpu"``, ``"cuda:0"``, ...
        dtype: ``"auto"`` (bf16 on CUDA with bf16 support, fp16 on MPS, fp32 on CPU) or an explicit dtype.
        attn_implementation: ``"auto"`` (flash-attention 2 when installed and usable, else SDPA), ``"sdpa"``, ...
        quantization: None, ``"8bit"`` or ``"4bit"`` (bitsandbytes, CUDA only).
        device_map: None, ``"auto"`` (accelerate) or ``"balanced"`` (the InternVL multi-GPU recipe).
        max_tiles: tile budget per request (default: the checkpoint's ``max_dynamic_patch``, else 12).
        history_images: how the budget meets a conversation's images. ``"split"`` (default, InternVL's training
            and README rule): every image gets ``max(1, max_tiles // n_images)``. ``"one_tile"`` (the official chat
            demo): images of the last user turn share the budget and images of earlier turns get one tile each,
            so long conversations stay short.
        template: override the conversation template (default: detected from the checkpoint's config).
        system_message: override the template's system message.
        preprocess: ``"fast"`` (vectorised, within 2 uint8 levels of the reference) or ``"exact"`` (bit-identical).
        prompt_format: ``"official"`` (the template of the official ``chat()``) or ``"checkpoint"`` (the chat
            template shipped with the tokenizer, e.g. the ``-hf`` one without a system message).
        media_policy: a :class:`~internvl_tools.media.MediaPolicy` (remote URLs off by default).
        trust_remote_code: run the checkpoint's own modeling code instead of the native mapping (opt-in only).
    """

    def __init__(
        self,
        model: str | Path,
        *,
        device: str = "auto",
        dtype: Any = "auto",
        attn_implementation: str | None = "auto",
        quantization: str | None = None,
        device_map: str | dict | None = None,
        max_tiles: int | None = None,
        min_tiles: int = 1,
        history_images: str = "split",
        revision: str | None = None,
        local_files_only: bool = False,
        trust_remote_code: bool = False,
        template: str | None = None,
        system_message: str | None = None,
        preprocess: str = "fast",
        prompt_format: str = "official",
        media_policy: Any = None,
    ) -> None:
        if preprocess not in {"fast", "exact"}:
            raise ConfigError(f"preprocess must be 'fast' or 'exact', got {preprocess!r}.")
        if prompt_format not in {"official", "checkpoint"}:
            raise ConfigError(f"prompt_format must be 'official' or 'checkpoint', got {prompt_format!r}.")
        if history_images not in {"split", "one_tile"}:
            raise ConfigError(f"history_images must be 'split' or 'one_tile', got {history_images!r}.")
        if max_tiles is not None and not 1 <= int(max_tiles) <= 40:
            raise ConfigError(f"max_tiles must be between 1 and 40, got {max_tiles}.")
        if quantization not in (None, "8bit", "4bit"):
            raise ConfigError(f"Unknown quantization {quantization!r}; use None, '8bit' or '4bit'.")
        if device_map not in (None, "auto", "balanced") and not isinstance(device_map, dict):
            raise ConfigError(f"device_map must be None, 'auto', 'balanced' or a dict, got {device_map!r}.")
        self.model_name = str(model)
        self.device = device
        self.dtype = dtype
        self.attn_implementation = attn_implementation
        self.quantization = quantization
        self.device_map = device_map
        self.max_tiles = max_tiles
        self.min_tiles = min_tiles
        self.history_images = history_images
        self.revision = revision
        self.local_files_only = local_files_only
        self.trust_remote_code = trust_remote_code
        self.template_name = template
        self.system_message = system_message
        self.preprocess = preprocess
        self.prompt_format = prompt_format
        self.media_policy = media_policy
        self._loaded: LoadedModel | None = None

    @classmethod
    def from_pretrained(cls, model_id_or_path: str | Path, **kwargs: Any) -> InternVL:
        """Create an engine for a checkpoint; nothing is loaded until first use. See :class:`InternVL` for options."""
        return cls(model_id_or_path, **kwargs)

    @classmethod
    def from_server(cls, base_url: str, model: str | None = None, api_key: str | None = None, **kwargs: Any) -> Any:
        """The same API over an OpenAI-compatible server (vLLM, LMDeploy ``api_server``, ``internvl-tools serve``).

        ``model`` is discovered from ``/v1/models`` when not given. See :mod:`internvl_tools.engines.remote`.
        """
        from internvl_tools.engines.remote import RemoteInternVL

        return RemoteInternVL(base_url, model=model, api_key=api_key, **kwargs)

    def __repr__(self) -> str:
        state = "loaded" if self._loaded is not None else "not loaded"
        return f"InternVL({self.model_name!r}, {state})"

    # ------------------------------------------------------------------------------------------------ loading

    def _registry_key(self) -> tuple:
        device_map = tuple(sorted(self.device_map.items())) if isinstance(self.device_map, dict) else self.device_map
        return (
            resolve_model_source(self.model_name),
            str(self.device),
            str(self.dtype),
            str(self.attn_implementation),
            self.quantization,
            device_map,
            self.revision,
            self.trust_remote_code,
            self.template_name,
        )

    def load(self) -> InternVL:
        """Load weights and tokenizer now (otherwise the first call does). Returns ``self``."""
        self._state()
        return self

    @property
    def is_loaded(self) -> bool:
        return self._loaded is not None

    def _state(self) -> LoadedModel:
        if self._loaded is not None:
            return self._loaded
        key = self._registry_key()
        with REGISTRY_LOCK:
            loaded = REGISTRY.get(key)
            if loaded is None:
                loaded = load_shared(key[0], self)
                REGISTRY[key] = loaded
        self._loaded = loaded
        return loaded

    @property
    def info(self) -> Any:
        """The checkpoint's facts (:class:`~internvl_tools.checkpoints.CheckpointInfo`); loads weights if needed."""
        return self._state().info

    @property
    def tokenizer(self) -> Any:
        return self._state().tokenizer

    @property
    def model(self) -> Any:
        """The underlying ``InternVLForConditionalGeneration`` (loads it if needed)."""
        return self._state().model

    @property
    def context_length(self) -> int:
        return int(self._state().info.context_length)

    def unload(self) -> None:
        """Drop this engine's reference to the weights (and the shared registry's, so memory can be freed)."""
        if self._loaded is not None:
            with REGISTRY_LOCK:
                for key, value in list(REGISTRY.items()):
                    if value is self._loaded:
                        del REGISTRY[key]
            self._loaded = None

    # ------------------------------------------------------------------------------------------------ preparing

    def _budget(self, state: LoadedModel) -> int:
        from internvl_tools.tiling import tile_budget

        return tile_budget(state.info, self.max_tiles)

    def _tile(self, image: Any, max_tiles: int, state: LoadedModel) -> Any:
        from internvl_tools.media import load_image
        from internvl_tools.tiling import tile_image

        info = state.info
        pil = load_image(image, policy=self.media_policy)
        return tile_image(
            pil,
            max_tiles=max_tiles,
            min_tiles=min(self.min_tiles, max_tiles),
            image_size=info.image_size,
            use_thumbnail=info.use_thumbnail,
            mode=self.preprocess,
            mean=tuple(info.image_mean),
            std=tuple(info.image_std),
        )

    def _video(self, part: VideoPart, state: LoadedModel) -> Any:
        from internvl_tools.video import load_video

        info = state.info
        bound = None
        if part.start is not None or part.end is not None:
            bound = (part.start if part.start is not None else -100000, part.end if part.end is not None else 100000)
        return load_video(
            part.video,
            num_segments=part.num_frames,
            bound=bound,
            image_size=info.image_size,
            mode=self.preprocess,
            mean=tuple(info.image_mean),
            std=tuple(info.image_std),
            policy=self.media_policy,
        )

    def _prepare(self, messages: Any, state: LoadedModel) -> _Prepared:
        import torch

        from internvl_tools.prompts.builder import ImageSlot, PromptTurn, VideoSlot, build_chat_prompt

        msgs = normalize_messages(messages)
        info = state.info
        from internvl_tools.tiling import split_tile_budget

        # Messages before `current` have their images at one tile under history_images="one_tile".
        current = 0
        if self.history_images == "one_tile":
            current = max((i for i, m in enumerate(msgs) if m.role == "user"), default=0)
        n_images = sum(len(m.images) for m in msgs[current:])
        per_image = split_tile_budget(self._budget(state), n_images) if n_images else 0
        system_message = self.system_message if self.system_message is not None else info.system_message
        turns: list[Any] = []
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
                    tiled = self._tile(part.image, budget, state)
                    pixels.append(tiled.pixel_values)
                    parts.append(ImageSlot(tiled.num_tiles))
                elif isinstance(part, VideoPart):
                    frames = self._video(part, state)
                    pixels.append(frames.pixel_values)
                    parts.append(VideoSlot(len(frames.indices)))
            turns.append(PromptTurn(role=msg.role, parts=tuple(parts)))
        if self.prompt_format == "checkpoint":
            text, patches = self._checkpoint_prompt(msgs, turns, state)
        else:
            chat_prompt = build_chat_prompt(
                state.template, turns, system_message=system_message, tokens_per_tile=info.tokens_per_tile
            )
            text, patches = chat_prompt.text, list(chat_prompt.num_patches_list)
        input_ids = _encode(state.tokenizer, text)
        pixel_values = torch.cat(pixels, dim=0) if pixels else None
        num_tiles = int(sum(patches))
        if pixel_values is not None and pixel_values.shape[0] != num_tiles:
            raise GenerationError(
                f"Internal mismatch: {pixel_values.shape[0]} tiles prepared but the prompt holds {num_tiles}."
            )
        return _Prepared(
            input_ids=input_ids,
            pixel_values=pixel_values,
            num_tiles=num_tiles,
            image_tokens=num_tiles * int(info.tokens_per_tile),
            text=text,
        )

    def _checkpoint_prompt(self, msgs: list[Message], turns: list[Any], state: LoadedModel) -> tuple[str, list[int]]:
        """Render with the tokenizer's own chat template, then expand its image placeholders in order.

        The ``-hf`` template writes ``<IMG_CONTEXT>`` for each image and ``<video>`` for each video, which the
        transformers processor would expand; we expand them the same way.
        """
        from internvl_tools.constants import IMAGE_PLACEHOLDER, IMG_CONTEXT_TOKEN, VIDEO_PLACEHOLDER
        from internvl_tools.prompts.builder import ImageSlot, VideoSlot, expand_image_placeholders

        tokenizer = state.tokenizer
        if not getattr(tokenizer, "chat_template", None):
            raise ConfigError(
                f"{self.model_name!r} ships no chat template; use prompt_format='official' (the default)."
            )
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

    def _check_context(self, prepared: _Prepared, options: GenerationOptions, state: LoadedModel) -> int:
        """Refuse prompts that cannot fit; return the number of new tokens that can be generated."""
        context = int(state.info.context_length)
        prompt = len(prepared.input_ids)
        if prompt < context:
            return max(1, min(options.max_new_tokens, context - prompt))
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
            f"{prepared.num_tiles} tiles of {per_tile}), but {self.model_name!r} has a context of {context} tokens."
            + hint
        )

    # ------------------------------------------------------------------------------------------------ generation

    def _generate(
        self,
        prepared: list[_Prepared],
        options: GenerationOptions,
        state: LoadedModel,
        *,
        on_tokens: Any = None,
        logits_processor_factory: Any = None,
        cancel: threading.Event | None = None,
    ) -> tuple[list[tuple[list[int], int]], int]:
        """Run one (left-padded) generate; return (per row: new token ids, prompt length) and the token budget used."""
        import torch

        budgets = [self._check_context(p, options, state) for p in prepared]
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
            criteria.append(_StopStrings(state.tokenizer, options.stop, width, state.drop_ids))
        if cancel is not None:
            criteria.append(_Cancelled(cancel))
        processors: list[Any] = []
        if logits_processor_factory is not None:
            processors.append(logits_processor_factory(width, max_new))
        with state.lock:
            if options.seed is not None:
                torch.manual_seed(options.seed)
            try:
                with torch.inference_mode():
                    if options.num_beams == 1:
                        from internvl_tools.generation.decoding import decode

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
                        new_tokens = self._beam_search(inputs, options, state, max_new, processors, criteria)
            except InternVLError:
                raise
            except Exception as exc:
                raise GenerationError(f"Generation failed in {self.model_name!r}: {type(exc).__name__}: {exc}") from exc
        rows = [(new_tokens[row].tolist(), len(p.input_ids)) for row, p in enumerate(prepared)]
        return rows, max_new

    def _beam_search(
        self,
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

    def _finish(
        self,
        new_ids: list[int],
        prompt_len: int,
        prepared: _Prepared,
        options: GenerationOptions,
        state: LoadedModel,
        max_new: int,
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
        text = _decode(state.tokenizer, new_ids[:used], state.drop_ids)
        text = state.template.postprocess(text)
        cut = _cut_at_stop(text, options.stop)
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
            model=self.model_name,
        )

    def chat(self, messages: Any, **generation: Any) -> ChatResult:
        """Answer a conversation.

        ``messages``: a string, a :class:`~internvl_tools.messages.Message` list, or dicts in the transformers chat
        format (``{"role": "user", "content": [{"type": "image", "image": "page.png"}, {"type": "text", ...}]}``).
        Generation options: ``max_new_tokens``, ``temperature``, ``top_p``, ``top_k``, ``do_sample``, ``num_beams``,
        ``repetition_penalty``, ``stop``, ``seed``.
        """
        options = GenerationOptions.from_kwargs(generation)
        state = self._state()
        prepared = self._prepare(messages, state)
        [(new, plen)], max_new = self._generate([prepared], options, state)
        return self._finish(new, plen, prepared, options, state, max_new)

    def batch(self, conversations: Sequence[Any], *, batch_size: int = 8, **generation: Any) -> list[ChatResult]:
        """Answer several conversations with left-padded batched generation (``batch_size`` rows per generate).

        With greedy decoding each answer equals what :meth:`chat` returns for that conversation alone. A
        conversation that cannot be prepared (bad image, too long) comes back with ``finish_reason="error"`` and
        ``error`` set, in its place; the others are answered.
        """
        if isinstance(conversations, (str, dict)):
            raise ConfigError("batch() takes a list of conversations; for one conversation use chat().")
        if batch_size < 1:
            raise ConfigError(f"batch_size must be >= 1, got {batch_size}.")
        options = GenerationOptions.from_kwargs(generation)
        state = self._state()
        # One bad conversation (unreadable image, prompt too long) must not sink the others: it gets a result with
        # finish_reason "error" and the error message, and the rest are generated.
        results: list[ChatResult | None] = [None] * len(conversations)
        ready: list[tuple[int, _Prepared]] = []
        for index, conversation in enumerate(conversations):
            try:
                prepared = self._prepare(conversation, state)
                self._check_context(prepared, options, state)
            except InternVLError as exc:
                results[index] = _error_result(exc, self.model_name)
                continue
            ready.append((index, prepared))
        for start in range(0, len(ready), batch_size):
            chunk = ready[start : start + batch_size]
            items = [p for _, p in chunk]
            outs, max_new = self._generate(items, options, state)
            for (index, p), (new, plen) in zip(chunk, outs, strict=True):
                results[index] = self._finish(new, plen, p, options, state, max_new)
        return [r for r in results if r is not None]

    def stream(self, messages: Any, **generation: Any) -> TextStream:
        """Yield text deltas as they are generated; their concatenation equals ``chat(...).text``.

        The returned :class:`~internvl_tools.generation.TextStream` holds the full ``ChatResult`` (usage, finish
        reason) in ``.result`` once it is exhausted.

        Incomplete UTF-8 sequences, trailing whitespace and text that may begin a stop sequence are held back until
        they are resolved, so no character is lost or doubled (CJK and emoji included).
        """
        options = GenerationOptions.from_kwargs(generation)
        state = self._state()
        prepared = self._prepare(messages, state)
        stream = TextStream(None)
        stream._deltas = self._stream_prepared(prepared, options, state, stream)
        return stream

    def _stream_prepared(
        self, prepared: _Prepared, options: GenerationOptions, state: LoadedModel, sink: TextStream
    ) -> Iterator[str]:
        import queue

        tokens: queue.Queue = queue.Queue()
        cancel = threading.Event()
        done = object()
        error: list[BaseException] = []

        def put(step_tokens: Any) -> None:
            for token in step_tokens.reshape(-1).tolist():
                tokens.put(int(token))

        def run() -> None:
            try:
                self._generate([prepared], options, state, on_tokens=put, cancel=cancel)
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
                visible = _visible_text(state, ids, options.stop, final=False)
                if len(visible) > len(emitted) and visible.startswith(emitted):
                    yield visible[len(emitted) :]
                    emitted = visible
            worker.join()
            if error:
                raise error[0]
            final = _visible_text(state, ids, options.stop, final=True)
            if final.startswith(emitted) and len(final) > len(emitted):
                yield final[len(emitted) :]
            max_new = self._check_context(prepared, options, state)
            sink.result = self._finish(ids, len(prepared.input_ids), prepared, options, state, max_new)
        finally:
            cancel.set()

    def generate_structured(self, messages: Any, json_schema: dict, **generation: Any) -> ChatResult:
        """Like :meth:`chat`, with decoding constrained to ``json_schema`` (for the integrations)."""
        from internvl_tools.generation.structured import JSONSchemaLogitsProcessor, compile_json_schema, escape_control_characters, minimal_json_length

        options = GenerationOptions.from_kwargs(generation)
        if options.stop:
            raise ConfigError("stop sequences cannot be combined with structured output; the grammar decides the end.")
        state = self._state()
        prepared = self._prepare(messages, state)
        vocab = int(state.model.get_output_embeddings().weight.shape[0])
        compiled = compile_json_schema(
            state.tokenizer, json_schema, vocab_size=vocab, stop_token_ids=[state.eos_token_id]
        )

        def factory(prompt_length: int, max_new: int) -> JSONSchemaLogitsProcessor:
            return JSONSchemaLogitsProcessor(
                compiled,
                state.tokenizer,
                prompt_length=prompt_length,
                max_new_tokens=max_new,
                stop_token_ids=[state.eos_token_id],
                reserve=reserve,
            )

        reserve = minimal_json_length(json_schema)
        [(new, plen)], max_new = self._generate([prepared], options, state, logits_processor_factory=factory)
        result = self._finish(new, plen, prepared, options, state, max_new)
        return result.model_copy(update={"text": escape_control_characters(result.text)})

    def count_tokens(self, messages: Any) -> int:
        """The prompt length in tokens (text plus image tokens) that ``chat(messages)`` would send."""
        state = self._state()
        return len(self._prepare(messages, state).input_ids)
