"""Constrained decoding to a JSON schema with xgrammar, so structured answers are valid JSON even from a weak model.

Two parts:

* :func:`json_schema_of` turns a pydantic model (v2 or v1), a TypedDict/dataclass type or a JSON-schema dict into
  a JSON schema dict, and :func:`validate_output` turns the model's JSON text back into the caller's type.
* :class:`JSONSchemaLogitsProcessor` masks every token the grammar forbids at each step. Because a grammar alone
  cannot make a model *finish* (a random model may extend a string forever), the processor applies *closing
  pressure* in the last part of the token budget: among the tokens the grammar allows, it prefers the ones that
  end the current value (``"`` inside a string, then ``}``/``]``, then short literals), so the output completes
  within ``max_new_tokens`` whenever the schema allows it.

>>> json_schema_of({"type": "object", "properties": {"a": {"type": "integer"}}})["type"]
'object'
"""

from __future__ import annotations

import json
import threading
from collections.abc import Mapping
from typing import Any

from internvl_tools.errors import DependencyMissingError, StructuredOutputError

__all__ = [
    "JSON_SCHEMA_INSTRUCTION",
    "JSONSchemaLogitsProcessor",
    "compile_json_schema",
    "escape_control_characters",
    "json_instruction",
    "json_schema_of",
    "minimal_json_length",
    "validate_output",
]


#: The sentence that states a JSON schema in a prompt; :func:`json_instruction` appends the schema to it.
JSON_SCHEMA_INSTRUCTION = "Answer with a JSON object that follows this JSON schema:"


def json_instruction(schema: Mapping[str, Any]) -> str:
    """The prompt text that asks for JSON following ``schema`` (the grammar enforces it; this tells the model).

    >>> print(json_instruction({"type": "object"}))
    Answer with a JSON object that follows this JSON schema:
    {"type": "object"}
    """
    return f"{JSON_SCHEMA_INSTRUCTION}\n{json.dumps(schema)}"


def _compatible_typeddict(schema: Any) -> Any:
    """pydantic refuses ``typing.TypedDict`` before Python 3.12; rebuild it as a ``typing_extensions`` one."""
    import sys

    if sys.version_info >= (3, 12) or not (isinstance(schema, type) and issubclass(schema, dict)):
        return schema
    if not hasattr(schema, "__total__") or type(schema).__module__ != "typing":
        return schema
    import typing_extensions

    rebuilt = typing_extensions.TypedDict(schema.__name__, dict(schema.__annotations__), total=schema.__total__)  # noqa: UP013 - built from a runtime annotation dict
    rebuilt.__doc__ = schema.__doc__
    return rebuilt


def json_schema_of(schema: Any) -> dict[str, Any]:
    """A JSON schema dict for a pydantic model (v2 or v1), a TypedDict/dataclass type, or a schema dict/string."""
    if isinstance(schema, str):
        try:
            schema = json.loads(schema)
        except json.JSONDecodeError as exc:
            raise StructuredOutputError(
                f"The schema string is not valid JSON ({exc}); pass a dict or a model."
            ) from exc
    if isinstance(schema, Mapping):
        if not schema:
            raise StructuredOutputError("The JSON schema is empty; give at least {'type': 'object'}.")
        return dict(schema)
    if isinstance(schema, type):
        model_json_schema = getattr(schema, "model_json_schema", None)
        if callable(model_json_schema):
            return model_json_schema()
        legacy = getattr(schema, "schema", None)  # pydantic v1 models (pydantic.v1.BaseModel)
        if callable(legacy) and hasattr(schema, "__fields__"):
            return legacy()
    try:
        from pydantic import TypeAdapter

        return TypeAdapter(_compatible_typeddict(schema)).json_schema()
    except Exception as exc:  # pydantic raises several types for unsupported annotations
        raise StructuredOutputError(
            f"Cannot build a JSON schema from {schema!r}: pass a pydantic model, a TypedDict, a dataclass or a "
            f"JSON-schema dict ({exc})."
        ) from exc


