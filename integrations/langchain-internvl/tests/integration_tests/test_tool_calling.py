"""Tool calling with a tiny *random* InternVL: every call is well-formed, whatever the weights.

Random weights cannot pick sensible values, so these tests check structure only: names among the allowed tools,
arguments that validate against each tool's JSON schema, ids, streaming, histories, and ChatInternVL as the
planner of a real ``create_agent`` loop.
"""

from __future__ import annotations

import asyncio
import base64
from typing import Any, Literal

import jsonschema
import pytest
from langchain.agents import create_agent
from langchain.agents.middleware import ModelCallLimitMiddleware
from langchain_core.messages import AIMessage, AIMessageChunk, HumanMessage, ToolMessage
from langchain_core.tools import tool
from langchain_core.utils.function_calling import convert_to_openai_tool
from pydantic import BaseModel, Field

from langchain_internvl import ChatInternVL
from tests.conftest import make_png


class Point(BaseModel):
    x: int
    y: int


class DrawBox(BaseModel):
    """Draw a box on the image."""

    corner: Point
    color: Literal["red", "green", "blue"]
    tags: list[str] = Field(default_factory=list)
    note: str | None = None


@tool
def get_weather(city: str, days: int = 1) -> str:
    """Weather forecast for a city."""
    return f"{city}: sunny for {days} day(s)"


@tool
def ping() -> str:
    """Check that the service is up (no arguments)."""
    return "pong"


TOOLS: list[Any] = [get_weather, DrawBox, ping]
SCHEMAS = {t["function"]["name"]: t["function"]["parameters"] for t in map(convert_to_openai_tool, TOOLS)}
PROMPTS = ["Draw a red box at (3, 4).", "What's the weather in Oslo for 3 days?", "你好, is the server up?"]


def assert_valid_call(call: dict[str, Any], allowed: set[str]) -> None:
    assert call["type"] == "tool_call" and call["id"].startswith("call_")
    assert call["name"] in allowed
    jsonschema.validate(call["args"], SCHEMAS[call["name"]])


@pytest.fixture(scope="module")
def llm(tiny: str) -> ChatInternVL:
    # Sampling with fixed seeds: varied (yet reproducible) answers from the random weights.
    return ChatInternVL(model=tiny, device="cpu", max_tokens=16, temperature=1.0)


@pytest.mark.parametrize("seed", range(6))
@pytest.mark.parametrize("choice", ["any", "DrawBox", "ping"])
def test_a_forced_choice_always_yields_one_valid_call(llm: ChatInternVL, choice: str, seed: int) -> None:
    msg = llm.bind_tools(TOOLS, tool_choice=choice).invoke(PROMPTS[seed % len(PROMPTS)], seed=seed)
    assert isinstance(msg, AIMessage) and msg.content == "" and not msg.invalid_tool_calls
    [call] = msg.tool_calls
    assert_valid_call(call, set(SCHEMAS) if choice == "any" else {choice})


@pytest.mark.parametrize("seed", range(3))
def test_parallel_calls_are_each_valid_and_distinct(llm: ChatInternVL, seed: int) -> None:
    bound = llm.bind_tools(TOOLS, tool_choice="any", parallel_tool_calls=True)
    msg = bound.invoke(PROMPTS[seed % len(PROMPTS)], seed=seed, max_tokens=400)
    assert not msg.invalid_tool_calls and msg.content == ""
    assert 1 <= len(msg.tool_calls) <= 8
    for call in msg.tool_calls:
        assert_valid_call(call, set(SCHEMAS))
    assert len({c["id"] for c in msg.tool_calls}) == len(msg.tool_calls)


@pytest.mark.parametrize("seed", range(3))
def test_auto_yields_a_valid_call_or_text(llm: ChatInternVL, seed: int) -> None:
    msg = llm.bind_tools(TOOLS).invoke(PROMPTS[seed], seed=seed)
    assert not msg.invalid_tool_calls
    if msg.tool_calls:
        [call] = msg.tool_calls
        assert_valid_call(call, set(SCHEMAS))
        assert msg.content == ""
    else:
        assert isinstance(msg.content, str)


