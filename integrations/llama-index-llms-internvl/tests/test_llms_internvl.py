"""Specification of ``llama_index.llms.internvl.InternVL`` against a tiny random InternVL checkpoint.

Tiny models answer random text, so tests check structure: shapes, token counts, which inputs reached the model.
"""

from __future__ import annotations

import asyncio
import base64
import itertools
import pickle
from pathlib import Path
from typing import Any, Literal

import pytest
from llama_index.core.base.llms.base import BaseLLM
from llama_index.core.base.llms.types import (
    AudioBlock,
    ChatMessage,
    ChatResponse,
    CompletionResponse,
    DocumentBlock,
    ImageBlock,
    MessageRole,
    TextBlock,
)
from llama_index.core.callbacks import CallbackManager, TokenCountingHandler
from llama_index.core.llms import LLM, CustomLLM
from llama_index.core.prompts import ChatPromptTemplate, PromptTemplate
from llama_index.core.schema import ImageDocument
from llama_index.llms.internvl import InternVL
from pydantic import BaseModel

import internvl_tools

PACKAGE_ROOT = Path(__file__).resolve().parents[1]


class Pet(BaseModel):
    """What the picture shows."""

    kind: Literal["cat", "dog", "bird"]
    visible: bool


class RecordingEngine:
    """Anything with the VisionLanguageModel API works as an engine; this one delegates and records the calls."""

    def __init__(self, inner: Any) -> None:
        self.inner = inner
        self.model_name = "recording"
        self.media_policy = inner.media_policy
        self.calls: list[tuple[str, Any]] = []

    def chat(self, messages: Any, **gen: Any) -> Any:
        self.calls.append(("chat", messages))
        return self.inner.chat(messages, **gen)

    def stream(self, messages: Any, **gen: Any) -> Any:
        self.calls.append(("stream", messages))
        return self.inner.stream(messages, **gen)

    def generate_structured(self, messages: Any, json_schema: dict, **gen: Any) -> Any:
        self.calls.append(("generate_structured", messages))
        return self.inner.generate_structured(messages, json_schema, **gen)

    def image_parts(self, index: int = -1) -> list[dict]:
        messages = self.calls[index][1]
        return [p for m in messages for p in m["content"] if p["type"] == "image"]


def user(*blocks: Any) -> list[ChatMessage]:
    return [ChatMessage(role=MessageRole.USER, blocks=list(blocks))]


# ---------------------------------------------------------------------------------------------------- packaging


def test_namespace_layout_is_pep420() -> None:
    assert not (PACKAGE_ROOT / "llama_index" / "__init__.py").exists()
    assert not (PACKAGE_ROOT / "llama_index" / "llms" / "__init__.py").exists()
    assert (PACKAGE_ROOT / "llama_index" / "llms" / "internvl" / "__init__.py").is_file()
    import llama_index.llms.internvl as leaf

    assert leaf.__all__ == ["DEFAULT_MODEL", "InternVL"]
    assert Path(leaf.__file__).resolve().parent == PACKAGE_ROOT / "llama_index" / "llms" / "internvl"


def test_ancestry_is_llm_not_custom_or_multimodal() -> None:
    names = [c.__name__ for c in InternVL.__mro__]
    assert BaseLLM in InternVL.__mro__ and issubclass(InternVL, LLM)
    assert not issubclass(InternVL, CustomLLM)
    assert "MultiModalLLM" not in names
    assert InternVL.class_name() == "InternVL_llm"


def test_construction_is_cheap_and_loads_nothing() -> None:
    llm = InternVL(model="/nonexistent/checkpoint", max_new_tokens=3)
    assert llm._engine is None
    assert llm.model == "/nonexistent/checkpoint"


