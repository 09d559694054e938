"""bind_tools without weights: tool_choice rules, the answer grammar, prompts, parsing, streaming (a fake engine)."""

from __future__ import annotations

import json
from types import SimpleNamespace
from typing import Any, Literal

import jsonschema
import pytest
from internvl_tools.generation.tools import (
    minimal_call_length,
    normalize_tool_choice,
    parse_tool_answer,
    tool_call_schema,
)
from langchain_core.messages import AIMessage, AIMessageChunk, HumanMessage, ToolMessage
from langchain_core.tools import tool
from langchain_core.utils.function_calling import convert_to_openai_tool
from pydantic import BaseModel

from langchain_internvl import ChatInternVL
from langchain_internvl._messages import to_core_messages


class Point(BaseModel):
    x: int
    y: int


class Box(BaseModel):
    """Draw a box."""

    corner: Point
    color: Literal["red", "blue"]


class Label(BaseModel):
    """Put a label somewhere (its own, different `Point`)."""

    class Point(BaseModel):
        name: str

    where: Point


@tool
def get_weather(city: str) -> str:
    """Current weather in a city."""
    return "sunny"


TOOLS = [convert_to_openai_tool(t) for t in (get_weather, Box, Label)]
WEATHER = {"type": "function", "function": {"name": "get_weather"}}


class FakeEngine:
    """Records what ChatInternVL asks for and answers with a scripted text."""

    def __init__(self, text: str) -> None:
        self.text = text
        self.calls: list[tuple[str, Any, dict | None, dict]] = []

    def _result(self) -> Any:
        usage = SimpleNamespace(prompt_tokens=11, completion_tokens=7, image_tokens=0, num_tiles=0)
        return SimpleNamespace(text=self.text, usage=usage, finish_reason="stop", model="fake")

    def generate_structured(self, messages: Any, json_schema: dict, **gen: Any) -> Any:
        self.calls.append(("structured", messages, json_schema, gen))
        return self._result()

    def chat(self, messages: Any, **gen: Any) -> Any:
        self.calls.append(("chat", messages, None, gen))
        return self._result()


def fake_llm(text: str, **kw: Any) -> tuple[ChatInternVL, FakeEngine]:
    engine = FakeEngine(text)
    return ChatInternVL(model="fake", engine=engine, **kw), engine


@pytest.mark.parametrize(
    ("choice", "expected"),
    [
        (None, "auto"),
        ("auto", "auto"),
        ("any", "any"),
        ("required", "any"),
        (True, "any"),
        ("none", "none"),
        ("Box", {"type": "function", "function": {"name": "Box"}}),
        (WEATHER, WEATHER),
    ],
)  # fmt: skip
def test_tool_choice_spellings_normalise(choice: Any, expected: Any) -> None:
    assert normalize_tool_choice(choice, TOOLS) == expected
    assert ChatInternVL(model="m").bind_tools(TOOLS, tool_choice=choice).kwargs["tool_choice"] == expected  # type: ignore[attr-defined]


@pytest.mark.parametrize("choice", ["Circle", {"type": "function", "function": {"name": "nope"}}, 42, ""])
def test_unknown_tool_choices_are_refused_at_bind_time(choice: Any) -> None:
    with pytest.raises(ValueError, match="tool_choice"):
        ChatInternVL(model="m").bind_tools(TOOLS, tool_choice=choice)


def test_bind_tools_converts_every_tool_kind_to_the_openai_shape() -> None:
    bound = ChatInternVL(model="m").bind_tools([get_weather, Box, TOOLS[2]])
    names = [t["function"]["name"] for t in bound.kwargs["tools"]]  # type: ignore[attr-defined]
    assert names == ["get_weather", "Box", "Label"]


@pytest.mark.parametrize(
    ("choice", "callable_names", "may_answer"),
    [("auto", ["get_weather", "Box", "Label"], True), ("any", ["get_weather", "Box", "Label"], False),
     ("Label", ["Label"], False)],
)  # fmt: skip
def test_the_grammar_admits_exactly_the_allowed_calls(choice: str, callable_names: list[str], may_answer: bool) -> None:
    schema = tool_call_schema(TOOLS, normalize_tool_choice(choice, TOOLS))
    good = {
        "get_weather": {"city": "Oslo"},
        "Box": {"corner": {"x": 1, "y": 2}, "color": "red"},
        "Label": {"where": {"name": "top"}},
    }
    for name, args in good.items():
        valid = name in callable_names
        call = {"tool": name, "arguments": args}
        assert jsonschema.Draft202012Validator(schema).is_valid(call) is valid, (name, choice)
    assert jsonschema.Draft202012Validator(schema).is_valid({"answer": "hi"}) is may_answer
    # The two different `Point` definitions stay apart, and wrong argument types are outside the grammar.
    if "Box" in callable_names:
        bad = {"tool": "Box", "arguments": {"corner": {"name": "top"}, "color": "red"}}
        assert not jsonschema.Draft202012Validator(schema).is_valid(bad)
        assert not jsonschema.Draft202012Validator(schema).is_valid({"tool": "Box", "arguments": {"color": "green"}})


