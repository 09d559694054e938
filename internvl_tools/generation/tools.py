"""Tool calling through grammar-constrained JSON: choice normalisation, the answer schema, the prompt, the parser.

Framework-neutral (tools are OpenAI-style ``{"type": "function", "function": {...}}`` dicts, calls plain dicts), so
LangChain's ``ChatInternVL.bind_tools`` and LlamaIndex's function-calling ``InternVL`` decode tool calls alike.

InternVL checkpoints have no native tool-call tokens, so a turn with tools bound is decoded under a JSON schema
that admits exactly one object per allowed tool, ``{"tool": <name>, "arguments": {...}}`` (plus
``{"answer": "..."}`` when the model may reply in text). The grammar guarantees the shape and the argument
types; choosing a sensible tool and sensible values is the model's job. With ``parallel=True`` the answer is
``{"calls": [<call>, ...]}`` (one to :data:`MAX_PARALLEL_CALLS` calls) instead of a single call.

>>> tools = [{"type": "function", "function": {"name": "add", "description": "Add.",
...           "parameters": {"type": "object", "properties": {"a": {"type": "integer"}}, "required": ["a"]}}}]
>>> schema = tool_call_schema(tools, "any")
>>> schema["properties"]["tool"]
{'const': 'add'}
>>> parse_tool_answer('{"tool": "add", "arguments": {"a": 2}}')[1][0]["args"]
{'a': 2}
"""

from __future__ import annotations

import json
import uuid
from collections.abc import Mapping, Sequence
from typing import Any

__all__ = [
    "MAX_PARALLEL_CALLS",
    "TOOL_CALL_SLACK",
    "allowed_tools",
    "minimal_call_length",
    "new_call_id",
    "normalize_tool_choice",
    "parse_tool_answer",
    "render_parallel_calls",
    "render_tool_call",
    "tool_call_budget",
    "tool_call_schema",
    "tool_instructions",
]

_ANY_ALIASES = ("any", "required")
#: Upper bound on the calls of one parallel answer (a grammar needs a bound; agents rarely need more in one turn).
MAX_PARALLEL_CALLS = 8
#: Tokens beyond the shortest valid tool call that a small token budget is raised to (room for real argument values).
TOOL_CALL_SLACK = 32


def _tool_names(tools: Sequence[Mapping[str, Any]]) -> list[str]:
    return [str(t["function"]["name"]) for t in tools]


def normalize_tool_choice(tool_choice: Any, tools: Sequence[Mapping[str, Any]]) -> str | dict[str, Any]:
    """``"auto"``, ``"any"``, ``"none"`` or ``{"type": "function", "function": {"name": ...}}``.

    Accepts ``None``/``"auto"``, ``"any"``/``"required"``/``True``, ``"none"``/``False``, a tool name, or the
    OpenAI dict form; a name that is not among ``tools`` raises ``ValueError``.

    >>> normalize_tool_choice(True, [])
    'any'
    """
    if tool_choice is None or tool_choice == "auto":
        return "auto"
    if tool_choice is True or tool_choice in _ANY_ALIASES:
        return "any"
    if tool_choice is False or tool_choice == "none":
        return "none"
    name: Any = None
    if isinstance(tool_choice, str):
        name = tool_choice
    elif isinstance(tool_choice, Mapping):
        function = tool_choice.get("function")
        name = function.get("name") if isinstance(function, Mapping) else tool_choice.get("name")
    if not isinstance(name, str) or not name:
        raise ValueError(
            f"Unrecognized tool_choice {tool_choice!r}; use 'auto', 'any' (or 'required'/True), 'none', a tool "
            "name, or {'type': 'function', 'function': {'name': ...}}."
        )
    names = _tool_names(tools)
    if name not in names:
        raise ValueError(f"tool_choice names the tool {name!r}, which is not among the bound tools {names}.")
    return {"type": "function", "function": {"name": name}}


def allowed_tools(tools: Sequence[Mapping[str, Any]], choice: str | dict[str, Any]) -> list[Mapping[str, Any]]:
    """The tools the model may call under ``choice`` (normalised); empty for ``"none"``."""
    if choice == "none":
        return []
    if isinstance(choice, dict):
        name = choice["function"]["name"]
        return [t for t in tools if t["function"]["name"] == name]
    return list(tools)


def _parameters(tool: Mapping[str, Any]) -> dict[str, Any]:
    params = tool["function"].get("parameters") or {}
    return dict(params) if params else {"type": "object", "properties": {}}


