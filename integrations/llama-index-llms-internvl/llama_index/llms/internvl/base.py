"""``InternVL``: InternVL vision-language models as a LlamaIndex ``LLM`` that reads images from ``ChatMessage.blocks``.

>>> from llama_index.llms.internvl import InternVL
>>> llm = InternVL(model="tiny", max_new_tokens=4)          # cheap: nothing loads until the first call
>>> isinstance(llm.complete("Hello").text, str)
True
"""

from __future__ import annotations

import asyncio
import dataclasses
import warnings
from collections.abc import AsyncGenerator, Generator, Sequence
from typing import Any, TypeVar

from llama_index.core.base.llms.types import (
    ChatMessage,
    ChatResponse,
    ChatResponseAsyncGen,
    ChatResponseGen,
    CompletionResponse,
    CompletionResponseAsyncGen,
    CompletionResponseGen,
    LLMMetadata,
    MessageRole,
    TextBlock,
)
from llama_index.core.bridge.pydantic import BaseModel, Field, PrivateAttr, SecretStr, model_validator
from llama_index.core.constants import DEFAULT_CONTEXT_WINDOW
from llama_index.core.instrumentation import get_dispatcher
from llama_index.core.instrumentation.events.llm import (
    LLMStructuredPredictEndEvent,
    LLMStructuredPredictInProgressEvent,
    LLMStructuredPredictStartEvent,
)
from llama_index.core.llms.callbacks import llm_chat_callback, llm_completion_callback
from llama_index.core.llms.function_calling import FunctionCallingLLM
from llama_index.core.llms.llm import ToolSelection
from llama_index.core.prompts import BasePromptTemplate
from llama_index.core.types import PydanticProgramMode
from llama_index.llms.internvl.blocks import image_documents_to_blocks, to_core_messages
from llama_index.llms.internvl.tool_calls import openai_tools, tool_call_request, tool_selections, tools_message

import internvl_tools
from internvl_tools import EngineSettings, json_instruction
from internvl_tools.constants import DEFAULT_MODEL

__all__ = ["DEFAULT_MODEL", "InternVL"]

dispatcher = get_dispatcher(__name__)

Model = TypeVar("Model", bound=BaseModel)


def _generation_keys() -> frozenset[str]:
    return frozenset(field.name for field in dataclasses.fields(internvl_tools.GenerationOptions)) | {"max_tokens"}