def validate_output(text: str, schema: Any) -> Any:
    """Parse ``text`` as JSON and validate it against ``schema``; dict schemas give back the parsed JSON."""
    try:
        data = json.loads(text)
    except json.JSONDecodeError as exc:
        raise StructuredOutputError(
            f"The model's answer is not complete JSON ({exc}); raise max_new_tokens. Answer: {text[:200]!r}"
        ) from exc
    if isinstance(schema, (Mapping, str)):
        return _validate_json_schema(data, json_schema_of(schema))
    if isinstance(schema, type) and hasattr(schema, "model_validate"):
        try:
            return schema.model_validate(data)
        except Exception as exc:
            raise StructuredOutputError(f"The answer does not validate against {schema.__name__}: {exc}") from exc
    if isinstance(schema, type) and hasattr(schema, "parse_obj"):
        return schema.parse_obj(data)
    try:
        from pydantic import TypeAdapter

        return TypeAdapter(_compatible_typeddict(schema)).validate_python(data)
    except Exception as exc:
        raise StructuredOutputError(f"The answer does not validate against {schema!r}: {exc}") from exc


def _validate_json_schema(data: Any, schema: dict[str, Any]) -> Any:
    """Check ``data`` against a JSON-schema dict (the grammar enforces it; this is the second line of defence)."""
    import jsonschema

    try:
        jsonschema.validate(data, schema)
    except jsonschema.ValidationError as exc:
        where = "/".join(str(p) for p in exc.absolute_path) or "(root)"
        raise StructuredOutputError(f"The answer does not match the JSON schema at {where}: {exc.message}") from exc
    except jsonschema.SchemaError as exc:
        raise StructuredOutputError(f"The JSON schema itself is invalid: {exc.message}") from exc
    return data


def escape_control_characters(text: str) -> str:
    r"""Escape raw control characters (U+0000-U+001F) inside JSON strings, which strict JSON parsers refuse.

    Grammars for JSON strings may let a weak model write them; the escaped form means the same string.

    >>> escape_control_characters('{"a": "x\x10y"}')
    '{"a": "x\\u0010y"}'
    """
    out: list[str] = []
    in_string = escape = False
    for ch in text:
        if in_string:
            if escape:
                escape = False
            elif ch == "\\":
                escape = True
            elif ch == '"':
                in_string = False
            elif ord(ch) < 0x20:
                out.append(f"\\u{ord(ch):04x}")
                continue
        elif ch == '"':
            in_string = True
        out.append(ch)
    return "".join(out)


_COMPILERS: dict[int, Any] = {}
_COMPILERS_LOCK = threading.Lock()


def _xgrammar() -> Any:
    try:
        import xgrammar
    except ImportError as exc:  # pragma: no cover - xgrammar is a core dependency
        raise DependencyMissingError("Structured output needs xgrammar: `pip install xgrammar`.") from exc
    return xgrammar


def _tokenizer_info(tokenizer: Any, vocab_size: int, stop_token_ids: list[int]) -> Any:
    xgr = _xgrammar()
    try:
        return xgr.TokenizerInfo.from_huggingface(tokenizer, vocab_size=vocab_size, stop_token_ids=stop_token_ids)
    except Exception:
        # Tokenizers that are not transformers-native (our sentencepiece InternLM2 tokenizer): describe the vocabulary
        # token by token. Sentencepiece pieces mark spaces with U+2581 and bytes as <0xNN>.
        pieces = [tokenizer.convert_ids_to_tokens(i) or "" for i in range(min(vocab_size, len(tokenizer)))]
        vocab_type = xgr.VocabType.BYTE_FALLBACK if any("\u2581" in p for p in pieces) else xgr.VocabType.RAW
        return xgr.TokenizerInfo(pieces, vocab_type, vocab_size=vocab_size, stop_token_ids=stop_token_ids)