def test_none_answers_in_text_exactly_like_the_unbound_model(llm: ChatInternVL) -> None:
    greedy = llm.model_copy(update={"temperature": 0})
    msg = greedy.bind_tools(TOOLS, tool_choice="none").invoke("Say hi.")
    assert msg.tool_calls == [] and msg.content == greedy.invoke("Say hi.").content


def test_streamed_and_async_calls_are_valid_and_carry_usage(llm: ChatInternVL) -> None:
    bound = llm.bind_tools(TOOLS, tool_choice="get_weather")
    chunks = list(bound.stream("Weather in Rome?", seed=1))
    assert sum(1 for c in chunks if c.tool_call_chunks) == 1
    total = chunks[0]
    for chunk in chunks[1:]:
        total += chunk
    assert isinstance(total, AIMessageChunk)
    [call] = total.tool_calls
    assert_valid_call(call, {"get_weather"})
    assert total.usage_metadata is not None and total.usage_metadata["output_tokens"] > 0
    [acall] = asyncio.run(bound.ainvoke("Weather in Rome?", seed=1)).tool_calls
    assert_valid_call(acall, {"get_weather"})


def test_a_full_round_trip_with_an_image_tool_result(llm: ChatInternVL) -> None:
    bound = llm.bind_tools(TOOLS, tool_choice="DrawBox")
    question = HumanMessage("Draw a box, then look at the result.")
    first = bound.invoke([question], seed=0)
    [call] = first.tool_calls
    image = base64.b64encode(make_png()).decode()
    result = ToolMessage(
        [{"type": "text", "text": "drawn"}, {"type": "image", "base64": image, "mime_type": "image/png"}],
        tool_call_id=call["id"],
    )
    second = bound.invoke([question, first, result], seed=0)
    assert_valid_call(second.tool_calls[0], {"DrawBox"})
    assert second.response_metadata["num_tiles"] >= 1  # the tool's image reached the model


def test_chat_internvl_plans_a_create_agent_loop(tiny: str) -> None:
    """ChatInternVL itself as the planner (tool_choice "auto", chosen by create_agent).

    A random model may call tools forever (this one calls ``weather`` on every turn), so the run is bounded the
    way production agents are bounded, with ModelCallLimitMiddleware; every step it took must be well-formed.
    """
    runs: list[tuple[str, int]] = []

    @tool
    def weather(city: str, days: int = 1) -> str:
        """Weather forecast for a city."""
        runs.append((city, days))
        return "sunny"

    planner = ChatInternVL(model=tiny, device="cpu", max_tokens=8, temperature=0)
    agent = create_agent(planner, tools=[weather], middleware=[ModelCallLimitMiddleware(run_limit=3)])
    state = agent.invoke({"messages": [{"role": "user", "content": "Weather in Oslo?"}]}, {"recursion_limit": 20})

    messages = state["messages"]
    assert isinstance(messages[0], HumanMessage)
    ai = [m for m in messages if isinstance(m, AIMessage)]
    assert 1 <= len([m for m in ai if m.usage_metadata]) <= 3  # the model planned at least once, at most 3 times
    answered = {m.tool_call_id for m in messages if isinstance(m, ToolMessage)}
    calls = [c for m in ai for c in m.tool_calls]
    assert {c["id"] for c in calls} == answered  # every call was run and answered, nothing dangling
    assert len(runs) == len(calls)
    for call in calls:
        assert call["name"] == "weather"
        jsonschema.validate(call["args"], convert_to_openai_tool(weather)["function"]["parameters"])
    # The loop ended cleanly: on the planner's text answer or on the call limit's closing message.
    assert isinstance(messages[-1], AIMessage) and not messages[-1].tool_calls