def test_metadata_comes_from_the_config_without_loading(internvl_tiny_path: str) -> None:
    llm = InternVL(model=internvl_tiny_path, max_new_tokens=7)
    meta = llm.metadata
    expected = internvl_tools.read_checkpoint_info(internvl_tiny_path).context_length
    assert (meta.context_window, meta.num_output, meta.model_name) == (expected, 7, internvl_tiny_path)
    assert meta.is_chat_model and meta.is_function_calling_model
    assert llm._engine is None
    assert InternVL(model=internvl_tiny_path, context_window=999).metadata.context_window == 999


# ---------------------------------------------------------------------------------------------------- chat


def _image_block(kind: str, png_bytes: bytes, png_path: Path) -> ImageBlock:
    if kind == "bytes":
        return ImageBlock(image=png_bytes)
    if kind == "path":
        return ImageBlock(path=png_path)
    return ImageBlock(url="data:image/png;base64," + base64.b64encode(png_bytes).decode())


@pytest.mark.parametrize("kind", ["bytes", "path", "data_uri"])
def test_chat_reads_image_blocks(
    llm: InternVL, kind: str, png_bytes: bytes, png_path: Path, internvl_tiny_engine: Any
) -> None:
    response = llm.chat(user(_image_block(kind, png_bytes, png_path), TextBlock(text="What colour?")))
    assert isinstance(response, ChatResponse)
    assert response.message.role == MessageRole.ASSISTANT
    assert isinstance(response.message.content, str)
    usage = response.raw["usage"]
    per_tile = internvl_tiny_engine.info.tokens_per_tile
    assert usage["num_tiles"] >= 1
    assert usage["image_tokens"] == usage["num_tiles"] * per_tile
    assert 1 <= response.raw["completion_tokens"] <= 6
    assert response.raw["prompt_tokens"] == usage["prompt_tokens"] > usage["image_tokens"]
    text_only = llm.chat(user(TextBlock(text="What colour?")))
    assert text_only.raw["usage"]["image_tokens"] == 0
    assert response.raw["prompt_tokens"] - text_only.raw["prompt_tokens"] >= usage["image_tokens"]


@pytest.mark.parametrize("kind", ["path", "bytes"])
def test_video_blocks_reach_the_engine_one_tile_per_frame(
    llm: InternVL, internvl_video_clip: Any, internvl_tiny_engine: Any, kind: str
) -> None:
    from llama_index.core.base.llms.types import VideoBlock

    clip = internvl_video_clip(frames=20)
    block = VideoBlock(path=clip) if kind == "path" else VideoBlock(video=clip.read_bytes())
    response = llm.chat(user(block, TextBlock(text="What changes?")))
    usage = response.raw["usage"]
    assert usage["num_tiles"] == 8  # the core's default frame count, one tile each
    assert usage["image_tokens"] == 8 * internvl_tiny_engine.info.tokens_per_tile


def test_every_image_in_any_turn_reaches_the_engine(
    internvl_tiny_engine: Any, png_bytes: bytes, png_path: Path
) -> None:
    engine = RecordingEngine(internvl_tiny_engine)
    llm = InternVL(engine=engine, max_new_tokens=3)
    messages = [
        ChatMessage(role="system", content="Be brief."),
        ChatMessage(role="user", blocks=[ImageBlock(image=png_bytes), TextBlock(text="First?")]),
        ChatMessage(role="assistant", content="Red."),
        ChatMessage(role="user", blocks=[ImageBlock(path=png_path), TextBlock(text="And this?")]),
    ]
    llm.chat(messages)
    sent = engine.calls[-1][1]
    assert [m["role"] for m in sent] == ["system", "user", "assistant", "user"]
    parts = engine.image_parts()
    assert parts[0]["image"] == png_bytes  # inline bytes are decoded, not left base64
    assert parts[1]["image"] == str(png_path)  # paths go to the core unresolved, so its media policy applies