def compile_json_schema(tokenizer: Any, schema: dict[str, Any], *, vocab_size: int, stop_token_ids: list[int]) -> Any:
    """Compile ``schema`` for ``tokenizer`` (compilers are cached per tokenizer and vocabulary size)."""
    xgr = _xgrammar()
    key = id(tokenizer) ^ (vocab_size << 1)
    with _COMPILERS_LOCK:
        compiler = _COMPILERS.get(key)
        if compiler is None:
            compiler = xgr.GrammarCompiler(_tokenizer_info(tokenizer, vocab_size, stop_token_ids), max_threads=1)
            _COMPILERS[key] = compiler
    try:
        return compiler.compile_json_schema(json.dumps(schema), any_whitespace=False, strict_mode=True)
    except Exception as exc:
        raise StructuredOutputError(f"xgrammar cannot compile this JSON schema: {exc}") from exc


def minimal_json_length(schema: Mapping[str, Any]) -> int:
    """Characters of the shortest JSON value that satisfies ``schema`` (approximately: required keys, empty
    strings and arrays, ``0``, ``false``). Closing pressure starts early enough to write at least this much.

    >>> minimal_json_length({"type": "object", "properties": {"a": {"type": "string"}}, "required": ["a"]})
    9
    """
    defs = {**schema.get("$defs", {}), **schema.get("definitions", {})}

    def size(node: Any, depth: int) -> int:
        if not isinstance(node, Mapping) or depth > 32:
            return 4
        if "$ref" in node:
            target = defs.get(str(node["$ref"]).rsplit("/", 1)[-1])
            return size(target, depth + 1) if target is not None else 4
        if "const" in node:
            return len(json.dumps(node["const"]))
        if node.get("enum"):
            return min(len(json.dumps(v)) for v in node["enum"])
        for key in ("anyOf", "oneOf"):
            if node.get(key):
                return min(size(option, depth + 1) for option in node[key])
        if node.get("allOf"):
            return max(size(option, depth + 1) for option in node["allOf"])
        kind = node.get("type")
        if isinstance(kind, list):
            kind = "null" if "null" in kind else (kind[0] if kind else None)
        if kind == "object" or "properties" in node:
            props = node.get("properties", {})
            required = node.get("required", [])
            inner = sum(len(json.dumps(k)) + 2 + size(props.get(k, {}), depth + 1) for k in required)
            return 2 + inner + 2 * max(0, len(required) - 1)
        if kind == "array":
            n = int(node.get("minItems", 0))
            return 2 + n * (size(node.get("items", {}), depth + 1) + 2)
        if kind == "string":
            return 2 + int(node.get("minLength", 0))
        if kind in ("integer", "number"):
            return 1
        if kind == "boolean":
            return 4
        if kind == "null":
            return 4
        return 4

    return size(schema, 0)


class _JsonState:
    """Tracks whether the generated text is inside a string, to pick the token that closes the current value."""

    __slots__ = ("escape", "in_number", "in_string")

    def __init__(self) -> None:
        self.in_string = False
        self.escape = False
        self.in_number = False

    def feed(self, text: str) -> None:
        for ch in text:
            if self.in_string:
                if self.escape:
                    self.escape = False
                elif ch == "\\":
                    self.escape = True
                elif ch == '"':
                    self.in_string = False
            elif ch == '"':
                self.in_string = True
                self.in_number = False
            else:
                self.in_number = ch in "-0123456789.eE+"