def test_minimal_call_length_fits_the_shortest_call_of_each_tool() -> None:
    shortest_box = json.dumps({"tool": "Box", "arguments": {"corner": {"x": 0, "y": 0}, "color": "red"}})
    assert minimal_call_length(TOOLS, "any") >= len(shortest_box)
    assert minimal_call_length(TOOLS, normalize_tool_choice("get_weather", TOOLS)) == len(
        json.dumps({"tool": "get_weather", "arguments": {"city": ""}})
    )


@pytest.mark.parametrize(
    ("text", "content", "call", "invalid"),
    [
        ('{"tool": "get_weather", "arguments": {"city": "東京"}}', "", ("get_weather", {"city": "東京"}), False),
        ('{"answer": "It is sunny."}', "It is sunny.", None, False),
        ('{"tool": "get_weather", "arguments": {"ci', "", None, True),  # the budget ran out mid-call
        ("[1, 2]", "", None, True),
        ('{"calls": []}', "", None, True),  # an empty list is no call at all
    ],
)
def test_answers_parse_into_calls_text_or_invalid_calls(text: str, content: str, call: Any, invalid: bool) -> None:
    got_content, calls, invalid_calls = parse_tool_answer(text)
    assert got_content == content
    assert [(c["name"], c["args"]) for c in calls] == ([call] if call else [])
    assert all(c["id"].startswith("call_") and c["type"] == "tool_call" for c in calls)
    assert len(invalid_calls) == int(invalid)
    if invalid:
        assert invalid_calls[0]["args"] == text and invalid_calls[0]["error"]


def test_forced_call_sends_the_grammar_the_instructions_and_a_sufficient_budget() -> None:
    llm, engine = fake_llm('{"tool": "Box", "arguments": {"corner": {"x": 3, "y": 4}, "color": "blue"}}', max_tokens=4)
    msg = llm.bind_tools(TOOLS, tool_choice="Box").invoke("Draw a blue box at 3,4.", stop=["\n"])
    assert msg.content == ""
    [call] = msg.tool_calls
    assert (call["name"], call["args"], call["type"]) == (
        "Box",
        {"corner": {"x": 3, "y": 4}, "color": "blue"},
        "tool_call",
    )
    assert msg.usage_metadata == {"input_tokens": 11, "output_tokens": 7, "total_tokens": 18}
    [(kind, core, schema, gen)] = engine.calls
    assert kind == "structured" and schema["properties"]["tool"] == {"const": "Box"}
    assert "stop" not in gen  # the grammar decides where the answer ends
    assert gen["max_new_tokens"] >= minimal_call_length(TOOLS, normalize_tool_choice("Box", TOOLS))
    prompt = " ".join(p["text"] for p in core[-1]["content"] if p["type"] == "text")
    assert "Draw a blue box" in prompt and "Call the tool Box" in prompt and "Draw a box." in prompt
    assert "get_weather" not in prompt  # only the allowed tool is described


def test_auto_may_answer_in_text_and_none_is_a_plain_chat() -> None:
    llm, engine = fake_llm('{"answer": "Hello!"}')
    msg = llm.bind_tools(TOOLS).invoke("Hi")
    assert (msg.content, msg.tool_calls) == ("Hello!", [])
    assert "answer" in json.dumps(engine.calls[-1][2]) and '"answer"' in engine.calls[-1][1][-1]["content"][-1]["text"]
    llm, engine = fake_llm("plain words")
    msg = llm.bind_tools(TOOLS, tool_choice="none").invoke("Hi")
    assert (msg.content, msg.tool_calls) == ("plain words", [])
    assert engine.calls[-1][0] == "chat" and engine.calls[-1][1] == [
        {"role": "user", "content": [{"type": "text", "text": "Hi"}]}
    ]


def test_a_tool_call_streams_as_one_chunk_with_usage() -> None:
    llm, _ = fake_llm('{"tool": "get_weather", "arguments": {"city": "Zürich"}}')
    chunks = list(llm.bind_tools(TOOLS, tool_choice="any").stream("Weather?"))
    with_calls = [c for c in chunks if c.tool_call_chunks]
    assert len(with_calls) == 1
    [chunk] = with_calls[0].tool_call_chunks
    assert (chunk["name"], chunk["index"], json.loads(chunk["args"])) == ("get_weather", 0, {"city": "Zürich"})
    assert "Zürich" in chunk["args"]  # unicode is written as is, not \\u-escaped
    total = chunks[0]
    for c in chunks[1:]:
        total += c
    assert isinstance(total, AIMessageChunk)
    assert [(c["name"], c["args"]) for c in total.tool_calls] == [("get_weather", {"city": "Zürich"})]
    assert total.usage_metadata is not None and total.usage_metadata["output_tokens"] == 7