def test_remote_urls_are_refused_unless_enabled(llm: InternVL, internvl_tiny_path: str) -> None:
    block = ImageBlock(url="http://example.com/cat.png")
    with pytest.raises(internvl_tools.RemoteFetchDisabledError):
        llm.chat(user(block, TextBlock(text="?")))
    enabled = InternVL(model=internvl_tiny_path, max_new_tokens=2, allow_remote_urls=True)
    # Enabled, the fetch goes through the SSRF guard: a loopback address is still refused, before any connection.
    with pytest.raises(internvl_tools.URLBlockedError):
        enabled.chat(user(ImageBlock(url="http://127.0.0.1:9/cat.png"), TextBlock(text="?")))


def test_settings_are_the_cores_engine_settings() -> None:
    # One set of field names everywhere (CLI, LangChain, LlamaIndex); allow_remote_images is a deprecated alias.
    assert issubclass(InternVL, internvl_tools.EngineSettings)
    llm = InternVL(model="tiny", allowed_dirs=["/tmp"], allow_private_hosts=["10.0.0.0/8"])
    policy = llm.build_media_policy()
    assert (policy.allow_remote, policy.allow_local_files) == (False, True)
    assert [str(d) for d in policy.allowed_dirs] == ["/tmp"]
    assert InternVL(model="tiny").build_media_policy().allowed_dirs is None  # local files allowed unless confined
    with pytest.warns(DeprecationWarning, match="allow_remote_urls"):
        legacy = InternVL(model="tiny", allow_remote_images=True)
    assert legacy.allow_remote_urls and legacy.build_media_policy().allow_remote
    with pytest.warns(DeprecationWarning, match="allow_remote_urls"):
        restored = InternVL.from_dict({"model": "tiny", "allow_remote_images": True})
    assert restored.allow_remote_urls
    assert "allow_remote_images" not in llm.to_dict() and "api_key" not in llm.to_dict()


def test_allowed_dirs_confine_image_and_document_paths(
    internvl_tiny_path: str, png_path: Path, tmp_path: Path, internvl_scanned_pdf: Any
) -> None:
    elsewhere = tmp_path / "inside"
    elsewhere.mkdir()
    llm = InternVL(model=internvl_tiny_path, max_new_tokens=2, allowed_dirs=[str(elsewhere)])
    with pytest.raises(internvl_tools.PathNotAllowedError):
        llm.chat(user(ImageBlock(path=png_path), TextBlock(text="?")))
    pdf = tmp_path / "doc.pdf"
    pdf.write_bytes(internvl_scanned_pdf(1))
    with pytest.raises(internvl_tools.PathNotAllowedError):
        llm.chat(user(DocumentBlock(path=pdf), TextBlock(text="?")))
    with pytest.raises(internvl_tools.RemoteFetchDisabledError):
        llm.chat(user(DocumentBlock(url="https://example.com/doc.pdf"), TextBlock(text="?")))


@pytest.mark.parametrize(("max_pages", "expected"), [(8, 3), (2, 2)])
def test_pdf_document_blocks_become_page_images(
    internvl_tiny_engine: Any, internvl_scanned_pdf: Any, tmp_path: Path, max_pages: int, expected: int
) -> None:
    engine = RecordingEngine(internvl_tiny_engine)
    llm = InternVL(engine=engine, max_new_tokens=2, max_document_pages=max_pages, document_dpi=36)
    pdf = internvl_scanned_pdf(3)
    response = llm.chat(user(DocumentBlock(data=pdf, document_mimetype="application/pdf"), TextBlock(text="?")))
    assert len(engine.image_parts()) == expected
    assert response.raw["usage"]["num_tiles"] >= expected
    path = tmp_path / "three.pdf"
    path.write_bytes(pdf)
    llm.chat(user(DocumentBlock(path=path), TextBlock(text="?")))
    assert len(engine.image_parts()) == expected


