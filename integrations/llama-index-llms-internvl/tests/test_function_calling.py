"""InternVL as a LlamaIndex FunctionCallingLLM: grammar-constrained tool calls on the tiny random checkpoint.

The tiny model's choices are meaningless, so these tests check what the grammar guarantees: every call names an
allowed tool and its arguments validate against the tool's schema, single or parallel, forced or not; and the tool
history is shown to the model as the JSON it writes. A FunctionAgent with InternVL as its planner runs tools.
"""

from __future__ import annotations

import asyncio
from typing import Any

import jsonschema
import pytest
from llama_index.core.agent.workflow import FunctionAgent
from llama_index.core.base.llms.types import ChatMessage, MessageRole, TextBlock, ToolCallBlock
from llama_index.core.llms.function_calling import FunctionCallingLLM
from llama_index.core.tools import FunctionTool
from llama_index.llms.internvl import InternVL
from llama_index.llms.internvl.blocks import to_core_messages

CALLS: list[tuple[str, dict[str, Any]]] = []


def add(a: int, b: int) -> int:
    """Add two integers."""
    CALLS.append(("add", {"a": a, "b": b}))
    return a + b


def weather(city: str, unit: str = "celsius") -> str:
    """The weather in a city."""
    CALLS.append(("weather", {"city": city, "unit": unit}))
    return f"Sunny in {city}."


TOOLS = [FunctionTool.from_defaults(add), FunctionTool.from_defaults(weather)]
SCHEMAS = {t.metadata.name: t.metadata.get_parameters_dict() for t in TOOLS}


@pytest.fixture
def planner(internvl_tiny_engine: Any) -> InternVL:
    return InternVL(engine=internvl_tiny_engine, max_new_tokens=48, temperature=0.0)


def _valid(selection: Any) -> None:
    assert selection.tool_name in SCHEMAS and selection.tool_id.startswith("call_")
    jsonschema.validate(selection.tool_kwargs, SCHEMAS[selection.tool_name])


def test_is_a_function_calling_llm(planner: InternVL) -> None:
    assert isinstance(planner, FunctionCallingLLM) and planner.metadata.is_function_calling_model


@pytest.mark.parametrize("seed", range(3))
def test_required_calls_are_valid_under_the_tools_schema(planner: InternVL, seed: int) -> None:
    response = planner.chat_with_tools(TOOLS, user_msg="What is 2 plus 3?", tool_required=True, seed=seed)
    [selection] = planner.get_tool_calls_from_response(response)
    _valid(selection)


def test_a_named_tool_is_the_one_called(planner: InternVL) -> None:
    response = planner.chat_with_tools(TOOLS, user_msg="Weather in Oslo?", tool_choice="weather")
    [selection] = planner.get_tool_calls_from_response(response)
    assert selection.tool_name == "weather"
    _valid(selection)


def test_parallel_calls_are_one_to_eight_valid_calls(planner: InternVL) -> None:
    response = planner.chat_with_tools(
        TOOLS, user_msg="Add 1 and 2, and the weather in Rome.", allow_parallel_tool_calls=True, tool_required=True,
        max_new_tokens=120,
    )  # fmt: skip
    selections = planner.get_tool_calls_from_response(response)
    assert 1 <= len(selections) <= 8
    for selection in selections:
        _valid(selection)


def test_auto_may_answer_in_text_and_none_never_calls(planner: InternVL) -> None:
    response = planner.chat_with_tools(TOOLS, user_msg="Say hi.", tool_choice="none", max_new_tokens=4)
    assert planner.get_tool_calls_from_response(response, error_on_no_tool_call=False) == []
    with pytest.raises(ValueError, match="tool_required=True"):
        planner.get_tool_calls_from_response(response)
    auto = planner.chat_with_tools(TOOLS, user_msg="Say hi.")
    for selection in planner.get_tool_calls_from_response(auto, error_on_no_tool_call=False):
        _valid(selection)


def test_stream_and_async_carry_the_calls(planner: InternVL) -> None:
    chunks = list(planner.stream_chat_with_tools(TOOLS, user_msg="2+3?", tool_required=True))
    assert len(planner.get_tool_calls_from_response(chunks[-1])) == 1
    response = asyncio.run(planner.achat_with_tools(TOOLS, user_msg="2+3?", tool_required=True))
    assert len(planner.get_tool_calls_from_response(response)) == 1


def test_predict_and_call_runs_the_chosen_tool(planner: InternVL) -> None:
    CALLS.clear()
    output = planner.predict_and_call([TOOLS[0]], user_msg="What is 2 plus 3?", tool_required=True)
    assert CALLS and CALLS[-1][0] == "add" and str(sum(CALLS[-1][1].values())) in output.response


def test_tool_history_is_shown_as_the_json_the_model_writes() -> None:
    history = [
        ChatMessage(role=MessageRole.USER, content="2+3?"),
        ChatMessage(role=MessageRole.ASSISTANT, blocks=[ToolCallBlock(tool_call_id="c1", tool_name="add",
                                                                      tool_kwargs={"a": 2, "b": 3})]),
        ChatMessage(role=MessageRole.TOOL, blocks=[TextBlock(text="5")], additional_kwargs={"tool_call_id": "c1"}),
    ]  # fmt: skip
    core = to_core_messages(history)
    assert core[1] == {"role": "assistant", "content": [{"type": "text", "text": '{"tool": "add", "arguments": '
                                                                                   '{"a": 2, "b": 3}}'}]}  # fmt: skip
    assert core[2]["role"] == "user" and core[2]["content"][0]["text"].startswith("Tool result (add)")


def test_function_agent_with_internvl_as_planner_runs_a_tool(planner: InternVL) -> None:
    CALLS.clear()
    tool = FunctionTool.from_defaults(add, return_direct=True)  # the agent stops after the tool's answer
    agent = FunctionAgent(tools=[tool], llm=planner, initial_tool_choice="add", streaming=False)

    async def run() -> Any:
        return await agent.run(user_msg="What is 2 plus 3?")

    result = asyncio.run(run())
    assert CALLS and CALLS[-1][0] == "add"
    assert [c.tool_name for c in result.tool_calls] == ["add"]
    jsonschema.validate(result.tool_calls[0].tool_kwargs, SCHEMAS["add"])
    assert result.response.content == str(sum(CALLS[-1][1].values()))  # return_direct: the tool's answer
