"""ChatInternVL behaviour beyond the standard suite: streaming metadata, async, sharing, media, structured output."""

from __future__ import annotations

import asyncio
import base64
import threading
from collections.abc import Generator
from typing import TypedDict

import pytest
from internvl_tools import RemoteFetchDisabledError, TextStream
from langchain_core.messages import AIMessage, AIMessageChunk, HumanMessage, SystemMessage, ToolMessage
from pydantic import BaseModel
from pydantic.v1 import BaseModel as BaseModelV1

from langchain_internvl import ChatInternVL, InternVLOCRTool
from tests.conftest import make_png, make_scanned_pdf

B64 = base64.b64encode(make_png((96, 64))).decode()


def llm(tiny: str, **kw: object) -> ChatInternVL:
    settings: dict[str, object] = {"device": "cpu", "max_tokens": 12, "temperature": 0, **kw}
    return ChatInternVL(model=tiny, **settings)


def test_stream_equals_invoke_and_carries_usage_and_metadata_on_one_chunk(tiny: str) -> None:
    model = llm(tiny)
    question = [HumanMessage([{"type": "image", "base64": B64, "mime_type": "image/png"}, "Describe."])]
    chunks = list(model.stream(question))
    full = chunks[0]
    for c in chunks[1:]:
        full += c
    assert sum(1 for c in chunks if c.usage_metadata) == 1
    assert sum(1 for c in chunks if c.response_metadata.get("model_name")) == 1
    invoked = model.invoke(question)
    assert full.content == invoked.content  # greedy: same text either way
    assert full.usage_metadata["input_tokens"] == invoked.usage_metadata["input_tokens"] > 0
    assert invoked.response_metadata["model_provider"] == "internvl"
    assert invoked.response_metadata["finish_reason"] in {"stop", "length"}
    assert invoked.response_metadata["num_tiles"] >= 1


async def test_astream_keeps_the_event_loop_running(tiny: str, monkeypatch: pytest.MonkeyPatch) -> None:
    """Generation runs off the loop: it blocks mid-stream until a task *on the loop* lets it go on.

    A property, not a timing race: if astream generated on the loop thread, the loop task could never run, the
    generator's wait would time out and the assertion below fails cleanly (no hang, no tick counting).
    """
    model = llm(tiny, max_tokens=16)
    engine = model.get_engine()
    real_stream = engine.stream
    in_flight, gate = threading.Event(), threading.Event()
    gate_opened_mid_stream: list[bool] = []

    def gated_stream(*args: object, **kwargs: object) -> TextStream:
        inner = real_stream(*args, **kwargs)

        def deltas() -> Generator[str, None, object]:
            for index, delta in enumerate(inner):
                if index == 0:  # generation has produced its first token and is now in flight
                    in_flight.set()
                    gate_opened_mid_stream.append(gate.wait(timeout=30))
                yield delta
            return inner.result  # the engine contract: the stream's result (usage, finish reason) when it ends

        return TextStream(deltas())

    monkeypatch.setattr(engine, "stream", gated_stream)

    async def open_the_gate_from_the_loop() -> None:
        while not in_flight.is_set():
            await asyncio.sleep(0.001)
        gate.set()

    opener = asyncio.create_task(open_the_gate_from_the_loop())
    pieces = [c.content async for c in model.astream("Tell me a long story.")]
    await asyncio.wait_for(opener, timeout=30)
    assert gate_opened_mid_stream == [True], "the event loop was blocked while the model generated"
    assert "".join(pieces)


def test_weights_are_shared_between_wrappers_on_the_same_checkpoint(tiny: str, media_dir) -> None:
    a, b = llm(tiny), llm(tiny, max_tokens=3)
    tool = InternVLOCRTool(model=tiny, device="cpu", allowed_dirs=[str(media_dir)])
    a.invoke("hi")
    b.invoke("hi")
    tool.invoke({"image": "street.png"})
    assert a.get_engine().model is b.get_engine().model is tool.get_engine().model


def test_image_urls_refused_by_default_and_served_from_an_allowed_private_host(tiny: str, image_server: str) -> None:
    message = [HumanMessage([{"type": "image", "url": f"{image_server}/image.png"}, "What is this?"])]
    with pytest.raises(RemoteFetchDisabledError):
        llm(tiny).invoke(message)
    allowed = llm(tiny, allow_remote_urls=True, allow_private_hosts=["127.0.0.1"])
    result = allowed.invoke(message)
    assert result.response_metadata["num_tiles"] >= 1
    openai_style = [HumanMessage([{"type": "image_url", "image_url": f"{image_server}/image.png"}, "And this?"])]
    assert allowed.invoke(openai_style).response_metadata["num_tiles"] >= 1


def test_images_in_tool_messages_and_pdfs_reach_the_model(tiny: str) -> None:
    pdf = base64.b64encode(make_scanned_pdf(2)).decode()
    messages = [
        SystemMessage("You read documents."),
        HumanMessage([{"type": "file", "base64": pdf, "mime_type": "application/pdf"}, "Summarize."]),
        AIMessage("", tool_calls=[{"name": "snap", "args": {}, "id": "1", "type": "tool_call"}]),
        ToolMessage([{"type": "image", "base64": B64, "mime_type": "image/png"}], tool_call_id="1", name="snap"),
    ]
    result = llm(tiny).invoke(messages)
    assert result.response_metadata["num_tiles"] >= 3  # two pages and the tool's image, one tile or more each


def test_video_blocks_reach_the_model_one_tile_per_frame(tiny: str, internvl_video_clip) -> None:
    clip = base64.b64encode(internvl_video_clip(frames=20).read_bytes()).decode()
    message = HumanMessage([{"type": "video", "base64": clip, "mime_type": "video/mp4"}, "What changes?"])
    result = llm(tiny).invoke([message])
    assert result.response_metadata["num_tiles"] == 8  # the core's default frame count, one tile each
    assert result.usage_metadata["input_tokens"] > 8


class Person(BaseModel):
    name: str
    age: int


class PersonV1(BaseModelV1):
    name: str
    age: int


class PersonDict(TypedDict):
    name: str
    age: int


@pytest.mark.parametrize("schema", [Person, PersonV1, PersonDict, Person.model_json_schema()],
                         ids=["pydantic2", "pydantic1", "typeddict", "json-schema"])  # fmt: skip
def test_structured_output_is_valid_for_every_schema_style(tiny: str, schema: object) -> None:
    result = llm(tiny, max_tokens=40).with_structured_output(schema).invoke("Who is on the photo?")
    if isinstance(result, dict):
        data = result
    else:
        data = result.model_dump() if hasattr(result, "model_dump") else result.dict()
    assert set(data) == {"name", "age"} and isinstance(data["age"], int)


def test_include_raw_and_json_mode(tiny: str) -> None:
    out = llm(tiny, max_tokens=40).with_structured_output(Person, include_raw=True).invoke("Who?")
    assert isinstance(out["raw"], AIMessage) and isinstance(out["parsed"], Person) and out["parsing_error"] is None
    anything = llm(tiny, max_tokens=24).with_structured_output(None, method="json_mode").invoke("JSON please")
    assert isinstance(anything, dict)


def test_stop_sequences_and_streaming_flag(tiny: str) -> None:
    streamed = llm(tiny, streaming=True).invoke("hi")
    assert isinstance(streamed, AIMessage) and streamed.usage_metadata["output_tokens"] >= 1
    chunks = list(llm(tiny).stream("hi", stop=["zzz-never"]))
    assert isinstance(chunks[-1], AIMessageChunk) and chunks[-1].chunk_position == "last"
