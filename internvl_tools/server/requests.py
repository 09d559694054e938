"""What ``internvl-tools serve`` accepts: the OpenAI chat-completions request, field by field, and its parsing
into the engine's messages and options.

Every field is checked against the OpenAI API's types and ranges (:class:`ChatCompletionRequest`, a strict pydantic
model; :func:`parse_request`), the prompt's length against the model's context (:func:`check_prompt_size`, before
tokenizing), image parts under the media policy and tile cap (:func:`parse_messages`), and ``response_format``
(:func:`parse_schema`, through :func:`~internvl_tools.server.validation.check_json_schema`). Anything refused is a
:class:`~internvl_tools.server.errors.RequestError` that names the field.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from internvl_tools.errors import InternVLError
from internvl_tools.media.images import load_image
from internvl_tools.media.policy import MediaPolicy
from internvl_tools.messages import ImagePart, Message, TextPart
from internvl_tools.server.errors import RequestError, from_engine_error
from internvl_tools.server.settings import CHARS_PER_TOKEN_CEILING, ServerSettings
from internvl_tools.server.validation import check_json_schema

__all__ = [
    "ChatCompletionRequest",
    "ChatRequest",
    "check_prompt_size",
    "has_remote_images",
    "parse_messages",
    "parse_options",
    "parse_request",
    "parse_schema",
]

# vLLM's rule: a temperature this small is greedy decoding (dividing logits by 1e-300 overflows to inf/NaN).
GREEDY_TEMPERATURE = 1e-5
INT64 = 2**63


# ---------------------------------------------------------------------------------------------------- the fields
# The OpenAI chat-completions request, field by field, with its types and ranges; strict: no "1" for 1, no true
# for 1, no NaN. Unknown fields are ignored (as vLLM does); known ones this server cannot honour are refused below.


class _Strict(BaseModel):
    model_config = ConfigDict(strict=True, allow_inf_nan=False, extra="ignore", populate_by_name=True)


class TextContent(_Strict):
    type: Literal["text"]
    text: str


class ImageURL(_Strict):
    url: str = Field(min_length=1)
    detail: Literal["auto", "low", "high"] | None = None
    max_tiles: int | None = Field(default=None, ge=1)


class ImageContent(_Strict):
    type: Literal["image_url"]
    image_url: ImageURL | str
    max_tiles: int | None = Field(default=None, ge=1)


ContentPart = Annotated[TextContent | ImageContent, Field(discriminator="type")]


class ChatMessage(_Strict):
    role: Literal["system", "developer", "user", "assistant"]
    content: str | list[ContentPart] | None = None
    name: str | None = None


class StreamOptions(_Strict):
    include_usage: bool | None = None
    include_obfuscation: bool | None = None


class JsonSchemaSpec(_Strict):
    name: str | None = Field(default=None, max_length=64)
    description: str | None = None
    schema_: dict[str, Any] | None = Field(default=None, alias="schema")
    strict: bool | None = None


class ResponseFormat(_Strict):
    type: Literal["text", "json_object", "json_schema"]
    json_schema: JsonSchemaSpec | None = None


_Int64 = Annotated[int, Field(ge=-INT64, lt=INT64)]
_Count = Annotated[int, Field(ge=1, lt=2**31)]


class ChatCompletionRequest(_Strict):
    """One ``POST /v1/chat/completions`` body.

    >>> ChatCompletionRequest.model_validate({"messages": [{"role": "user", "content": "hi"}], "seed": 7}).seed
    7
    """

    messages: list[ChatMessage] = Field(min_length=1)
    model: str | None = None
    max_tokens: _Count | None = None
    max_completion_tokens: _Count | None = None
    temperature: float | None = Field(default=None, ge=0, le=2)
    top_p: float | None = Field(default=None, ge=0, le=1)
    top_k: int | None = Field(default=None, ge=-1, lt=2**31)  # vLLM extra: 0 or -1 means off
    repetition_penalty: float | None = Field(default=None, gt=0, le=100)  # vLLM extra: must stay finite when used
    frequency_penalty: float | None = Field(default=None, ge=-2, le=2)
    presence_penalty: float | None = Field(default=None, ge=-2, le=2)
    seed: _Int64 | None = None
    n: int | None = Field(default=None, ge=1, le=128)
    stop: str | list[str] | None = Field(default=None)
    stream: bool | None = None
    stream_options: StreamOptions | None = None
    response_format: ResponseFormat | None = None
    logprobs: bool | None = None
    top_logprobs: int | None = Field(default=None, ge=0, le=20)
    logit_bias: dict[str, Annotated[float, Field(ge=-100, le=100)]] | None = None
    tools: list[Any] | None = None
    tool_choice: str | dict[str, Any] | None = None
    functions: list[Any] | None = None
    function_call: str | dict[str, Any] | None = None
    parallel_tool_calls: bool | None = None
    user: str | None = None
    metadata: dict[str, str] | None = None
    store: bool | None = None
    service_tier: str | None = None


def _field_of(loc: tuple[Any, ...]) -> str:
    """``("messages", 0, "content")`` → ``messages[0].content`` (pydantic's union branch names left out)."""
    out = ""
    for part in loc:
        if isinstance(part, int):
            out += f"[{part}]"
        elif re.fullmatch(r"[A-Za-z_][A-Za-z0-9_]*", part) and part not in (
            "str",
            "int",
            "float",
            "bool",
            "list",
            "dict",
            "none",
        ):
            out += f".{part}" if out else part
    return out or "body"


def parse_request(body: dict[str, Any]) -> ChatCompletionRequest:
    """Validate ``body`` field by field; a :class:`RequestError` (400) names the first bad field.

    >>> parse_request({"messages": [{"role": "user", "content": "hi"}], "temperature": 3}).status
    Traceback (most recent call last):
    ...
    internvl_tools.server.errors.RequestError: Invalid 'temperature': Input should be less than or equal to 2 (got 3).
    """
    try:
        request = ChatCompletionRequest.model_validate(body)
    except ValidationError as exc:
        first = exc.errors(include_url=False)[0]
        where = _field_of(tuple(first["loc"]))
        got = first.get("input")
        small = isinstance(got, (int, float, bool, type(None))) or (isinstance(got, str) and len(got) < 80)
        shown = repr(got) if small else type(got).__name__
        raise RequestError(
            f"Invalid '{where}': {first['msg']} (got {shown}).",
            param=where.split("[")[0].split(".")[0],
            code="invalid_value",
        ) from exc
    _refuse_unsupported(request)
    return request


def _refuse_unsupported(request: ChatCompletionRequest) -> None:
    if request.n not in (None, 1):
        raise RequestError("Only n=1 is supported.", param="n", code="unsupported_value")
    unsupported = {
        "tools": request.tools,
        "functions": request.functions,
        "logprobs": request.logprobs,
        "top_logprobs": request.top_logprobs,
        "logit_bias": request.logit_bias,
        "tool_choice": request.tool_choice not in (None, "none") and request.tool_choice,
        "function_call": request.function_call not in (None, "none") and request.function_call,
        "frequency_penalty": request.frequency_penalty,
        "presence_penalty": request.presence_penalty,
    }
    for name, value in unsupported.items():
        if value:
            raise RequestError(
                f"'{name}' is not supported by this server; leave it out of the request"
                + (" (repetition_penalty is the penalty it supports)." if "penalty" in name else "."),
                param=name,
                code="unsupported_parameter",
            )
    stop = [request.stop] if isinstance(request.stop, str) else (request.stop or [])
    if len(stop) > 4:
        raise RequestError("'stop' takes at most 4 sequences.", param="stop", code="invalid_value")


def parse_options(body: dict[str, Any] | ChatCompletionRequest) -> dict[str, Any]:
    """The engine's generation options from a request (an omitted temperature means greedy).

    >>> parse_options({"messages": [{"role": "user", "content": "hi"}], "max_tokens": 16, "stop": "END"})
    {'max_new_tokens': 16, 'temperature': 0.0, 'do_sample': False, 'stop': ['END']}
    """
    request = body if isinstance(body, ChatCompletionRequest) else parse_request(body)
    options: dict[str, Any] = {}
    max_tokens = request.max_completion_tokens if request.max_completion_tokens is not None else request.max_tokens
    if max_tokens is not None:
        options["max_new_tokens"] = max_tokens
    temperature = request.temperature or 0.0
    # Unlike OpenAI (default 1.0), an omitted temperature means greedy decoding, as the local engine does; so does a
    # temperature too small to divide logits by.
    sampling = temperature >= GREEDY_TEMPERATURE
    options["temperature"] = temperature if sampling else 0.0
    options["do_sample"] = sampling
    if sampling:
        if request.top_p is not None:
            options["top_p"] = request.top_p
        if request.top_k is not None and request.top_k > 0:
            options["top_k"] = request.top_k
    if request.repetition_penalty is not None:
        options["repetition_penalty"] = request.repetition_penalty
    if request.seed is not None:
        options["seed"] = request.seed
    stop = [request.stop] if isinstance(request.stop, str) else request.stop
    if stop:
        options["stop"] = stop
    return options


# ---------------------------------------------------------------------------------------------- response_format


def parse_schema(body: dict[str, Any] | ChatCompletionRequest) -> dict[str, Any] | None:
    """The JSON schema that ``response_format`` asks for (checked by :func:`check_json_schema`), or ``None``.

    >>> parse_schema({"messages": [{"role": "user", "content": "hi"}], "response_format": {"type": "json_object"}})
    {'type': 'object'}
    """
    request = body if isinstance(body, ChatCompletionRequest) else parse_request(body)
    fmt = request.response_format
    if fmt is None or fmt.type == "text":
        return None
    if fmt.type == "json_object":
        return {"type": "object"}
    schema = fmt.json_schema.schema_ if fmt.json_schema is not None else None
    if not schema:
        raise RequestError(
            "response_format.json_schema.schema must be a non-empty JSON schema object.",
            param="response_format",
            code="invalid_value",
        )
    check_json_schema(schema)
    return schema


# ---------------------------------------------------------------------------------------------------- messages


@dataclass
class ChatRequest:
    """One parsed ``/v1/chat/completions`` request: core messages, generation options and how to answer."""

    messages: list[Any]
    options: dict[str, Any]
    stream: bool
    schema: dict[str, Any] | None
    include_usage: bool


def check_prompt_size(request: ChatCompletionRequest, context_length: int | None, settings: ServerSettings) -> None:
    """Refuse, before tokenizing, text that cannot fit the context: more characters than
    ``max_prompt_chars`` (default ``context_length * CHARS_PER_TOKEN_CEILING``), or more messages or parts than
    the context has tokens (each costs at least one).
    """
    if context_length is None and settings.max_prompt_chars is None:
        return
    limit = settings.max_prompt_chars or int(context_length or 0) * CHARS_PER_TOKEN_CEILING
    chars = parts = 0
    for message in request.messages:
        content = message.content
        if isinstance(content, str):
            chars, parts = chars + len(content), parts + 1
        elif content:
            parts += len(content)
            chars += sum(len(p.text) for p in content if isinstance(p, TextContent))
    if chars > limit:
        raise RequestError(
            f"The request's text is {chars:,} characters; this server refuses more than {limit:,} before tokenizing "
            f"(a context of {context_length} tokens, at most {CHARS_PER_TOKEN_CEILING} characters a token; "
            "--max-prompt-chars). Shorten the prompt.",
            code="context_length_exceeded",
            param="messages",
        )
    if context_length and len(request.messages) + parts > context_length:
        raise RequestError(
            f"The request has {len(request.messages):,} messages and {parts:,} content parts; they "
            f"cannot fit a context of {context_length} tokens.",
            code="context_length_exceeded",
            param="messages",
        )


def has_remote_images(request: ChatCompletionRequest) -> bool:
    """Whether any image part names an http(s) URL (fetching it may block for up to the media timeout)."""
    for message in request.messages:
        for part in message.content if isinstance(message.content, list) else ():
            if isinstance(part, ImageContent):
                url = part.image_url.url if isinstance(part.image_url, ImageURL) else part.image_url
                if url[:8].lower().startswith(("http://", "https://")):
                    return True
    return False


def _image_part(raw: ImageContent, where: str, settings: ServerSettings, policy: MediaPolicy, cap: int) -> ImagePart:
    value = raw.image_url
    url = value.url if isinstance(value, ImageURL) else value
    scheme = url.split(":", 1)[0].lower() if ":" in url[:10] else ""
    if scheme in ("http", "https"):
        if not settings.allow_remote_images:
            raise RequestError(
                f"{where}: remote image URLs are refused by this server; send the image as a data: URI (base64), "
                "or start the server with --allow-remote-images.",
                code="image_refused",
                param="messages",
            )
    elif scheme != "data":
        raise RequestError(
            f"{where}: image_url must be a data: URI (or an http(s) URL where enabled), got {url[:40]!r}.",
            code="invalid_image",
            param="messages",
        )
    tiles = raw.max_tiles if raw.max_tiles is not None else (value.max_tiles if isinstance(value, ImageURL) else None)
    if tiles is not None and not 1 <= tiles <= cap:
        raise RequestError(
            f"{where}: max_tiles must be an integer from 1 to this server's limit {cap}, got {tiles!r}.",
            param="messages",
        )
    try:
        image = load_image(url, policy=policy)
    except InternVLError as exc:
        raise from_engine_error(exc) from exc
    return ImagePart(image=image, max_tiles=tiles)


def parse_messages(raw: Any, settings: ServerSettings, policy: MediaPolicy, cap: int) -> list[Message]:
    """OpenAI ``messages`` (raw or validated) → core :class:`~internvl_tools.messages.Message` list (images under
    ``policy``, at most ``cap`` tiles each); raises :class:`RequestError` naming the bad field.

    >>> [m.role for m in parse_messages([{"role": "user", "content": "Hi"}], ServerSettings("tiny"), MediaPolicy(), 6)]
    ['user']
    """
    if not (isinstance(raw, list) and raw and all(isinstance(m, ChatMessage) for m in raw)):
        raw = parse_request({"messages": raw}).messages
    n_images = sum(isinstance(p, ImageContent) for m in raw if isinstance(m.content, list) for p in m.content)
    if n_images > settings.max_images:
        raise RequestError(
            f"The request has {n_images} images; this server's limit is {settings.max_images} (--max-images).",
            param="messages",
        )
    messages = []
    for i, msg in enumerate(raw):
        role = "system" if msg.role == "developer" else msg.role
        parts: list[Any] = []
        if isinstance(msg.content, str):
            parts.append(TextPart(text=msg.content))
        else:
            for j, part in enumerate(msg.content or ()):
                if isinstance(part, TextContent):
                    parts.append(TextPart(text=part.text))
                else:
                    parts.append(_image_part(part, f"messages[{i}].content[{j}]", settings, policy, cap))
        messages.append(Message(role=role, content=parts))
    if messages[-1].role == "assistant":
        raise RequestError("The last message must be a user (or system) turn.", param="messages")
    return messages
