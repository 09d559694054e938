"""The InternVL engine: load any InternVL checkpoint on transformers' native architecture and talk to it.

>>> from internvl_tools import InternVL
>>> vlm = InternVL.from_pretrained("tiny")          # a tiny random checkpoint built offline: meaningless answers
>>> isinstance(vlm.ask(None, "Hello?", max_new_tokens=4), str)
True

Construction is cheap; weights load on first use (or :meth:`InternVL.load`), once per checkpoint and settings,
and are shared by every engine (and every LangChain/LlamaIndex wrapper) that asks for the same ones.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

from internvl_tools.engines.base import VisionLanguageModel
from internvl_tools.engines.generate import finish_result, generate_rows, stream_deltas
from internvl_tools.engines.prepare import (
    PreparedInput,
    check_context,
    check_input_settings,
    map_in_threads,
    prepare_input,
)
from internvl_tools.engines.registry import REGISTRY, REGISTRY_LOCK, LoadedModel, load_shared, resolve_model_source
from internvl_tools.engines.remote import RemoteInternVL
from internvl_tools.errors import ConfigError, InternVLError
from internvl_tools.generation.options import GenerationOptions
from internvl_tools.generation.stream import TextStream
from internvl_tools.generation.structured import (
    JSONSchemaLogitsProcessor,
    compile_json_schema,
    escape_control_characters,
    minimal_json_length,
)
from internvl_tools.results import ChatResult

if TYPE_CHECKING:
    from internvl_tools.checkpoints.config import CheckpointInfo

__all__ = ["InternVL"]


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
        prepare_threads: threads that decode and tile the images of a ``batch`` (and of ``read_pdf`` batches)
            side by side; ``None`` (default) uses the CPU cores this process may run on, at most 4; ``1`` prepares
            one conversation after the other. Decoders and resizes release the GIL, so on two cores a batch of
            decode-bound images prepares about twice as fast; answers are the same either way.
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
        prepare_threads: int | None = None,
    ) -> None:
        if prepare_threads is not None and (not isinstance(prepare_threads, int) or prepare_threads < 1):
            raise ConfigError(f"prepare_threads must be None or an int >= 1, got {prepare_threads!r}.")
        check_input_settings(
            preprocess=preprocess, prompt_format=prompt_format, history_images=history_images, max_tiles=max_tiles
        )
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
        self.prepare_threads = prepare_threads
        self._loaded: LoadedModel | None = None

    @classmethod
    def from_pretrained(cls, model_id_or_path: str | Path, **kwargs: Any) -> InternVL:
        """Create an engine for a checkpoint; nothing is loaded until first use. See :class:`InternVL` for options."""
        return cls(model_id_or_path, **kwargs)

    @classmethod
    def from_server(
        cls, base_url: str, model: str | None = None, api_key: str | None = None, **kwargs: Any
    ) -> RemoteInternVL:
        """The same API over an OpenAI-compatible server (vLLM, LMDeploy ``api_server``, ``internvl-tools serve``).

        ``model`` is discovered from ``/v1/models`` when not given. See :mod:`internvl_tools.engines.remote`.
        """
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
    def info(self) -> CheckpointInfo:
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

    # ------------------------------------------------------------------------------------------------ generation

    def _prepare(self, messages: Any, state: LoadedModel) -> PreparedInput:
        return prepare_input(messages, state, self)

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
        [(new, plen)], max_new = generate_rows([prepared], options, state, self.model_name)
        return finish_result(new, plen, prepared, options, state, max_new, self.model_name)

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
        ready: list[tuple[int, PreparedInput]] = []

        def prepare(conversation: Any) -> PreparedInput | InternVLError:
            try:
                prepared = self._prepare(conversation, state)
                check_context(prepared, options.max_new_tokens, state, self.model_name)
            except InternVLError as exc:
                return exc
            return prepared

        for index, outcome in enumerate(map_in_threads(prepare, list(conversations), self.prepare_threads)):
            if isinstance(outcome, InternVLError):
                results[index] = ChatResult.from_error(outcome, self.model_name)
            else:
                ready.append((index, outcome))
        for start in range(0, len(ready), batch_size):
            chunk = ready[start : start + batch_size]
            items = [p for _, p in chunk]
            outs, max_new = generate_rows(items, options, state, self.model_name)
            for (index, p), (new, plen) in zip(chunk, outs, strict=True):
                results[index] = finish_result(new, plen, p, options, state, max_new, self.model_name)
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
        return TextStream(stream_deltas(prepared, options, state, self.model_name))

    def generate_structured(self, messages: Any, json_schema: dict, **generation: Any) -> ChatResult:
        """Like :meth:`chat`, with decoding constrained to ``json_schema`` (for the integrations)."""
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
        [(new, plen)], max_new = generate_rows(
            [prepared], options, state, self.model_name, logits_processor_factory=factory
        )
        result = finish_result(new, plen, prepared, options, state, max_new, self.model_name)
        return result.model_copy(update={"text": escape_control_characters(result.text)})

    def count_tokens(self, messages: Any) -> int:
        """The prompt length in tokens (text plus image tokens) that ``chat(messages)`` would send."""
        state = self._state()
        return len(self._prepare(messages, state).input_ids)