class JSONSchemaLogitsProcessor:
    """A transformers logits processor enforcing a compiled xgrammar grammar on every row of a batch.

    ``prompt_length`` is the padded prompt length (generated tokens start there); ``max_new_tokens`` and
    ``reserve`` (see :func:`minimal_json_length`) set when closing pressure starts: in the last quarter of the
    budget, and early enough to write the shortest valid completion.
    """

    def __init__(
        self,
        compiled_grammar: Any,
        tokenizer: Any,
        *,
        prompt_length: int,
        max_new_tokens: int,
        stop_token_ids: list[int],
        reserve: int = 0,
    ) -> None:
        self._xgr = _xgrammar()
        self.compiled = compiled_grammar
        self.tokenizer = tokenizer
        self.prompt_length = prompt_length
        self.max_new_tokens = max_new_tokens
        # Leave room for the shortest completion (``reserve`` characters, at most one token each) plus slack.
        self.pressure_from = max(0, max_new_tokens - max(48, max_new_tokens // 4, reserve + 24))
        self.stop_token_ids = list(stop_token_ids)
        self.matchers: list[Any] = []
        self.states: list[_JsonState] = []
        self.bitmask = None
        self._prefer = self._preference_ids(tokenizer)
        self._lengths: Any = None

    @staticmethod
    def _preference_ids(tokenizer: Any) -> dict[str, list[int]]:
        def ids_for(texts: list[str]) -> list[int]:
            found: list[int] = []
            for t in texts:
                ids = tokenizer.encode(t, add_special_tokens=False)
                if len(ids) == 1 and ids[0] not in found:
                    found.append(ids[0])
            return found

        return {
            "quote": ids_for(['"']),
            "close": ids_for(["}", "]", "}}", "]]", "]}", "}]"]),
            "literal": ids_for(["0", "1", "null", "false", "true", '""', "[]", "{}"]),
            "comma": ids_for([","]),
        }

    def __call__(self, input_ids: Any, scores: Any) -> Any:
        import torch

        batch = input_ids.shape[0]
        if not self.matchers:
            self.matchers = [self._xgr.GrammarMatcher(self.compiled) for _ in range(batch)]
            self.states = [_JsonState() for _ in range(batch)]
            self.bitmask = self._xgr.allocate_token_bitmask(batch, self.compiled.tokenizer_info.vocab_size)
        else:
            last = input_ids[:, -1].tolist()
            for row, token in enumerate(last):
                matcher = self.matchers[row]
                if matcher.is_terminated():
                    continue
                if matcher.accept_token(token):
                    self.states[row].feed(self.tokenizer.decode([token]))
        for row, matcher in enumerate(self.matchers):
            if not matcher.is_terminated():
                matcher.fill_next_token_bitmask(self.bitmask, row)
        vocab = scores.shape[-1]
        self._xgr.apply_token_bitmask_inplace(scores, self.bitmask.to(scores.device), vocab_size=vocab)
        step = input_ids.shape[1] - self.prompt_length
        if step >= self.pressure_from:
            self._apply_pressure(scores)
        for row, matcher in enumerate(self.matchers):
            if matcher.is_terminated():
                # Finished rows keep emitting a stop token (they are padding from here on).
                scores[row].fill_(-torch.inf)
                scores[row, self.stop_token_ids[0]] = 0.0
        return scores

    def _apply_pressure(self, scores: Any) -> None:
        import torch

        for row, matcher in enumerate(self.matchers):
            if matcher.is_terminated():
                continue
            allowed = torch.isfinite(scores[row])
            state = self.states[row]
            order = [self.stop_token_ids, self._prefer["close"]]
            if state.in_string:
                order = [self._prefer["quote"], *order]
            elif state.in_number:
                order = [*order, self._prefer["comma"]]
            else:
                order = [*order, self._prefer["literal"], self._prefer["quote"]]
            choice = None
            for group in order:
                choice = next((t for t in group if t < scores.shape[-1] and bool(allowed[t])), None)
                if choice is not None:
                    break
            if choice is None:
                # Nothing that closes a value is allowed: typically the middle of a multi-byte UTF-8 character.
                # The shortest allowed token (one continuation byte) finishes it without starting another.
                lengths = self._token_lengths(scores.shape[-1], scores.device)
                masked = torch.where(allowed, lengths, torch.iinfo(lengths.dtype).max)
                shortest = masked == masked.min()
                choice = int(torch.where(shortest, scores[row], -torch.inf).argmax())
            scores[row, choice] = scores[row][allowed].max() + 1e4

    def _token_lengths(self, vocab: int, device: Any) -> Any:
        import torch

        if self._lengths is None or self._lengths.shape[0] != vocab:
            decoded = list(self.compiled.tokenizer_info.decoded_vocab)
            big = 1 << 20  # special and empty tokens are never the shortest choice
            lengths = [len(t) if t else big for t in decoded[:vocab]]
            lengths += [big] * (vocab - len(lengths))
            self._lengths = torch.tensor(lengths, dtype=torch.int64, device=device)
        return self._lengths

    def completed(self, row: int = 0) -> bool:
        """Whether row ``row`` produced a complete value."""
        return bool(self.matchers) and self.matchers[row].is_terminated()
