"""ChatInternVL without weights: construction, params, structured-output wiring, pickling, errors."""

from __future__ import annotations

import pickle
from typing import Any

import pytest
from langchain_core.messages import HumanMessage
from pydantic import BaseModel

from langchain_internvl import ChatInternVL, UnsupportedContentError
from langchain_internvl.chat_models import _grammar_schema


class Joke(BaseModel):
    setup: str
    punchline: str


def test_construction_is_lazy_and_accepts_both_model_spellings() -> None:
    a = ChatInternVL(model="some/checkpoint")
    b = ChatInternVL(model_name="some/checkpoint")
    assert a.model == b.model == "some/checkpoint"
    assert a._engines == {}  # nothing created, nothing loaded


def test_ls_params_follow_settings_and_per_call_model() -> None:
    llm = ChatInternVL(model="m", temperature=0.3, max_tokens=7, stop=["END"])
    params = llm._get_ls_params()
    assert (params["ls_provider"], params["ls_model_name"], params["ls_temperature"]) == ("internvl", "m", 0.3)
    assert (params["ls_max_tokens"], params["ls_stop"]) == (7, ["END"])
    assert llm._get_ls_params(model="other")["ls_model_name"] == "other"


def test_pickle_round_trip_drops_engines_but_keeps_settings() -> None:
    llm = ChatInternVL(model="tiny", max_tokens=5, allowed_dirs=["/tmp"])
    llm._engines["tiny"] = object()  # stands in for a loaded engine (weights, locks)
    copy = pickle.loads(pickle.dumps(llm))
    assert (copy.model, copy.max_tokens, copy.allowed_dirs) == ("tiny", 5, ["/tmp"])
    assert copy._engines == {}


def test_settings_are_the_cores_engine_settings_with_langchain_defaults() -> None:
    import internvl_tools
    from internvl_tools.constants import API_KEY_ENV

    from langchain_internvl import InternVLVisionTool

    assert issubclass(ChatInternVL, internvl_tools.EngineSettings)
    assert issubclass(InternVLVisionTool, internvl_tools.EngineSettings)
    # No local file is read unless allowed_dirs (or allow_local_files=True) says so; URLs stay off.
    policy = ChatInternVL(model="tiny").build_media_policy()
    assert (policy.allow_local_files, policy.allow_remote) == (False, False)
    confined = ChatInternVL(model="tiny", allowed_dirs=["/tmp"], allow_private_hosts=["10.0.0.0/8"])
    assert confined.build_media_policy().allow_local_files
    assert ChatInternVL(model="tiny").lc_secrets == {"api_key": API_KEY_ENV} == {"api_key": "INTERNVL_TOOLS_API_KEY"}


@pytest.mark.parametrize("method", ["json_schema", "function_calling", "json_mode"])
def test_structured_output_binds_a_grammar_and_the_tracing_format(method: str) -> None:
    runnable = ChatInternVL(model="tiny").with_structured_output(Joke, method=method)
    binding = runnable.first  # type: ignore[attr-defined]
    fmt = binding.kwargs["response_format"]
    schema = _grammar_schema(fmt)
    if method == "json_mode":
        assert schema == {"type": "object"}
    else:
        assert set(schema["properties"]) == {"setup", "punchline"}
    assert binding.kwargs["ls_structured_output_format"]["kwargs"]["method"] == method


def test_structured_output_rejects_unknown_arguments_and_methods() -> None:
    llm = ChatInternVL(model="tiny")
    with pytest.raises(ValueError, match="unsupported arguments"):
        llm.with_structured_output(Joke, tools=[])
    with pytest.raises(ValueError, match="Unrecognized method"):
        llm.with_structured_output(Joke, method="xml")  # type: ignore[arg-type]


def test_unknown_call_options_are_refused_before_any_model_work() -> None:
    with pytest.raises(ValueError, match="unsupported call option"):
        ChatInternVL(model="tiny").invoke("hi", functions=[{"name": "x"}])


def test_file_id_inputs_fail_before_loading_weights() -> None:
    llm = ChatInternVL(model="does/not-exist")
    with pytest.raises(UnsupportedContentError, match="file_id"):
        llm.invoke([HumanMessage([{"type": "image", "file_id": "file-1"}, {"type": "text", "text": "hi"}])])
    assert llm._engines == {}


def test_openai_response_format_shape_is_understood() -> None:
    fmt: dict[str, Any] = {"type": "json_schema", "json_schema": {"name": "x", "schema": {"type": "object"}}}
    assert _grammar_schema(fmt) == {"type": "object"}
    with pytest.raises(ValueError, match="response_format"):
        _grammar_schema({"type": "text"})
