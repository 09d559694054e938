"""Function calling for the LlamaIndex ``InternVL``: the same grammar-constrained tool calls as LangChain's
``ChatInternVL.bind_tools``, from the core's :mod:`internvl_tools.generation.tools`.

InternVL checkpoints have no native tool-call tokens: a turn with tools is decoded under a JSON schema that admits
exactly one call of an allowed tool (``{"tool": <name>, "arguments": {...}}``), a list of calls when parallel calls
are allowed (``{"calls": [...]}``), or ``{"answer": "..."}`` when the model may reply in text. The calls therefore
always parse and their arguments validate against each tool's schema; choosing well is the checkpoint's job.

>>> from llama_index.core.tools import FunctionTool
>>> def add(a: int, b: int) -> int:
...     "Add two numbers."
...     return a + b
>>> specs = openai_tools([FunctionTool.from_defaults(add)])
>>> specs[0]["function"]["name"], sorted(specs[0]["function"]["parameters"]["properties"])
('add', ['a', 'b'])
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from llama_index.core.base.llms.types import ChatMessage, ChatResponse, MessageRole, TextBlock, ToolCallBlock
from llama_index.core.llms.llm import ToolSelection

from internvl_tools.generation.tools import (
    normalize_tool_choice,
    parse_tool_answer,
    tool_call_budget,
    tool_call_schema,
    tool_instructions,
)

__all__ = ["openai_tools", "tool_call_request", "tool_selections", "tools_message"]


def openai_tools(tools: Sequence[Any]) -> list[dict[str, Any]]:
    """LlamaIndex tools (or OpenAI-style dicts) as OpenAI tool dicts (name, description, JSON-schema parameters)."""
    out = []
    for tool in tools:
        if isinstance(tool, dict):
            out.append(tool)
        else:
            out.append(tool.metadata.to_openai_tool(skip_length_check=True))
    return out


def _choice(tool_choice: Any, tool_required: bool) -> Any:
    if isinstance(tool_choice, str) and tool_choice in ("auto", None) and tool_required:
        return "any"
    if tool_choice is None:
        return "any" if tool_required else "auto"
    return tool_choice


def tool_call_request(
    core: list[dict[str, Any]],
    tools: Sequence[dict[str, Any]],
    tool_choice: Any,
    parallel: bool,
    generation: dict[str, Any],
    *,
    tool_required: bool = False,
) -> dict[str, Any] | None:
    """Prepare one turn with tools: the answer schema (``None`` when no tool may be called), the tool instructions
    appended to the last user turn, and the token budget raised to fit the shortest valid call."""
    choice = normalize_tool_choice(_choice(tool_choice, tool_required), tools)
    if not tools or choice == "none":
        return None
    schema = tool_call_schema(tools, choice, parallel)
    last_user = max((i for i, m in enumerate(core) if m["role"] == "user"), default=None)
    text = {"type": "text", "text": tool_instructions(tools, choice, parallel)}
    if last_user is None or last_user != len(core) - 1:
        core.append({"role": "user", "content": [text]})
    else:
        core[last_user]["content"].append(text)
    generation.pop("stop", None)  # the grammar decides where the answer ends
    if generation.get("max_new_tokens") is not None:
        generation["max_new_tokens"] = tool_call_budget(tools, choice, generation["max_new_tokens"])
    return schema


def tools_message(text: str) -> ChatMessage:
    """The assistant message of a constrained answer: ``ToolCallBlock``s for the calls, text for a direct answer.

    A cut-off answer (the token budget ran out) is kept in ``additional_kwargs["invalid_tool_calls"]``.
    """
    content, calls, invalid = parse_tool_answer(text)
    blocks: list[Any] = [TextBlock(text=content)] if content else []
    blocks += [ToolCallBlock(tool_call_id=c["id"], tool_name=c["name"], tool_kwargs=c["args"]) for c in calls]
    extra = {"invalid_tool_calls": invalid} if invalid else {}
    return ChatMessage(role=MessageRole.ASSISTANT, blocks=blocks, additional_kwargs=extra)


def tool_selections(response: ChatResponse, error_on_no_tool_call: bool = True) -> list[ToolSelection]:
    """The calls in ``response`` as ``ToolSelection``s; with ``error_on_no_tool_call``, none is a ``ValueError``."""
    calls = [b for b in response.message.blocks if isinstance(b, ToolCallBlock)]
    if not calls and error_on_no_tool_call:
        invalid = response.message.additional_kwargs.get("invalid_tool_calls")
        why = f" (an incomplete call: {invalid[0]['error']})" if invalid else ""
        raise ValueError(
            f"Expected at least one tool call, got none{why}; pass tool_required=True (or tool_choice='any') to "
            "make the model call a tool, or raise max_new_tokens."
        )
    return [
        ToolSelection(tool_id=c.tool_call_id or "", tool_name=c.tool_name,
                      tool_kwargs=c.tool_kwargs if isinstance(c.tool_kwargs, dict) else {})
        for c in calls
    ]  # fmt: skip