class InternVL(EngineSettings, FunctionCallingLLM):
    """An InternVL model (local weights, or any OpenAI-compatible server) as a multimodal, function-calling
    LlamaIndex LLM.

    Messages may carry ``TextBlock``, ``ImageBlock`` (bytes, path, data URI, or http(s) URL when the media policy
    allows it), ``DocumentBlock`` (PDF/TIFF/image files rendered to page images; text files as text) and
    ``VideoBlock``. Construction is cheap; weights load on first use and are shared process-wide by every engine
    with the same checkpoint and settings.

    Tool calls (``chat_with_tools``, ``predict_and_call``, ``FunctionAgent``) are grammar-constrained JSON, as in
    LangChain's ``ChatInternVL.bind_tools``: every call parses and its arguments match the tool's schema; one call
    per turn, or 1-8 with ``allow_parallel_tool_calls=True``; ``tool_required=True`` forces a call.

    The engine and media fields are the core's :class:`internvl_tools.EngineSettings` (the same names in the CLI,
    LangChain and LlamaIndex), and the engine is built by its ``build_engine``.

    Args:
        model: hub id, local checkpoint directory, or ``"tiny"`` (a tiny random test checkpoint).
        engine: an existing engine to use instead: an ``internvl_tools.InternVL``, a server backend, or anything with
            the ``VisionLanguageModel`` API (``chat``, ``stream``, ``generate_structured``).
        base_url / api_key: an OpenAI-compatible server (vLLM, LMDeploy, ``internvl-tools serve``) instead of local
            weights, connected on first use; the key defaults to ``$INTERNVL_TOOLS_API_KEY``.
        device / dtype / max_tiles / trust_remote_code: local engine options.
        max_new_tokens / temperature / top_p / top_k / repetition_penalty / stop / seed: generation defaults
            (greedy when ``temperature`` is 0); per-call keyword arguments override them.
        allow_remote_urls / allowed_dirs / allow_local_files / allow_private_hosts: the media policy for the engine
            this LLM builds (URLs off by default; local paths allowed, confined to ``allowed_dirs`` when set, for
            images, documents and videos). ``media_policy`` passes a ready ``internvl_tools.MediaPolicy`` instead.
            ``allow_remote_images`` is a deprecated alias of ``allow_remote_urls``.
        engine_kwargs: extra ``internvl_tools.InternVL.from_pretrained`` options (``attn_implementation``,
            ``quantization``, ``template``, ``system_message``, ...).

    >>> InternVL(model="tiny").metadata.is_chat_model
    True
    """

    api_key: SecretStr | None = Field(default=None, exclude=True, repr=False, description="Server API key.")

    max_new_tokens: int = Field(default=512, ge=1, description="Tokens to generate per answer (num_output).")
    temperature: float = Field(default=0.0, ge=0.0, description="0 is greedy decoding.")
    top_p: float | None = Field(default=None, description="Nucleus sampling.")
    top_k: int | None = Field(default=None, description="Top-k sampling.")
    repetition_penalty: float | None = Field(default=None, description="Repetition penalty.")
    stop: list[str] | None = Field(default=None, description="Stop sequences.")
    seed: int | None = Field(default=None, description="Sampling seed.")
    context_window: int | None = Field(default=None, description="Override; by default read from the model's config.")

    max_document_pages: int = Field(default=8, ge=1, description="Pages of a DocumentBlock shown to the model.")
    document_dpi: float = Field(default=100.0, gt=0, description="Render resolution for DocumentBlock pages.")
    schema_in_prompt: bool = Field(
        default=True, description="Also state the JSON schema in the prompt for structured output."
    )

    _engine: Any = PrivateAttr(default=None)
    _owns_engine: bool = PrivateAttr(default=True)
    _context_window: int | None = PrivateAttr(default=None)

    def __init__(self, engine: Any = None, **kwargs: Any) -> None:
        if engine is not None and "model" not in kwargs:
            kwargs["model"] = str(getattr(engine, "model_name", None) or DEFAULT_MODEL)
        if "allow_remote_images" in kwargs:  # here, so the warning points at the caller
            kwargs = _renamed_remote_flag(kwargs, stacklevel=2)
        super().__init__(**kwargs)
        if engine is not None:
            for name in ("chat", "stream", "generate_structured"):
                if not callable(getattr(engine, name, None)):
                    raise internvl_tools.ConfigError(
                        f"engine must offer the VisionLanguageModel API; {type(engine).__name__} has no {name}()."
                    )
            self._engine = engine
            self._owns_engine = False

    @model_validator(mode="before")
    @classmethod
    def _deprecated_allow_remote_images(cls, data: Any) -> Any:
        # model_validate / from_dict of settings saved before the rename.
        if isinstance(data, dict) and "allow_remote_images" in data:
            return _renamed_remote_flag(data, stacklevel=2)
        return data

    @property
    def allow_remote_images(self) -> bool:
        """Deprecated alias of ``allow_remote_urls``."""
        warnings.warn(_REMOTE_IMAGES_DEPRECATED, DeprecationWarning, stacklevel=2)
        return self.allow_remote_urls

    @allow_remote_images.setter
    def allow_remote_images(self, value: bool) -> None:
        warnings.warn(_REMOTE_IMAGES_DEPRECATED, DeprecationWarning, stacklevel=2)
        self.allow_remote_urls = value

    @classmethod
    def from_server(
        cls, base_url: str, model: str | None = None, api_key: str | None = None, **kwargs: Any
    ) -> InternVL:
        """An LLM over an OpenAI-compatible InternVL server; the connection is made on first use."""
        return cls(base_url=base_url, model=model or DEFAULT_MODEL, api_key=api_key, **kwargs)

    @classmethod
    def class_name(cls) -> str:
        return "InternVL_llm"

    def __getstate__(self) -> dict[Any, Any]:
        # A pickled LLM carries settings, not weights: an engine we built is rebuilt (and shared) on first use.
        state = super().__getstate__()
        private = dict(state.get("__pydantic_private__") or {})
        if private.get("_owns_engine", True):
            private["_engine"] = None
        state["__pydantic_private__"] = private
        return state

    # ------------------------------------------------------------------------------------------------ engine

    @property
    def engine(self) -> Any:
        """The engine (built on first access; weights load on first generation and are shared)."""
        if self._engine is None:
            # A server is asked which model it serves (GET /v1/models) unless a model other than the default is named.
            served = None if self.model == DEFAULT_MODEL else self.model
            self._engine = self.build_engine(server_model=served)
            self._owns_engine = True
        return self._engine

    def _engine_policy(self) -> Any:
        return getattr(self.engine, "media_policy", None) or self.build_media_policy()

    def _resolve_context_window(self) -> int:
        if self.context_window:
            return int(self.context_window)
        if self._context_window is None:
            self._context_window = self._probe_context_window()
        return self._context_window

    def _probe_context_window(self) -> int:
        engine = self._engine
        if engine is not None and getattr(engine, "is_loaded", True):
            value = _safe(lambda: getattr(engine, "context_length", None))
            if value:
                return int(value)
        if engine is None or not self._owns_engine or not self.base_url:
            # The config alone answers for local checkpoint directories, without loading any weights.
            info = _safe(lambda: internvl_tools.read_checkpoint_info(self.model))
            if info is not None and getattr(info, "context_length", None):
                return int(info.context_length)
        value = _safe(lambda: self.engine.context_length)
        return int(value) if value else DEFAULT_CONTEXT_WINDOW

    @property
    def metadata(self) -> LLMMetadata:
        return LLMMetadata(
            context_window=self._resolve_context_window(),
            num_output=self.max_new_tokens,
            is_chat_model=True,
            is_function_calling_model=True,
            model_name=self.model,
        )

    # ------------------------------------------------------------------------------------------------ helpers

    def _generation(self, kwargs: dict[str, Any]) -> dict[str, Any]:
        options: dict[str, Any] = {
            "max_new_tokens": self.max_new_tokens,
            "temperature": self.temperature,
            "top_p": self.top_p,
            "top_k": self.top_k,
            "repetition_penalty": self.repetition_penalty,
            "stop": self.stop,
            "seed": self.seed,
        }
        known = _generation_keys()
        # LlamaIndex passes its own keywords (formatted, tools, ...) through; only generation options go on.
        options.update({k: v for k, v in kwargs.items() if k in known})
        if "max_tokens" in options:
            options["max_new_tokens"] = options.pop("max_tokens")
        return {k: v for k, v in options.items() if v is not None}

    def _core(self, messages: Sequence[ChatMessage]) -> list[dict[str, Any]]:
        return to_core_messages(
            messages,
            media_policy=self._engine_policy(),
            max_document_pages=self.max_document_pages,
            document_dpi=self.document_dpi,
        )

    @staticmethod
    def _raw(result: Any) -> dict[str, Any]:
        usage = result.usage.model_dump() if getattr(result, "usage", None) is not None else {}
        return {
            "text": result.text,
            "finish_reason": result.finish_reason,
            "model": result.model,
            "usage": usage,
            "prompt_tokens": usage.get("prompt_tokens"),
            "completion_tokens": usage.get("completion_tokens"),
            "total_tokens": usage.get("total_tokens"),
        }

    def _chat(self, messages: Sequence[ChatMessage], **kwargs: Any) -> ChatResponse:
        core = self._core(messages)
        generation = self._generation(kwargs)
        schema = None
        if kwargs.get("tools"):
            schema = tool_call_request(
                core,
                openai_tools(kwargs["tools"]),
                kwargs.get("tool_choice"),
                bool(kwargs.get("allow_parallel_tool_calls")),
                generation,
                tool_required=bool(kwargs.get("tool_required")),
            )
        if schema is not None:
            result = self.engine.generate_structured(core, schema, **generation)
            message = tools_message(result.text)
        else:
            result = self.engine.chat(core, **generation)
            message = ChatMessage(role=MessageRole.ASSISTANT, content=result.text)
        raw = self._raw(result)
        return ChatResponse(
            message=message,
            raw=raw,
            additional_kwargs={k: raw[k] for k in ("prompt_tokens", "completion_tokens", "total_tokens")},
        )

    def _stream_chat(self, messages: Sequence[ChatMessage], **kwargs: Any) -> ChatResponseGen:
        if kwargs.get("tools"):
            # Constrained decoding is not streamed: the tool calls (or the answer) arrive as one chunk.
            response = self._chat(messages, **kwargs)
            response.delta = response.message.content or ""

            def one() -> ChatResponseGen:
                yield response

            return one()
        core = self._core(messages)
        deltas = self.engine.stream(core, **self._generation(kwargs))

        def gen() -> ChatResponseGen:
            text = ""
            pending: str | None = None
            for delta in deltas:
                # Hold one delta back so the last chunk can carry the token counts.
                if pending is not None:
                    text += pending
                    yield ChatResponse(message=ChatMessage(role=MessageRole.ASSISTANT, content=text), delta=pending)
                pending = delta
            text += pending or ""
            raw = self._raw(deltas.result)  # the core's TextStream holds the exact usage once exhausted
            yield ChatResponse(
                message=ChatMessage(role=MessageRole.ASSISTANT, content=text),
                delta=pending or "",
                raw=raw,
                additional_kwargs=dict(raw["usage"]),
            )

        return gen()

    @staticmethod
    def _prompt_messages(prompt: str, image_documents: Sequence[Any] | None) -> list[ChatMessage]:
        blocks: list[Any] = [*image_documents_to_blocks(image_documents), TextBlock(text=prompt)]
        return [ChatMessage(role=MessageRole.USER, blocks=blocks)]

    @staticmethod
    def _to_completion(response: ChatResponse) -> CompletionResponse:
        return CompletionResponse(
            text=response.message.content or "",
            raw=response.raw,
            delta=response.delta,
            additional_kwargs=response.additional_kwargs,
        )

    # ------------------------------------------------------------------------------------------------ sync

    @llm_chat_callback()
    def chat(self, messages: Sequence[ChatMessage], **kwargs: Any) -> ChatResponse:
        return self._chat(messages, **kwargs)

    @llm_chat_callback()
    def stream_chat(self, messages: Sequence[ChatMessage], **kwargs: Any) -> ChatResponseGen:
        return self._stream_chat(messages, **kwargs)

    @llm_completion_callback()
    def complete(
        self, prompt: str, formatted: bool = False, image_documents: Sequence[Any] | None = None, **kwargs: Any
    ) -> CompletionResponse:
        """Complete ``prompt``; ``image_documents`` (ImageDocument/ImageNode/ImageBlock/path/bytes) serves callers of
        the legacy ``MultiModalLLM.complete(prompt, image_documents)`` interface."""
        return self._to_completion(self._chat(self._prompt_messages(prompt, image_documents), **kwargs))

    @llm_completion_callback()
    def stream_complete(
        self, prompt: str, formatted: bool = False, image_documents: Sequence[Any] | None = None, **kwargs: Any
    ) -> CompletionResponseGen:
        chunks = self._stream_chat(self._prompt_messages(prompt, image_documents), **kwargs)

        def gen() -> CompletionResponseGen:
            for chunk in chunks:
                yield self._to_completion(chunk)

        return gen()

    # ------------------------------------------------------------------------------------------------ async

    @llm_chat_callback()
    async def achat(self, messages: Sequence[ChatMessage], **kwargs: Any) -> ChatResponse:
        return await asyncio.to_thread(self._chat, messages, **kwargs)

    @llm_chat_callback()
    async def astream_chat(self, messages: Sequence[ChatMessage], **kwargs: Any) -> ChatResponseAsyncGen:
        chunks = await asyncio.to_thread(self._stream_chat, messages, **kwargs)
        return _aiter_in_thread(chunks)

    @llm_completion_callback()
    async def acomplete(
        self, prompt: str, formatted: bool = False, image_documents: Sequence[Any] | None = None, **kwargs: Any
    ) -> CompletionResponse:
        response = await asyncio.to_thread(self._chat, self._prompt_messages(prompt, image_documents), **kwargs)
        return self._to_completion(response)

    @llm_completion_callback()
    async def astream_complete(
        self, prompt: str, formatted: bool = False, image_documents: Sequence[Any] | None = None, **kwargs: Any
    ) -> CompletionResponseAsyncGen:
        messages = self._prompt_messages(prompt, image_documents)
        chunks = await asyncio.to_thread(self._stream_chat, messages, **kwargs)

        async def gen() -> CompletionResponseAsyncGen:
            async for chunk in _aiter_in_thread(chunks):
                yield self._to_completion(chunk)

        return gen()

    # ------------------------------------------------------------------------------------------------ tools

    def _prepare_chat_with_tools(
        self,
        tools: Sequence[Any],
        user_msg: str | ChatMessage | None = None,
        chat_history: list[ChatMessage] | None = None,
        verbose: bool = False,
        allow_parallel_tool_calls: bool = False,
        tool_required: bool = False,
        tool_choice: Any = None,
        **kwargs: Any,
    ) -> dict[str, Any]:
        """The ``chat`` keywords of one turn with ``tools``: grammar-constrained calls (see the class docstring).

        ``tool_choice``: ``"auto"`` (a call or a text answer; the default), ``"required"``/``"any"`` (some tool),
        ``"none"``, or a tool name; ``tool_required=True`` is ``"required"``.
        """
        messages = list(chat_history or [])
        if isinstance(user_msg, str):
            user_msg = ChatMessage(role=MessageRole.USER, content=user_msg)
        if user_msg is not None:
            messages.append(user_msg)
        return {
            "messages": messages,
            "tools": list(tools),
            "tool_choice": tool_choice,
            "tool_required": tool_required,
            "allow_parallel_tool_calls": allow_parallel_tool_calls,
            **kwargs,
        }

    def get_tool_calls_from_response(
        self, response: ChatResponse, error_on_no_tool_call: bool = True, **kwargs: Any
    ) -> list[ToolSelection]:
        """The tool calls of a ``chat_with_tools`` answer (``ToolCallBlock``s) as ``ToolSelection``s."""
        return tool_selections(response, error_on_no_tool_call)

    # ------------------------------------------------------------------------------------------------ structured

    def _structured(self, output_cls: type[Model], messages: list[ChatMessage], llm_kwargs: dict[str, Any]) -> Model:
        """Constrained decoding (xgrammar) against ``output_cls``'s JSON schema; images in the messages are kept."""
        schema = internvl_tools.json_schema_of(output_cls)
        core = self._core(messages)
        if self.schema_in_prompt:
            instruction = json_instruction(schema)
            last_user = max((i for i, m in enumerate(core) if m["role"] == "user"), default=None)
            if last_user is None:
                core.append({"role": "user", "content": [{"type": "text", "text": instruction}]})
            else:
                core[last_user]["content"].append({"type": "text", "text": "\n" + instruction})
        generation = self._generation(llm_kwargs)
        generation.pop("stop", None)  # the grammar decides where the answer ends
        result = self.engine.generate_structured(core, schema, **generation)
        if result.finish_reason != "stop":
            raise internvl_tools.StructuredOutputError(
                f"The JSON answer did not complete within max_new_tokens={generation.get('max_new_tokens')}; raise "
                f"max_new_tokens. Partial answer: {result.text[:200]!r}"
            )
        return internvl_tools.validate_output(result.text, output_cls)

    def _uses_grammar(self) -> bool:
        return self.pydantic_program_mode == PydanticProgramMode.DEFAULT

    @dispatcher.span
    def structured_predict(
        self,
        output_cls: type[Model],
        prompt: BasePromptTemplate,
        llm_kwargs: dict[str, Any] | None = None,
        **prompt_args: Any,
    ) -> Model:
        """Fill ``output_cls`` from the formatted prompt with JSON-schema-constrained decoding (always valid JSON)."""
        if not self._uses_grammar():
            return super().structured_predict(output_cls, prompt, llm_kwargs, **prompt_args)
        dispatcher.event(
            LLMStructuredPredictStartEvent(output_cls=output_cls, template=prompt, template_args=prompt_args)
        )
        result = self._structured(output_cls, self._get_messages(prompt, **prompt_args), llm_kwargs or {})
        dispatcher.event(LLMStructuredPredictEndEvent(output=result))
        return result

    @dispatcher.span
    async def astructured_predict(
        self,
        output_cls: type[Model],
        prompt: BasePromptTemplate,
        llm_kwargs: dict[str, Any] | None = None,
        **prompt_args: Any,
    ) -> Model:
        if not self._uses_grammar():
            return await super().astructured_predict(output_cls, prompt, llm_kwargs, **prompt_args)
        dispatcher.event(
            LLMStructuredPredictStartEvent(output_cls=output_cls, template=prompt, template_args=prompt_args)
        )
        messages = self._get_messages(prompt, **prompt_args)
        result = await asyncio.to_thread(self._structured, output_cls, messages, llm_kwargs or {})
        dispatcher.event(LLMStructuredPredictEndEvent(output=result))
        return result

    @dispatcher.span
    def stream_structured_predict(
        self,
        output_cls: type[Model],
        prompt: BasePromptTemplate,
        llm_kwargs: dict[str, Any] | None = None,
        **prompt_args: Any,
    ) -> Generator[Model, None, None]:
        """Yields the validated object once: constrained JSON is only valid as a whole, so there are no partials."""
        if not self._uses_grammar():
            yield from super().stream_structured_predict(output_cls, prompt, llm_kwargs, **prompt_args)
            return
        dispatcher.event(
            LLMStructuredPredictStartEvent(output_cls=output_cls, template=prompt, template_args=prompt_args)
        )
        result = self._structured(output_cls, self._get_messages(prompt, **prompt_args), llm_kwargs or {})
        dispatcher.event(LLMStructuredPredictInProgressEvent(output=result))
        yield result
        dispatcher.event(LLMStructuredPredictEndEvent(output=result))

    @dispatcher.span
    async def astream_structured_predict(
        self,
        output_cls: type[Model],
        prompt: BasePromptTemplate,
        llm_kwargs: dict[str, Any] | None = None,
        **prompt_args: Any,
    ) -> AsyncGenerator[Model, None]:
        if not self._uses_grammar():
            return await super().astream_structured_predict(output_cls, prompt, llm_kwargs, **prompt_args)
        result = await self.astructured_predict(output_cls, prompt, llm_kwargs, **prompt_args)

        async def gen() -> AsyncGenerator[Model, None]:
            yield result

        return gen()


_REMOTE_IMAGES_DEPRECATED = "InternVL(allow_remote_images=...) is deprecated; use allow_remote_urls=..."


def _renamed_remote_flag(data: dict[str, Any], stacklevel: int) -> dict[str, Any]:
    """``data`` with the deprecated ``allow_remote_images`` moved to ``allow_remote_urls`` (with a warning)."""
    data = dict(data)
    value = data.pop("allow_remote_images")
    warnings.warn(_REMOTE_IMAGES_DEPRECATED, DeprecationWarning, stacklevel=stacklevel + 1)
    if "allow_remote_urls" in data and bool(data["allow_remote_urls"]) != bool(value):
        raise internvl_tools.ConfigError("allow_remote_images (deprecated) and allow_remote_urls disagree.")
    data["allow_remote_urls"] = value
    return data


def _safe(fn: Any) -> Any:
    try:
        return fn()
    except Exception:
        return None


async def _aiter_in_thread(chunks: Any) -> Any:
    """Drive a blocking generator from a worker thread, so the event loop never waits on generation."""
    done = object()
    try:
        while True:
            item = await asyncio.to_thread(next, chunks, done)
            if item is done:
                return
            yield item
    finally:
        close = getattr(chunks, "close", None)
        if close is not None:
            close()
