"""The server's guards on raw JSON, applied before any real work: the request body (:func:`parse_body`: nesting
depth and number of objects and arrays bounded *before* decoding, strict UTF-8, no ``NaN``) and ``response_format``
schemas (:func:`check_json_schema`: a valid schema, local ``$ref`` only, and an instance of finite size must exist,
so the grammar compiler never hangs). Anything refused is a :class:`~internvl_tools.server.errors.RequestError`.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterator
from typing import Any
from urllib.parse import unquote

import jsonschema

from internvl_tools.server.errors import RequestError

__all__ = ["check_json_schema", "parse_body"]

MAX_JSON_DEPTH = 64  # an OpenAI request, json_schema included, is nowhere near this deep
MAX_JSON_CONTAINERS = 262_144  # objects and arrays in one request body
MAX_SCHEMA_NODES = 10_000  # subschemas in one response_format schema

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


# ---------------------------------------------------------------------------------------------------- json schemas

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
    internvl_tools.server.errors.RequestError: response_format schema: '#' can never be satisfied by a finite \
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