def test_text_document_blocks_become_text(internvl_tiny_engine: Any) -> None:
    engine = RecordingEngine(internvl_tiny_engine)
    llm = InternVL(engine=engine, max_new_tokens=2)
    llm.chat(user(DocumentBlock(data=b"total: 42", document_mimetype="text/plain", title="note"), TextBlock(text="?")))
    texts = [p["text"] for p in engine.calls[-1][1][0]["content"] if p["type"] == "text"]
    assert texts[0] == "note:\ntotal: 42"


def test_audio_blocks_are_refused(llm: InternVL) -> None:
    with pytest.raises(internvl_tools.UnsupportedSourceError, match="Audio"):
        llm.chat(user(AudioBlock(audio=b"RIFF0000WAVE"), TextBlock(text="?")))


def test_generation_options_and_unknown_keywords(llm: InternVL) -> None:
    response = llm.chat(user(TextBlock(text="Count")), max_tokens=2, formatted=True, tools=None)
    assert response.raw["completion_tokens"] <= 2
    assert llm.complete("Hi", max_new_tokens=1).raw["completion_tokens"] == 1


# ---------------------------------------------------------------------------------------------------- streams


def test_stream_chat_deltas_add_up_and_last_chunk_has_usage(llm: InternVL, png_bytes: bytes) -> None:
    messages = user(ImageBlock(image=png_bytes), TextBlock(text="Describe."))
    chunks = list(llm.stream_chat(messages))
    assert chunks
    assert "".join(c.delta for c in chunks) == chunks[-1].message.content
    for a, b in itertools.pairwise(chunks):
        assert b.message.content.startswith(a.message.content)
    final = chunks[-1].raw
    reference = llm.chat(messages)  # greedy: streaming and chat agree
    assert chunks[-1].message.content == reference.message.content
    assert final["prompt_tokens"] == reference.raw["prompt_tokens"]
    assert final["completion_tokens"] >= 1


def test_complete_and_stream_complete_with_legacy_image_documents(llm: InternVL, png_path: Path) -> None:
    docs = [ImageDocument(image_path=str(png_path))]
    done = llm.complete("What is this?", image_documents=docs)
    assert isinstance(done, CompletionResponse) and done.raw["usage"]["num_tiles"] >= 1
    streamed = list(llm.stream_complete("What is this?", image_documents=docs))
    assert streamed[-1].text == done.text == "".join(c.delta for c in streamed)
    assert llm.complete("What is this?").raw["usage"]["num_tiles"] == 0


def test_async_variants(llm: InternVL, png_bytes: bytes) -> None:
    messages = user(ImageBlock(image=png_bytes), TextBlock(text="Hi"))

    async def run() -> tuple:
        chat = await llm.achat(messages)
        comp = await llm.acomplete("Hi")
        schunks = [c async for c in await llm.astream_chat(messages)]
        cchunks = [c async for c in await llm.astream_complete("Hi")]
        return chat, comp, schunks, cchunks

    chat, comp, schunks, cchunks = asyncio.run(run())
    assert chat.raw["usage"]["num_tiles"] >= 1
    assert schunks[-1].message.content == chat.message.content
    assert cchunks[-1].text == comp.text == "".join(c.delta for c in cchunks)


def test_token_counting_callback_reads_raw_usage(internvl_tiny_path: str) -> None:
    counter = TokenCountingHandler(tokenizer=lambda text: text.split())
    llm = InternVL(model=internvl_tiny_path, max_new_tokens=3, callback_manager=CallbackManager([counter]))
    response = llm.chat(user(TextBlock(text="Hello there")))
    assert counter.prompt_llm_token_count == response.raw["prompt_tokens"]
    assert counter.completion_llm_token_count == response.raw["completion_tokens"]


# ---------------------------------------------------------------------------------------------------- structured