def test_tools_and_response_format_together_are_refused_before_any_work() -> None:
    llm = ChatInternVL(model="does/not-exist")
    with pytest.raises(ValueError, match="Both tools and response_format"):
        llm.bind_tools(TOOLS).invoke("hi", response_format={"type": "json_object"})
    assert llm._engines == {}


def test_tool_history_renders_calls_as_json_and_results_with_the_tool_name() -> None:
    messages = [
        HumanMessage("Weather in Oslo and Rome?"),
        AIMessage("Checking.", tool_calls=[
            {"name": "get_weather", "args": {"city": "Oslo"}, "id": "a", "type": "tool_call"},
            {"name": "get_weather", "args": {"city": "Rome"}, "id": "b", "type": "tool_call"},
        ]),
        ToolMessage("rain", tool_call_id="a"),  # no name: found through the call id
        ToolMessage("boom", tool_call_id="b", name="get_weather", status="error"),
    ]  # fmt: skip
    core = to_core_messages(messages, None)
    lines = core[1]["content"][0]["text"].split("\n")
    assert lines[0] == "Checking."
    assert [json.loads(line) for line in lines[1:]] == [{"calls": [  # the parallel form the grammar writes
        {"tool": "get_weather", "arguments": {"city": "Oslo"}},
        {"tool": "get_weather", "arguments": {"city": "Rome"}},
    ]}]  # fmt: skip
    assert "".join(p["text"] for p in core[2]["content"]) == "Tool result (get_weather):\nrain"
    assert "".join(p["text"] for p in core[3]["content"]) == "Tool result (get_weather, error):\nboom"


@pytest.mark.parametrize("choice", ["auto", "any", "Box"])
def test_parallel_grammar_admits_one_to_eight_allowed_calls(choice: str) -> None:
    normal = normalize_tool_choice(choice, TOOLS)
    validator = jsonschema.Draft202012Validator(tool_call_schema(TOOLS, normal, parallel=True))
    box = {"tool": "Box", "arguments": {"corner": {"x": 1, "y": 2}, "color": "red"}}
    weather = {"tool": "get_weather", "arguments": {"city": "Oslo"}}
    assert validator.is_valid({"calls": [box]}) and validator.is_valid({"calls": [box] * 8})
    assert not validator.is_valid({"calls": []}) and not validator.is_valid({"calls": [box] * 9})
    assert validator.is_valid({"calls": [box, weather]}) is (choice != "Box")  # only allowed tools
    assert not validator.is_valid(box)  # one bare call is not the parallel shape
    assert validator.is_valid({"answer": "hi"}) is (choice == "auto")


def test_parallel_tool_calls_bind_and_come_back_as_several_calls() -> None:
    answer = {"calls": [{"tool": "get_weather", "arguments": {"city": "Oslo"}},
                        {"tool": "get_weather", "arguments": {"city": "Rome"}}]}  # fmt: skip
    llm, engine = fake_llm(json.dumps(answer))
    msg = llm.bind_tools(TOOLS, tool_choice="any", parallel_tool_calls=True).invoke("Weather in Oslo and Rome?")
    assert [(c["name"], c["args"]) for c in msg.tool_calls] == [
        ("get_weather", {"city": "Oslo"}),
        ("get_weather", {"city": "Rome"}),
    ]
    assert len({c["id"] for c in msg.tool_calls}) == 2
    [(_, core, schema, _)] = engine.calls
    assert schema["properties"]["calls"]["maxItems"] == 8
    assert '{"calls": [' in core[-1]["content"][-1]["text"]
    # Without the flag (or with False) the grammar asks for exactly one call.
    for flag in (None, False):
        llm, engine = fake_llm('{"tool": "get_weather", "arguments": {"city": "Oslo"}}')
        llm.bind_tools(TOOLS, tool_choice="any", parallel_tool_calls=flag).invoke("Weather?")
        assert "calls" not in json.dumps(engine.calls[-1][2])


def test_profile_declares_tool_calling() -> None:
    profile = ChatInternVL(model="m").profile
    assert profile is not None and profile["tool_calling"] and profile["tool_choice"]


def test_structured_output_states_the_schema_with_the_cores_instruction() -> None:
    from internvl_tools import json_instruction

    llm, engine = fake_llm('{"x": 1, "y": 2}')
    llm.with_structured_output(Point).invoke("Where?")
    _, messages, schema, _ = engine.calls[-1]
    assert messages[-1]["content"][-1] == {"type": "text", "text": "\n" + json_instruction(schema)}
    assert json_instruction(schema).startswith("Answer with a JSON object that follows this JSON schema:\n{")
