"""``ChatInternVL``: an InternVL vision-language model as a LangChain chat model.

>>> from langchain_internvl import ChatInternVL
>>> llm = ChatInternVL(model="tiny", max_tokens=4)      # cheap: weights load on the first call
>>> llm.profile["image_inputs"], llm.profile["tool_calling"]
(True, True)
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import threading
from collections.abc import AsyncIterator, Callable, Iterator, Sequence
from operator import itemgetter
from typing import Any, Literal

from internvl_tools import json_instruction
from internvl_tools.constants import API_KEY_ENV
from internvl_tools.generation.tools import (
    normalize_tool_choice,
    parse_tool_answer,
    tool_call_budget,
    tool_call_schema,
    tool_instructions,
)
from langchain_core.callbacks import AsyncCallbackManagerForLLMRun, CallbackManagerForLLMRun
from langchain_core.language_models import LanguageModelInput
from langchain_core.language_models.chat_models import BaseChatModel, LangSmithParams
from langchain_core.language_models.model_profile import ModelProfile
from langchain_core.messages import AIMessage, AIMessageChunk, BaseMessage
from langchain_core.messages.ai import UsageMetadata
from langchain_core.messages.tool import tool_call_chunk
from langchain_core.output_parsers import JsonOutputParser, PydanticOutputParser
from langchain_core.outputs import ChatGeneration, ChatGenerationChunk, ChatResult
from langchain_core.runnables import Runnable, RunnableMap, RunnablePassthrough
from langchain_core.tools import BaseTool
from langchain_core.utils.function_calling import convert_to_json_schema, convert_to_openai_tool
from langchain_core.utils.pydantic import is_basemodel_subclass
from pydantic import Field

from langchain_internvl._config import InternVLSettings
from langchain_internvl._messages import DEFAULT_MAX_PDF_PAGES, to_core_messages

__all__ = ["ChatInternVL"]

PROVIDER = "internvl"

# Per-call options passed straight to the engine (core names; max_tokens is mapped to max_new_tokens).
_GENERATION_KEYS = frozenset(
    {"max_new_tokens", "temperature", "top_p", "top_k", "do_sample", "num_beams", "repetition_penalty", "seed"}
)


class ChatInternVL(InternVLSettings, BaseChatModel):
    """InternVL (local transformers weights, an existing engine, or an OpenAI-compatible server) as a chat model.

    Reads text, images (v1 blocks by base64 or url, OpenAI ``image_url`` as a string or dict, data URIs), PDF
    ``file`` blocks (rendered page by page), images in any turn and in ``ToolMessage`` results. Remote URLs are off
    unless ``allow_remote_urls=True``; local paths only inside ``allowed_dirs``.

    Structured output runs through the engine's grammar-constrained decoding, so the answer always parses even
    from small models: ``with_structured_output(Schema)``.

    Tool calling (``bind_tools``) uses the same grammar: the tools (name, description, JSON-schema parameters) are
    described in the prompt and the answer is constrained to ``{"tool": <name>, "arguments": {...}}`` for one of
    the allowed tools (or ``{"answer": "..."}`` under ``tool_choice="auto"``), so every call is well-formed and its
    arguments validate against the tool's schema. Choosing the right tool and values is up to the checkpoint: use
    an instruction-following one (InternVL3 / 3.5); a random tiny test model produces valid but arbitrary calls.
    One call per turn (an agent loop makes further calls in later turns). With tools bound, a ``max_tokens`` too
    small for the shortest valid call is raised to fit it; a call cut off anyway arrives in ``invalid_tool_calls``.

    Example:
        .. code-block:: python

            from langchain_core.messages import HumanMessage
            from langchain_internvl import ChatInternVL

            llm = ChatInternVL(model="OpenGVLab/InternVL3-1B-hf", max_tokens=256, allowed_dirs=["./images"])
            msg = HumanMessage([{"type": "image", "url": "file://./images/receipt.png"},
                                {"type": "text", "text": "What is the total?"}])
            llm.invoke([msg]).content

            def get_weather(city: str) -> str:
                "Current weather in a city."
                return "sunny"

            llm.bind_tools([get_weather], tool_choice="any").invoke("Weather in Paris?").tool_calls
            # [{'name': 'get_weather', 'args': {'city': 'Paris'}, 'id': 'call_...', 'type': 'tool_call'}]
    """

    temperature: float | None = None
    """0 or ``None``: greedy decoding; > 0: sampling."""
    max_tokens: int | None = Field(default=None, ge=1)
    """Most new tokens per answer (the engine's default, 512, when unset)."""
    top_p: float | None = None
    top_k: int | None = None
    repetition_penalty: float | None = None
    seed: int | None = None
    stop: list[str] | None = Field(default=None, alias="stop_sequences")
    streaming: bool = False
    """Make ``invoke`` stream internally (callbacks receive tokens)."""
    max_pdf_pages: int = Field(default=DEFAULT_MAX_PDF_PAGES, ge=1)
    """Pages read from one PDF file block (larger PDFs are refused: use ``InternVLPDFLoader``)."""
    schema_in_prompt: bool = True
    """Also state the JSON schema in the prompt for structured output (the grammar enforces it either way)."""
    timeout: float | None = None
    """Accepted for interface compatibility (server backends may use it)."""
    max_retries: int | None = None
    """Accepted for interface compatibility; local generation is not retried."""

    @property
    def _llm_type(self) -> str:
        return "internvl-chat"

    @property
    def lc_secrets(self) -> dict[str, str]:
        return {"api_key": API_KEY_ENV}

    @classmethod
    def is_lc_serializable(cls) -> bool:
        return False

    @property
    def _identifying_params(self) -> dict[str, Any]:
        return {
            "model": self.model,
            "temperature": self.temperature,
            "max_tokens": self.max_tokens,
            "device": self.device,
            "dtype": self.dtype,
            "max_tiles": self.max_tiles,
            "base_url": self.base_url,
        }

    def _resolve_model_profile(self) -> ModelProfile | None:
        return ModelProfile(
            text_inputs=True,
            image_inputs=True,
            image_url_inputs=self.allow_remote_urls,
            pdf_inputs=True,
            video_inputs=True,
            audio_inputs=False,
            image_tool_message=True,
            pdf_tool_message=True,
            text_outputs=True,
            tool_calling=True,
            tool_choice=True,
            structured_output=True,
        )

    def _get_ls_params(self, stop: list[str] | None = None, **kwargs: Any) -> LangSmithParams:
        params = LangSmithParams(
            ls_provider=PROVIDER,
            ls_model_name=kwargs.get("model") or self.model,
            ls_model_type="chat",
        )
        temperature = kwargs.get("temperature", self.temperature)
        if temperature is not None:
            params["ls_temperature"] = temperature
        max_tokens = kwargs.get("max_tokens", kwargs.get("max_new_tokens", self.max_tokens))
        if max_tokens is not None:
            params["ls_max_tokens"] = max_tokens
        stops = stop if stop is not None else self.stop
        if stops:
            params["ls_stop"] = list(stops)
        return params

    # ------------------------------------------------------------------------------------------------ requests

    def _request(
        self, messages: list[BaseMessage], stop: list[str] | None, kwargs: dict[str, Any]
    ) -> tuple[Any, str, list[dict[str, Any]], dict[str, Any], dict[str, Any] | None, bool]:
        """Resolve the engine, convert messages, and build the generation options of one call.

        The last item says whether the answer is a tool-call object (tools bound and callable) to be parsed.
        """
        kwargs = dict(kwargs)
        override = kwargs.pop("model", None)
        model = override or self.model
        response_format = kwargs.pop("response_format", None)
        tools = [convert_to_openai_tool(t) for t in kwargs.pop("tools", None) or []]
        choice = normalize_tool_choice(kwargs.pop("tool_choice", None), tools)
        parallel = bool(kwargs.pop("parallel_tool_calls", None))
        gen: dict[str, Any] = {
            "max_new_tokens": self.max_tokens,
            "temperature": self.temperature,
            "top_p": self.top_p,
            "top_k": self.top_k,
            "repetition_penalty": self.repetition_penalty,
            "seed": self.seed,
        }
        if "max_tokens" in kwargs:
            gen["max_new_tokens"] = kwargs.pop("max_tokens")
        unknown = sorted(k for k in kwargs if k not in _GENERATION_KEYS)
        if unknown:
            raise ValueError(
                f"ChatInternVL got unsupported call option(s) {unknown}; supported: model, response_format, "
                f"tools, tool_choice, max_tokens, {', '.join(sorted(_GENERATION_KEYS))}, stop."
            )
        gen.update(kwargs)
        stops = stop if stop is not None else self.stop
        if stops:
            gen["stop"] = list(stops)
        gen = {k: v for k, v in gen.items() if v is not None}
        schema = _grammar_schema(response_format)
        tool_mode = bool(tools) and choice != "none"
        if tool_mode and schema is not None:
            raise ValueError(
                "Both tools and response_format are set; ChatInternVL constrains one answer to one grammar. Use "
                "bind_tools for tool calls or with_structured_output for a schema, not both at once."
            )
        core = to_core_messages(messages, self.build_media_policy(), max_pdf_pages=self.max_pdf_pages)
        if tool_mode:
            schema = tool_call_schema(tools, choice, parallel)
            # Stated next to the question (the recency helps small models); the grammar enforces it either way.
            core[-1]["content"].append({"type": "text", "text": tool_instructions(tools, choice, parallel)})
            gen.pop("stop", None)
            # A budget too small for any complete call would only ever produce broken JSON: leave room for one.
            if gen.get("max_new_tokens") is not None:
                gen["max_new_tokens"] = tool_call_budget(tools, choice, gen["max_new_tokens"])
        elif schema is not None:
            gen.pop("stop", None)  # the grammar decides where the answer ends
            if self.schema_in_prompt and schema != {"type": "object"}:
                hint = "\n" + json_instruction(schema)
                core[-1]["content"].append({"type": "text", "text": hint})
        engine = self.get_engine(override)
        if override is None and self.base_url and "model" not in self.model_fields_set:
            model = getattr(engine, "model_name", model)  # the name the server reported
        return engine, model, core, gen, schema, tool_mode

    def _message_metadata(self, result: Any, model: str) -> tuple[UsageMetadata, dict[str, Any]]:
        usage = result.usage
        usage_metadata = UsageMetadata(
            input_tokens=usage.prompt_tokens,
            output_tokens=usage.completion_tokens,
            total_tokens=usage.prompt_tokens + usage.completion_tokens,
        )
        metadata = {
            "model_name": result.model or model,
            "finish_reason": result.finish_reason,
            "model_provider": PROVIDER,
            "image_tokens": usage.image_tokens,
            "num_tiles": usage.num_tiles,
        }
        return usage_metadata, metadata

    def _run_once(self, engine: Any, core: list[dict[str, Any]], gen: dict[str, Any], schema: dict | None) -> Any:
        if schema is not None:
            return engine.generate_structured(core, schema, **gen)
        return engine.chat(core, **gen)

    # ------------------------------------------------------------------------------------------------ sync

    def _generate(
        self,
        messages: list[BaseMessage],
        stop: list[str] | None = None,
        run_manager: CallbackManagerForLLMRun | None = None,
        **kwargs: Any,
    ) -> ChatResult:
        engine, model, core, gen, schema, tool_mode = self._request(messages, stop, kwargs)
        result = self._run_once(engine, core, gen, schema)
        usage, metadata = self._message_metadata(result, model)
        if tool_mode:
            content, calls, invalid = parse_tool_answer(result.text)
            message = AIMessage(
                content=content,
                tool_calls=calls,
                invalid_tool_calls=invalid,
                usage_metadata=usage,
                response_metadata=metadata,
            )
        else:
            message = AIMessage(content=result.text, usage_metadata=usage, response_metadata=metadata)
        return ChatResult(
            generations=[ChatGeneration(message=message, generation_info={"finish_reason": result.finish_reason})],
            llm_output={"model_name": metadata["model_name"]},
        )

    def _stream(
        self,
        messages: list[BaseMessage],
        stop: list[str] | None = None,
        run_manager: CallbackManagerForLLMRun | None = None,
        **kwargs: Any,
    ) -> Iterator[ChatGenerationChunk]:
        engine, model, core, gen, schema, tool_mode = self._request(messages, stop, kwargs)
        if schema is not None:
            # Constrained decoding is not streamed by the engine: the JSON (or the tool call) arrives as one chunk.
            result = self._run_once(engine, core, gen, schema)
            usage, metadata = self._message_metadata(result, model)
            text = result.text
            if tool_mode:
                text, calls, invalid = parse_tool_answer(result.text)
                message = AIMessageChunk(
                    content=text,
                    tool_call_chunks=[
                        tool_call_chunk(name=c["name"], args=json.dumps(c["args"], ensure_ascii=False),
                                        id=c["id"], index=0)
                        for c in calls
                    ] + [
                        tool_call_chunk(name=c["name"], args=c["args"], id=c["id"], index=0) for c in invalid
                    ],
                    usage_metadata=usage,
                    response_metadata=metadata,
                    chunk_position="last",
                )  # fmt: skip
            else:
                message = AIMessageChunk(
                    content=text, usage_metadata=usage, response_metadata=metadata, chunk_position="last"
                )
            chunk = ChatGenerationChunk(message=message, generation_info={"finish_reason": result.finish_reason})
            if run_manager is not None:
                run_manager.on_llm_new_token(text, chunk=chunk)
            yield chunk
            return
        stream = engine.stream(core, **gen)
        for delta in stream:
            if not delta:
                continue
            chunk = ChatGenerationChunk(message=AIMessageChunk(content=delta))
            if run_manager is not None:
                run_manager.on_llm_new_token(delta, chunk=chunk)
            yield chunk
        # The core's TextStream holds the exact usage and finish reason once exhausted.
        usage, metadata = self._message_metadata(stream.result, model)
        finish = metadata["finish_reason"]
        yield ChatGenerationChunk(
            message=AIMessageChunk(content="", usage_metadata=usage, response_metadata=metadata, chunk_position="last"),
            generation_info={"finish_reason": finish},
        )

    # ------------------------------------------------------------------------------------------------ async

    async def _agenerate(
        self,
        messages: list[BaseMessage],
        stop: list[str] | None = None,
        run_manager: AsyncCallbackManagerForLLMRun | None = None,
        **kwargs: Any,
    ) -> ChatResult:
        # The model runs in a worker thread; the event loop stays free meanwhile.
        return await asyncio.to_thread(self._generate, messages, stop, None, **kwargs)

    async def _astream(
        self,
        messages: list[BaseMessage],
        stop: list[str] | None = None,
        run_manager: AsyncCallbackManagerForLLMRun | None = None,
        **kwargs: Any,
    ) -> AsyncIterator[ChatGenerationChunk]:
        loop = asyncio.get_running_loop()
        queue: asyncio.Queue[tuple[str, Any]] = asyncio.Queue()
        cancelled = threading.Event()

        def post(item: tuple[str, Any]) -> None:
            with contextlib.suppress(RuntimeError):  # the loop closed under us: nobody is listening any more
                loop.call_soon_threadsafe(queue.put_nowait, item)

        def pump() -> None:
            chunks = self._stream(messages, stop, None, **kwargs)
            try:
                for chunk in chunks:
                    post(("chunk", chunk))
                    if cancelled.is_set():
                        break
            except BaseException as exc:
                post(("error", exc))
            finally:
                chunks.close()  # stops the engine's generation thread early when the consumer left
                post(("done", None))

        worker = asyncio.ensure_future(asyncio.to_thread(pump))
        try:
            while True:
                kind, item = await queue.get()
                if kind == "done":
                    break
                if kind == "error":
                    raise item
                if run_manager is not None and item.text:
                    await run_manager.on_llm_new_token(item.text, chunk=item)
                yield item
        finally:
            cancelled.set()
            if worker.done():
                worker.result()

    # ------------------------------------------------------------------------------------------------ tools

    def bind_tools(
        self,
        tools: Sequence[dict[str, Any] | type | Callable | BaseTool],
        *,
        tool_choice: dict | str | bool | None = None,
        parallel_tool_calls: bool | None = None,
        strict: bool | None = None,
        **kwargs: Any,
    ) -> Runnable[LanguageModelInput, AIMessage]:
        """Bind tools (dicts, Pydantic models, functions or ``BaseTool``s) for grammar-constrained tool calls.

        ``tool_choice``: ``None``/``"auto"`` (a tool call or a text answer), ``"any"``/``"required"``/``True``
        (some tool must be called), a tool name or ``{"type": "function", "function": {"name": ...}}`` (that
        tool), ``"none"`` (answer in text). ``parallel_tool_calls=True`` lets one turn make 1 to 8 calls (the
        grammar admits a list of calls); by default a turn makes at most one. ``strict`` is accepted and ignored:
        the grammar always holds the arguments to the tool's schema.

        >>> llm = ChatInternVL(model="tiny")
        >>> ping = {"type": "function", "function": {"name": "ping", "parameters": {}}}
        >>> bound = llm.bind_tools([ping], tool_choice="ping")
        >>> bound.kwargs["tool_choice"]
        {'type': 'function', 'function': {'name': 'ping'}}
        """
        formatted = [convert_to_openai_tool(tool) for tool in tools]
        choice = normalize_tool_choice(tool_choice, formatted)
        if parallel_tool_calls is not None:
            kwargs["parallel_tool_calls"] = parallel_tool_calls
        return super().bind(tools=formatted, tool_choice=choice, **kwargs)

    # ------------------------------------------------------------------------------------------------ structured

    def with_structured_output(
        self,
        schema: dict | type | None = None,
        *,
        method: Literal["function_calling", "json_mode", "json_schema"] = "json_schema",
        include_raw: bool = False,
        strict: bool | None = None,
        **kwargs: Any,
    ) -> Runnable[LanguageModelInput, dict | Any]:
        """Answers that follow ``schema`` (Pydantic v2 or v1 model, TypedDict, or JSON-schema dict).

        ``json_schema`` (default) constrains decoding to the schema with the engine's grammar; ``function_calling``
        is the same here (InternVL has no native tool calls); ``json_mode`` constrains to any JSON object and
        parses it (into ``schema`` when given). ``strict`` is accepted and ignored: decoding is always strict.
        """
        if kwargs:
            raise ValueError(f"Received unsupported arguments {sorted(kwargs)}")
        if method not in ("function_calling", "json_mode", "json_schema"):
            raise ValueError(f"Unrecognized method {method!r}; use 'json_schema', 'function_calling' or 'json_mode'.")
        is_pydantic = isinstance(schema, type) and is_basemodel_subclass(schema)
        if method == "json_mode":
            response_format: dict[str, Any] = {"type": "json_object"}
        else:
            if schema is None:
                raise ValueError(f"method={method!r} needs a schema.")
            response_format = {"type": "json_schema", "schema": _to_json_schema(schema)}
        llm = self.bind(
            response_format=response_format,
            ls_structured_output_format={"kwargs": {"method": method, "strict": strict}, "schema": schema},
        )
        parser: Runnable = (
            PydanticOutputParser(pydantic_object=schema)  # type: ignore[arg-type]
            if is_pydantic
            else JsonOutputParser()
        )
        if not include_raw:
            return llm | parser
        parsed = RunnablePassthrough.assign(parsed=itemgetter("raw") | parser, parsing_error=lambda _: None)
        fallback = RunnablePassthrough.assign(parsed=lambda _: None)
        return RunnableMap(raw=llm) | parsed.with_fallbacks([fallback], exception_key="parsing_error")


def _to_json_schema(schema: Any) -> dict[str, Any]:
    """LangChain's reading of the schema (TypedDict ``Annotated`` defaults included), else the core's."""
    try:
        return dict(convert_to_json_schema(schema))
    except Exception:
        from internvl_tools import json_schema_of

        return json_schema_of(schema)


def _grammar_schema(response_format: Any) -> dict[str, Any] | None:
    if response_format is None:
        return None
    if not isinstance(response_format, dict):
        raise ValueError(f"response_format must be a dict, got {type(response_format).__name__}.")
    kind = response_format.get("type")
    if kind == "json_object":
        return {"type": "object"}
    if kind == "json_schema":
        schema = response_format.get("schema")
        if schema is None and isinstance(response_format.get("json_schema"), dict):
            schema = response_format["json_schema"].get("schema")  # the OpenAI shape
        if isinstance(schema, dict):
            return schema
    raise ValueError(
        "response_format must be {'type': 'json_object'} or {'type': 'json_schema', 'schema': {...}} "
        "(or the OpenAI {'json_schema': {'schema': ...}} shape)."
    )
