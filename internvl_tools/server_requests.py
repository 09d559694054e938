"""What ``internvl-tools serve`` accepts: its settings, OpenAI-style request parsing and error mapping.

Requests are checked here before any work: the body's JSON shape (:func:`parse_body`: nesting depth and size of the
structure bounded before it is decoded), every field against the OpenAI API's types and ranges
(:class:`ChatCompletionRequest`, a strict pydantic model), the prompt's length against the model's context
(:func:`check_prompt_size`, before tokenizing), image parts under the media policy and tile cap, and
``response_format`` schemas (:func:`check_json_schema`: a valid schema, local ``$ref`` only, and an instance of
finite size must exist). Anything refused becomes a :class:`RequestError`, answered with an OpenAI-style error body
that names the field.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Annotated, Any, Literal
from urllib.parse import unquote

import jsonschema
from pydantic import BaseModel, ConfigDict, Field, ValidationError

from internvl_tools.errors import (
    ConfigError,
    ContextLengthError,
    InternVLError,
    MediaError,
    MediaPolicyError,
    StructuredOutputError,
    TemplateError,
)
from internvl_tools.media import MediaPolicy, load_image
from internvl_tools.messages import ImagePart, Message, TextPart

__all__ = [
    "CHARS_PER_TOKEN_CEILING",
    "ChatCompletionRequest",
    "ChatRequest",
    "RequestError",
    "ServerSettings",
    "build_media_policy",
    "check_json_schema",
    "check_prompt_size",
    "error_body",
    "error_result_to_request_error",
    "from_engine_error",
    "has_remote_images",
    "parse_body",
    "parse_messages",
    "parse_options",
    "parse_request",
    "parse_schema",
]

# No tokenizer we serve packs more than this many characters into one token on any realistic text, so a prompt
# longer than context_length * CHARS_PER_TOKEN_CEILING characters cannot fit and is refused before it is
# tokenized (tokenizing tens of megabytes takes seconds and gigabytes). --max-prompt-chars overrides it.
CHARS_PER_TOKEN_CEILING = 32
# vLLM's rule: a temperature this small is greedy decoding (dividing logits by 1e-300 overflows to inf/NaN).
GREEDY_TEMPERATURE = 1e-5
MAX_JSON_DEPTH = 64  # an OpenAI request, json_schema included, is nowhere near this deep
MAX_JSON_CONTAINERS = 262_144  # objects and arrays in one request body
MAX_SCHEMA_NODES = 10_000  # subschemas in one response_format schema
INT64 = 2**63


@dataclass
class ServerSettings:
    """How the server behaves; ``main`` fills it from the command line.

    ``max_tiles`` caps the tiles of one image (a request's per-image ``max_tiles`` may only lower it).
    ``max_prompt_chars`` caps the characters of a request's text (default: the model's context length times
    :data:`CHARS_PER_TOKEN_CEILING`). ``max_concurrent_fetches`` bounds the requests fetching remote images at
    once; more are answered 503 until one finishes.
    """

    model_name: str
    aliases: tuple[str, ...] = ()
    api_key: str | None = None
    batching: bool = True
    max_batch_size: int = 8
    batch_window_ms: float = 5.0
    allow_remote_images: bool = False
    allow_private_hosts: tuple[str, ...] = ()
    max_request_bytes: int = 20 * 1024 * 1024
    max_images: int = 8
    max_tiles: int | None = None
    media_timeout: float = 10.0
    max_prompt_chars: int | None = None
    max_concurrent_fetches: int = 4
    extra: dict[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        if self.api_key is not None and not _valid_key(self.api_key):
            raise ConfigError(
                "The API key is empty or holds whitespace or non-ASCII characters; pass a printable ASCII key, "
                "or no key at all to serve without authentication."
            )
        if self.max_concurrent_fetches < 1:
            raise ConfigError(f"max_concurrent_fetches must be >= 1, got {self.max_concurrent_fetches}.")
        if self.max_prompt_chars is not None and self.max_prompt_chars < 1:
            raise ConfigError(f"max_prompt_chars must be >= 1, got {self.max_prompt_chars}.")


def _valid_key(key: str) -> bool:
    return bool(key) and all(33 <= ord(c) <= 126 for c in key)


class RequestError(Exception):
    """A request the server refuses: becomes an OpenAI-style error body with ``status``."""

    def __init__(self, message: str, status: int = 400, code: str | None = None, param: str | None = None):
        super().__init__(message)
        self.status, self.code, self.param = status, code, param


def error_body(message: str, status: int, code: str | None = None, param: str | None = None) -> dict[str, Any]:
    """The OpenAI-style JSON error body for ``status``.

    >>> error_body("Only n=1 is supported.", 400, param="n")["error"]["type"]
    'invalid_request_error'
    """
    kind = {
        401: "authentication_error",
        404: "not_found_error",
        413: "invalid_request_error",
        429: "rate_limit_error",
    }.get(status, "invalid_request_error" if status < 500 else "server_error")
    return {"error": {"message": message, "type": kind, "param": param, "code": code}}


def from_engine_error(exc: BaseException) -> RequestError:
    """Map an engine error to the HTTP answer: the caller's fault (400) or ours (500).

    >>> err = from_engine_error(ContextLengthError("prompt too long"))
    >>> err.status, err.code
    (400, 'context_length_exceeded')
    """
    text = f"{type(exc).__name__}: {exc}"
    if isinstance(exc, ContextLengthError):
        return RequestError(text, 400, "context_length_exceeded")
    if isinstance(exc, MediaPolicyError):
        return RequestError(text, 400, "image_refused")
    if isinstance(exc, MediaError):
        return RequestError(text, 400, "invalid_image")
    if isinstance(exc, (ConfigError, TemplateError, StructuredOutputError, ValueError)):
        return RequestError(text, 400, "invalid_request")
    return RequestError(text, 500, "generation_failed")


def error_result_to_request_error(error: str | None) -> RequestError:
    """The HTTP answer for a batch item that came back with ``ChatResult.error`` set (``"<ErrorType>: ..."``).

    >>> error_result_to_request_error("URLBlockedError: 10.0.0.1 is private").code
    'image_refused'
    """
    error = error or "the request could not be answered"
    if error.startswith("ContextLengthError"):
        return RequestError(error, 400, "context_length_exceeded")
    if error.startswith(("RemoteFetchDisabledError", "URLBlockedError", "PathNotAllowedError")):
        return RequestError(error, 400, "image_refused")
    return RequestError(error, 400, "invalid_request")


# ---------------------------------------------------------------------------------------------------- the body

_JSON_STRING = re.compile(rb'"[^"\\]*(?:\\.[^"\\]*)*"', re.S)
_SURROGATE_ESCAPE = re.compile(rb"\\u[dD][89a-fA-F]")
_NOT_BRACKETS = bytes(b for b in range(256) if b not in b"[]{}")


def parse_body(raw: bytes) -> dict[str, Any]:
    """Decode a request body as one JSON object, refusing bodies too deep or with too many objects and arrays
    *before* decoding them (``json.loads`` recurses per level and builds every container), and ``NaN``/``Infinity``.

    >>> parse_body(b'{"model": "tiny"}')
    {'model': 'tiny'}
    """
    shape = _JSON_STRING.sub(b'""', raw).translate(None, _NOT_BRACKETS)  # the brackets outside strings
    if len(shape) > 2 * MAX_JSON_CONTAINERS:
        raise RequestError(
            f"The request body holds more than {MAX_JSON_CONTAINERS:,} JSON objects and arrays.", code="invalid_json"
        )
    depth = deepest = 0
    for byte in shape:
        depth += 1 if byte in b"[{" else -1
        deepest = max(deepest, depth)
    if deepest > MAX_JSON_DEPTH:
        raise RequestError(
            f"The request body is nested {deepest} levels deep; at most {MAX_JSON_DEPTH} are allowed.",
            code="invalid_json",
        )

    def no_constants(name: str) -> Any:
        raise ValueError(f"{name} is not valid JSON")

    try:
        body = json.loads(raw.decode("utf-8"), parse_constant=no_constants)  # strict UTF-8, as JSON must be
        if _SURROGATE_ESCAPE.search(raw):  # "\ud800" escapes decode to lone surrogates no tokenizer can take
            json.dumps(body, ensure_ascii=False).encode("utf-8")
    except (ValueError, RecursionError) as exc:  # UnicodeError is a ValueError
        reason = "it holds an unpaired UTF-16 surrogate escape" if isinstance(exc, UnicodeEncodeError) else exc
        raise RequestError(f"The request body is not valid JSON: {reason}.", code="invalid_json") from exc
    if not isinstance(body, dict):
        raise RequestError("The request body must be a JSON object.", code="invalid_json")
    return body


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
    internvl_tools.server_requests.RequestError: Invalid 'temperature': Input should be less than or equal to 2 (got 3).
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


# ---------------------------------------------------------------------------------------------------- json schemas


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


_SCHEMA_LISTS = ("allOf", "anyOf", "oneOf", "prefixItems")
_SCHEMA_MAPS = ("properties", "patternProperties", "$defs", "definitions", "dependentSchemas")
_SCHEMA_ONE = (
    "items",
    "additionalProperties",
    "not",
    "if",
    "then",
    "else",
    "contains",
    "propertyNames",
    "unevaluatedItems",
    "unevaluatedProperties",
    "additionalItems",
)


def _subschemas(node: dict[str, Any], pointer: str) -> Iterator[tuple[str, str, Any]]:
    """(keyword path, pointer, subschema) for each subschema directly under ``node``."""

    def esc(key: str) -> str:
        return key.replace("~", "~0").replace("/", "~1")

    for key in _SCHEMA_ONE:
        if isinstance(node.get(key), dict):
            yield key, f"{pointer}/{key}", node[key]
    for key in _SCHEMA_LISTS:
        if isinstance(node.get(key), list):
            for i, sub in enumerate(node[key]):
                yield f"{key}/{i}", f"{pointer}/{key}/{i}", sub
    for key in _SCHEMA_MAPS:
        if isinstance(node.get(key), dict):
            for name, sub in node[key].items():
                yield f"{key}/{name}", f"{pointer}/{key}/{esc(name)}", sub


def _resolve_pointer(root: dict[str, Any], ref: str) -> Any:
    if not ref.startswith("#"):
        raise RequestError(
            f"response_format schema: $ref {ref[:80]!r} is not local; only '#...' references into "
            "the schema itself are resolved (nothing is fetched).",
            param="response_format",
            code="invalid_schema",
        )
    fragment = unquote(ref[1:])
    if fragment and not fragment.startswith("/"):
        raise RequestError(
            f"response_format schema: $ref {ref[:80]!r} names an anchor; use a JSON pointer such as '#/$defs/name'.",
            param="response_format",
            code="invalid_schema",
        )
    node: Any = root
    for token in fragment.split("/")[1:] if fragment else []:
        token = token.replace("~1", "/").replace("~0", "~")
        if isinstance(node, dict) and token in node:
            node = node[token]
        elif isinstance(node, list) and token.isdigit() and int(token) < len(node):
            node = node[int(token)]
        else:
            raise RequestError(
                f"response_format schema: $ref {ref[:80]!r} points at nothing.",
                param="response_format",
                code="invalid_schema",
            )
    if not isinstance(node, (dict, bool)):
        raise RequestError(
            f"response_format schema: $ref {ref[:80]!r} does not point at a schema.",
            param="response_format",
            code="invalid_schema",
        )
    return node


def check_json_schema(schema: dict[str, Any]) -> None:
    """Refuse a ``response_format`` schema that no answer could satisfy or that would hang the grammar compiler:
    invalid per its metaschema, ``$ref`` that is remote, dangling or an anchor, ``$dynamicRef``, or recursion with
    no way out (``{"$ref": "#"}``, an object that requires itself); recursion with a way out (a tree whose
    ``children`` may be empty) is fine.

    >>> check_json_schema({"$defs": {"t": {"type": "object", "properties": {"kids": {"type": "array",
    ...     "items": {"$ref": "#/$defs/t"}}}}}, "$ref": "#/$defs/t"})
    >>> check_json_schema({"$ref": "#"})
    Traceback (most recent call last):
    ...
    internvl_tools.server_requests.RequestError: response_format schema: '#' can never be satisfied by a finite \