def test_structured_predict_returns_a_valid_instance_with_images(internvl_tiny_engine: Any, png_bytes: bytes) -> None:
    engine = RecordingEngine(internvl_tiny_engine)
    llm = InternVL(engine=engine, max_new_tokens=48)
    prompt = ChatPromptTemplate(
        message_templates=[
            ChatMessage(role="user", blocks=[ImageBlock(image=png_bytes), TextBlock(text="Which {thing}?")]),
        ]
    )
    pet = llm.structured_predict(Pet, prompt, thing="animal")
    assert isinstance(pet, Pet)
    assert engine.calls[-1][0] == "generate_structured"
    assert len(engine.image_parts()) == 1
    sent_text = " ".join(p["text"] for p in engine.calls[-1][1][-1]["content"] if p["type"] == "text")
    assert "Which animal?" in sent_text and '"kind"' in sent_text  # the schema is stated, as the core does


def test_structured_variants(llm: InternVL) -> None:
    llm.max_new_tokens = 48
    prompt = PromptTemplate("Name a {thing}.")
    assert isinstance(llm.structured_predict(Pet, prompt, thing="pet"), Pet)
    streamed = list(llm.stream_structured_predict(Pet, prompt, thing="pet"))
    assert len(streamed) == 1 and isinstance(streamed[0], Pet)

    async def run() -> tuple:
        one = await llm.astructured_predict(Pet, prompt, thing="pet")
        many = [p async for p in await llm.astream_structured_predict(Pet, prompt, thing="pet")]
        return one, many

    one, many = asyncio.run(run())
    assert isinstance(one, Pet) and [type(m) for m in many] == [Pet]


def test_structured_output_that_cannot_finish_raises(llm: InternVL) -> None:
    with pytest.raises(internvl_tools.StructuredOutputError, match="max_new_tokens"):
        llm.structured_predict(Pet, PromptTemplate("Pet?"), llm_kwargs={"max_new_tokens": 2})


def test_as_structured_llm_keeps_images(internvl_tiny_engine: Any, png_bytes: bytes) -> None:
    engine = RecordingEngine(internvl_tiny_engine)
    sllm = InternVL(engine=engine, max_new_tokens=48).as_structured_llm(Pet)
    response = sllm.chat(user(ImageBlock(image=png_bytes), TextBlock(text="Which pet?")))
    assert isinstance(response.raw, Pet)
    assert Pet.model_validate_json(response.message.content) == response.raw
    assert engine.calls[-1][0] == "generate_structured" and len(engine.image_parts()) == 1


# ---------------------------------------------------------------------------------------------------- engines


def test_existing_engine_is_used_as_is(internvl_tiny_engine: Any) -> None:
    llm = InternVL(engine=internvl_tiny_engine, max_new_tokens=2)
    assert llm.engine is internvl_tiny_engine and llm.model == internvl_tiny_engine.model_name
    assert llm.metadata.context_window == internvl_tiny_engine.context_length
    with pytest.raises(internvl_tools.ConfigError, match="VisionLanguageModel"):
        InternVL(engine=object())


def test_engines_built_from_settings_share_weights(internvl_tiny_path: str) -> None:
    a = InternVL(model=internvl_tiny_path, max_new_tokens=2)
    b = InternVL(model=internvl_tiny_path, max_new_tokens=2)
    a.complete("Hi")
    b.complete("Hi")
    assert a.engine is not b.engine and a.engine.model is b.engine.model


def test_server_url_is_lazy() -> None:
    llm = InternVL.from_server("http://127.0.0.1:9/v1", model="internvl", max_new_tokens=2, context_window=4096)
    assert llm._engine is None and llm.base_url == "http://127.0.0.1:9/v1"
    assert llm.metadata.context_window == 4096 and llm.metadata.model_name == "internvl"


def test_pickle_keeps_settings_not_weights(llm: InternVL) -> None:
    llm.complete("Hi")
    assert llm._engine is not None
    clone = pickle.loads(pickle.dumps(llm))
    assert clone._engine is None and clone.model == llm.model and clone.max_new_tokens == llm.max_new_tokens
    assert isinstance(clone.complete("Hi").text, str)
