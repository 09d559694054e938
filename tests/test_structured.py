"""Schemas in every form the ecosystems use become JSON schemas; answers are validated back into the caller's type."""

from __future__ import annotations

import json
from typing import TypedDict

import pydantic
import pydantic.v1
import pytest
from hypothesis import given
from hypothesis import strategies as st

from internvl_tools.errors import StructuredOutputError
from internvl_tools.generation.structured import json_schema_of, minimal_json_length, validate_output


class Point(pydantic.BaseModel):
    x: int
    y: int


class PointV1(pydantic.v1.BaseModel):
    x: int
    y: int


class PointDict(TypedDict):
    x: int
    y: int


@pytest.mark.parametrize(
    "schema", [Point, PointV1, PointDict, Point.model_json_schema(), json.dumps(Point.model_json_schema())]
)
def test_schema_forms(schema: object) -> None:
    out = json_schema_of(schema)
    assert out["type"] == "object"
    assert set(out["properties"]) == {"x", "y"}


@pytest.mark.parametrize("bad", ["{not json", {}, 42])
def test_bad_schemas_are_refused(bad: object) -> None:
    with pytest.raises(StructuredOutputError):
        json_schema_of(bad)


def test_validate_output_returns_the_callers_type() -> None:
    assert validate_output('{"x": 1, "y": 2}', Point) == Point(x=1, y=2)
    assert validate_output('{"x": 1, "y": 2}', PointV1) == PointV1(x=1, y=2)
    assert validate_output('{"x": 1, "y": 2}', PointDict) == {"x": 1, "y": 2}
    assert validate_output('{"x": 1}', {"type": "object"}) == {"x": 1}


@pytest.mark.parametrize(("text", "schema"), [('{"x": 1', Point), ('{"x": "a", "y": 2}', Point), ("", Point)])
def test_invalid_answers_raise_structured_output_error(text: str, schema: object) -> None:
    with pytest.raises(StructuredOutputError):
        validate_output(text, schema)


class Inner(pydantic.BaseModel):
    name: str
    tags: list[str]
    flag: bool | None = None


class Outer(pydantic.BaseModel):
    inner: Inner
    count: int
    kind: str = "a"


def _minimal_instance() -> str:
    return json.dumps({"inner": {"name": "", "tags": []}, "count": 0})


def test_minimal_json_length_counts_required_skeleton() -> None:
    assert minimal_json_length(Outer.model_json_schema()) == len(_minimal_instance())


@given(st.lists(st.sampled_from(["string", "integer", "boolean", "null", "number"]), min_size=1, max_size=6))
def test_minimal_json_length_is_the_length_of_a_valid_shortest_object(kinds: list[str]) -> None:
    props = {f"k{i}": {"type": k} for i, k in enumerate(kinds)}
    schema = {"type": "object", "properties": props, "required": list(props)}
    shortest = {"string": "", "integer": 0, "boolean": True, "null": None, "number": 0}
    value = json.dumps({k: shortest[v["type"]] for k, v in props.items()})
    assert minimal_json_length(schema) == len(value)


def test_dict_schemas_are_validated_on_our_side() -> None:
    schema = {"type": "object", "properties": {"n": {"type": "integer", "maximum": 5}}, "required": ["n"]}
    assert validate_output('{"n": 3}', schema) == {"n": 3}
    with pytest.raises(StructuredOutputError, match="at n"):
        validate_output('{"n": 9}', schema)
    with pytest.raises(StructuredOutputError, match="root"):
        validate_output("{}", schema)


@given(st.text())
def test_escaping_control_characters_keeps_the_string(value: str) -> None:
    from internvl_tools.generation.structured import escape_control_characters

    raw = '{"k": "' + value.replace("\\", "\\\\").replace('"', '\\"') + '"}'  # control characters left raw
    assert json.loads(escape_control_characters(raw)) == {"k": value}