JSON value (its $ref recursion has no way out).
    """
    try:
        jsonschema.validators.validator_for(schema, default=jsonschema.Draft202012Validator).check_schema(schema)
    except jsonschema.SchemaError as exc:
        raise RequestError(
            f"response_format schema is not a valid JSON schema: {exc.message}",
            param="response_format",
            code="invalid_schema",
        ) from exc
    except RecursionError as exc:  # pragma: no cover - parse_body bounds the depth first
        raise RequestError(
            "response_format schema is nested too deeply.", param="response_format", code="invalid_schema"
        ) from exc
    # Every subschema, by identity, with the pointer that names it.
    nodes: dict[int, tuple[str, Any]] = {}
    stack: list[tuple[str, Any]] = [("#", schema)]
    while stack:
        pointer, node = stack.pop()
        if not isinstance(node, dict) or id(node) in nodes:
            continue
        nodes[id(node)] = (pointer, node)
        if len(nodes) > MAX_SCHEMA_NODES:
            raise RequestError(
                f"response_format schema has more than {MAX_SCHEMA_NODES:,} subschemas.",
                param="response_format",
                code="invalid_schema",
            )
        for key in ("$dynamicRef", "$recursiveRef"):
            if key in node:
                raise RequestError(
                    f"response_format schema: {key} is not supported; use $ref.",
                    param="response_format",
                    code="invalid_schema",
                )
        for _, sub_pointer, sub in _subschemas(node, pointer):
            stack.append((sub_pointer, sub))
    # Which subschemas admit a finite instance: a least fixpoint, computed with a work list. Each schema needs all
    # of its groups; a group is satisfied when any one member is (anyOf/oneOf are one group, every mandatory
    # part - $ref target, allOf member, required property, items when minItems > 0 - is a group of its own).
    groups: dict[int, list[list[int]]] = {}
    for key, (_, node) in nodes.items():
        need: list[list[Any]] = []
        if isinstance(node.get("$ref"), str):
            need.append([_resolve_pointer(schema, node["$ref"])])
        need += [[sub] for sub in node.get("allOf", []) if isinstance(node.get("allOf"), list)]
        for key_ in ("anyOf", "oneOf"):
            if isinstance(node.get(key_), list) and node[key_]:
                need.append(list(node[key_]))
        props = node.get("properties") if isinstance(node.get("properties"), dict) else {}
        required = node.get("required") if isinstance(node.get("required"), list) else []
        need += [[props[name]] for name in required if isinstance(name, str) and name in props]
        min_items = node.get("minItems", 0) if isinstance(node.get("minItems"), int) else 0
        prefix = node.get("prefixItems") if isinstance(node.get("prefixItems"), list) else []
        need += [[sub] for sub in prefix[:min_items]]
        if min_items > len(prefix) and isinstance(node.get("items"), dict):
            need.append([node["items"]])
        # true/false schemas: true always terminates; false never does (but that is the schema's own statement).
        groups[key] = [[id(m) for m in group if isinstance(m, dict) or m is True] for group in need]
    done: set[int] = set()
    waiting: dict[int, list[tuple[int, int]]] = {}
    left: dict[int, int] = {}
    satisfied: dict[int, set[int]] = {}
    work: list[int] = []
    for key, need in groups.items():
        left[key] = len(need)
        satisfied[key] = set()
        for g, group in enumerate(need):
            if id(True) in group:
                left[key] -= 1
                satisfied[key].add(g)
                continue
            for member in group:
                waiting.setdefault(member, []).append((key, g))
        if left[key] == 0:
            work.append(key)
    while work:
        key = work.pop()
        if key in done:
            continue
        done.add(key)
        for parent, g in waiting.get(key, []):
            if g not in satisfied[parent]:
                satisfied[parent].add(g)
                left[parent] -= 1
                if left[parent] == 0:
                    work.append(parent)
    if id(schema) not in done:
        stuck = min(
            (nodes[k][0] for k in nodes if k not in done and isinstance(nodes[k][1].get("$ref"), str)),
            key=len,
            default="#",
        )
        raise RequestError(
            f"response_format schema: {stuck!r} can never be satisfied by a finite JSON value "
            "(its $ref recursion has no way out).",
            param="response_format",
            code="invalid_schema",
        )


# ---------------------------------------------------------------------------------------------------- messages


@dataclass
class ChatRequest:
    """One parsed ``/v1/chat/completions`` request: core messages, generation options and how to answer."""

    messages: list[Any]
    options: dict[str, Any]
    stream: bool
    schema: dict[str, Any] | None
    include_usage: bool


def build_media_policy(settings: ServerSettings) -> MediaPolicy:
    """The :class:`~internvl_tools.media.MediaPolicy` for clients' images: never the server's own files.

    >>> build_media_policy(ServerSettings(model_name="tiny")).allow_local_files
    False
    """
    return MediaPolicy(
        allow_remote=settings.allow_remote_images,
        allow_local_files=False,
        max_bytes=settings.max_request_bytes,
        timeout=settings.media_timeout,
        allow_private_hosts=frozenset(settings.allow_private_hosts),
    )


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


def _image_part(raw: ImageContent, where: str, settings: ServerSettings, policy: Any, cap: int) -> ImagePart:
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


def parse_messages(raw: Any, settings: ServerSettings, policy: Any, cap: int) -> list[Message]:
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