def _rewrite_refs(node: Any, prefix: str) -> Any:
    """Point local ``$ref``s at the hoisted, prefixed definitions (tools may reuse definition names)."""
    if isinstance(node, dict):
        out = {}
        for key, value in node.items():
            if key == "$ref" and isinstance(value, str):
                for root in ("#/$defs/", "#/definitions/"):
                    if value.startswith(root):
                        value = f"#/$defs/{prefix}{value[len(root) :]}"
                out[key] = value
            else:
                out[key] = _rewrite_refs(value, prefix)
        return out
    if isinstance(node, list):
        return [_rewrite_refs(v, prefix) for v in node]
    return node


def tool_call_schema(
    tools: Sequence[Mapping[str, Any]], choice: str | dict[str, Any], parallel: bool = False
) -> dict[str, Any]:
    """The JSON schema of one answer: a call of an allowed tool (``parallel``: a list of calls), or (``"auto"``)
    ``{"answer": str}``.

    >>> ping = {"type": "function", "function": {"name": "ping", "parameters": {}}}
    >>> tool_call_schema([ping], "any", parallel=True)["properties"]["calls"]["maxItems"]
    8
    """
    calls: list[dict[str, Any]] = []
    defs: dict[str, Any] = {}
    for index, tool in enumerate(allowed_tools(tools, choice)):
        params = _parameters(tool)
        local = {**params.pop("$defs", {}), **params.pop("definitions", {})}
        prefix = f"t{index}_"
        params = _rewrite_refs(params, prefix)
        defs.update({prefix + k: _rewrite_refs(v, prefix) for k, v in local.items()})
        calls.append({
            "type": "object",
            "properties": {"tool": {"const": tool["function"]["name"]}, "arguments": params},
            "required": ["tool", "arguments"],
            "additionalProperties": False,
        })  # fmt: skip
    options: list[dict[str, Any]] = calls
    if parallel and calls:
        item = calls[0] if len(calls) == 1 else {"anyOf": calls}
        options = [{
            "type": "object",
            "properties": {"calls": {"type": "array", "items": item, "minItems": 1, "maxItems": MAX_PARALLEL_CALLS}},
            "required": ["calls"],
            "additionalProperties": False,
        }]  # fmt: skip
    if choice == "auto":
        options.append({
            "type": "object",
            "properties": {"answer": {"type": "string"}},
            "required": ["answer"],
            "additionalProperties": False,
        })  # fmt: skip
    if not options:
        raise ValueError("No tool may be called under this tool_choice; generate without the tool grammar.")
    schema = options[0] if len(options) == 1 else {"anyOf": options}
    if defs:
        schema = {**schema, "$defs": defs}
    return schema


def _minimal_value(node: Any, defs: Mapping[str, Any], depth: int = 0) -> Any:
    """A shortest value valid under ``node`` (approximately: required keys only, empty strings and arrays)."""
    if not isinstance(node, Mapping) or depth > 16:
        return None
    if "$ref" in node:
        return _minimal_value(defs.get(str(node["$ref"]).rsplit("/", 1)[-1]), defs, depth + 1)
    if "const" in node:
        return node["const"]
    if node.get("enum"):
        return min(node["enum"], key=lambda v: len(json.dumps(v)))
    for key in ("anyOf", "oneOf"):
        if node.get(key):
            values = [_minimal_value(option, defs, depth + 1) for option in node[key]]
            return min(values, key=lambda v: len(json.dumps(v)))
    kind = node.get("type")
    if isinstance(kind, list):
        kind = "null" if "null" in kind else (kind[0] if kind else None)
    if kind == "object" or "properties" in node:
        props = node.get("properties", {})
        return {k: _minimal_value(props.get(k, {}), defs, depth + 1) for k in node.get("required", [])}
    if kind == "array":
        return [_minimal_value(node.get("items", {}), defs, depth + 1) for _ in range(int(node.get("minItems", 0)))]
    if kind == "string":
        return "x" * int(node.get("minLength", 0))
    if kind in ("integer", "number"):
        return 0
    if kind == "boolean":
        return False
    return None


def minimal_call_length(tools: Sequence[Mapping[str, Any]], choice: str | dict[str, Any]) -> int:
    """Characters of the longest among the shortest valid calls of the allowed tools.

    A token writes at least one character, so a budget this large (plus slack) lets the grammar finish any call.

    >>> minimal_call_length([{"type": "function", "function": {"name": "f", "parameters": {}}}], "any")
    30
    """
    longest = 0
    for tool in allowed_tools(tools, choice):
        params = _parameters(tool)
        defs = {**params.get("definitions", {}), **params.get("$defs", {})}
        call = render_tool_call(tool["function"]["name"], _minimal_value(params, defs) or {})
        longest = max(longest, len(call))
    return longest


def tool_call_budget(
    tools: Sequence[Mapping[str, Any]], choice: str | dict[str, Any], max_new_tokens: int | None
) -> int | None:
    """``max_new_tokens`` raised, when it is set and too small, to fit the shortest valid call of every allowed tool.

    A budget too small for any complete call would only ever produce broken JSON; a token writes one character or
    more, so the shortest call's length plus :data:`TOOL_CALL_SLACK` always suffices for that call.

    >>> ping = [{"type": "function", "function": {"name": "ping", "parameters": {}}}]
    >>> tool_call_budget(ping, "any", 4), tool_call_budget(ping, "any", 500), tool_call_budget(ping, "any", None)
    (65, 500, None)
    """
    if max_new_tokens is None:
        return None
    return max(int(max_new_tokens), minimal_call_length(tools, choice) + TOOL_CALL_SLACK)


def tool_instructions(tools: Sequence[Mapping[str, Any]], choice: str | dict[str, Any], parallel: bool = False) -> str:
    """The prompt text describing the callable tools and the answer format."""
    lines = ["", "You can call these tools:"]
    for tool in allowed_tools(tools, choice):
        function = tool["function"]
        description = (function.get("description") or "").strip()
        lines.append(f"- {function['name']}" + (f": {description}" if description else ""))
        lines.append(f"  parameters (JSON schema): {json.dumps(_parameters(tool), ensure_ascii=False)}")
    call = '{"tool": "<tool name>", "arguments": {<arguments>}}'
    if parallel:
        many = f'{{"calls": [{call}, ...]}} (1 to {MAX_PARALLEL_CALLS} calls, run together)'
        if choice == "auto":
            lines.append(
                f'Reply with one JSON object: {many} to call tools, or {{"answer": "<your reply>"}} to answer directly.'
            )
        elif isinstance(choice, dict):
            lines.append(f"Call the tool {choice['function']['name']}: reply with one JSON object {many}.")
        else:
            lines.append(f"Call these tools as needed: reply with one JSON object {many}.")
        return "\n".join(lines)
    if choice == "auto":
        lines.append(f"Reply with one JSON object: {call} to call a tool, or {{\"answer\": \"<your reply>\"}} "
                     "to answer directly.")  # fmt: skip
    elif isinstance(choice, dict):
        name = choice["function"]["name"]
        lines.append(f'Call the tool {name}: reply with one JSON object {{"tool": "{name}", "arguments": {{...}}}}.')
    else:
        lines.append(f"Call one of these tools: reply with one JSON object {call}.")
    return "\n".join(lines)


def render_tool_call(name: str, args: Any) -> str:
    """How an earlier tool call appears in the prompt: the JSON the model itself writes for one."""
    return json.dumps({"tool": name, "arguments": args}, ensure_ascii=False)


def render_parallel_calls(calls: Sequence[tuple[str, Any]]) -> str:
    """How an earlier turn with several calls appears in the prompt: the ``{"calls": [...]}`` object.

    >>> render_parallel_calls([("a", {}), ("b", {"x": 1})])
    '{"calls": [{"tool": "a", "arguments": {}}, {"tool": "b", "arguments": {"x": 1}}]}'
    """
    return json.dumps({"calls": [{"tool": name, "arguments": args} for name, args in calls]}, ensure_ascii=False)


def new_call_id() -> str:
    """A fresh id for one tool call (``call_`` and 24 hex digits)."""
    return f"call_{uuid.uuid4().hex[:24]}"


def _call(data: Mapping[str, Any]) -> dict[str, Any]:
    args = data.get("arguments")
    return {"type": "tool_call", "name": data["tool"], "args": args if isinstance(args, dict) else {},
            "id": new_call_id()}  # fmt: skip


def parse_tool_answer(text: str) -> tuple[str, list[dict[str, Any]], list[dict[str, Any]]]:
    """``(content, tool_calls, invalid_tool_calls)`` from the constrained answer.

    A text that is not a complete JSON object (the token budget ran out mid-answer) becomes an invalid tool call
    carrying the raw text, so nothing is silently dropped.
    """
    try:
        data = json.loads(text)
    except ValueError as exc:
        error = f"The answer is not complete JSON (raise max_tokens?): {exc}"
        return "", [], [{"type": "invalid_tool_call", "name": None, "args": text, "id": new_call_id(), "error": error}]
    if isinstance(data, dict) and isinstance(data.get("tool"), str):
        return "", [_call(data)], []
    if isinstance(data, dict) and isinstance(data.get("calls"), list) and data["calls"]:
        items = data["calls"]
        if all(isinstance(c, dict) and isinstance(c.get("tool"), str) for c in items):
            return "", [_call(c) for c in items], []
    if isinstance(data, dict) and isinstance(data.get("answer"), str):
        return data["answer"], [], []
    error = "The answer is neither a tool call nor an answer object."
    return "", [], [{"type": "invalid_tool_call", "name": None, "args": text, "id": new_call_id(), "error": error}]
