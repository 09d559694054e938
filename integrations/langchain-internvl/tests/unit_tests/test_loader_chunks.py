"""InternVLPDFLoader(mode="chunks"): chunks with provenance (page, regions in PDF points) that survive a text
splitter and an in-memory vector store round trip. The model's layout answer is scripted."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import internvl_tools
import pytest
from internvl_tools.results import ChatResult, Usage
from langchain_core.embeddings import DeterministicFakeEmbedding
from langchain_core.vectorstores import InMemoryVectorStore
from langchain_text_splitters import RecursiveCharacterTextSplitter

from langchain_internvl import InternVLPDFLoader
from tests.conftest import make_scanned_pdf

ANSWER = (
    "<ref># Penguins</ref><box>[[100, 50, 900, 90]]</box>\n"
    "<ref>Penguins live in the southern hemisphere and do not fly.</ref><box>[[100, 120, 900, 160]]</box>\n"
    "<ref>| Species | Height |</ref><box>[[100, 200, 900, 220]]</box>\n"
    "<ref>|---|---|</ref><box>[[100, 220, 900, 225]]</box>\n"
    "<ref>| Emperor | 115 cm |</ref><box>[[100, 225, 900, 245]]</box>\n"
)


class LayoutEngine:
    """An engine whose every answer is the recorded layout answer above."""

    model_name = "scripted"

    def _answer(self) -> ChatResult:
        return ChatResult(text=ANSWER, usage=Usage(prompt_tokens=1, completion_tokens=1), finish_reason="stop")

    def batch(self, conversations: list, **kwargs: Any) -> list[ChatResult]:
        return [self._answer() for _ in conversations]

    def chat(self, conversation: list, **kwargs: Any) -> ChatResult:
        return self._answer()

    def read_pdf(self, source: Any, **kwargs: Any) -> Any:
        return internvl_tools.read_pdf(self, source, **kwargs)


@pytest.fixture
def chunks(tmp_path: Path) -> list:
    pdf = tmp_path / "scan.pdf"
    pdf.write_bytes(make_scanned_pdf(2))
    loader = InternVLPDFLoader(pdf, engine=LayoutEngine(), dpi=36, mode="chunks", chunk_size=80)
    return list(loader.lazy_load())


def test_chunks_carry_page_and_regions_in_json_metadata(chunks: list) -> None:
    assert [c.metadata["page"] for c in chunks] == [0, 0, 1, 1]  # 0-based, as LangChain's PDF loaders
    assert [c.metadata["chunk_index"] for c in chunks] == [0, 1, 2, 3]
    first, table = chunks[0], chunks[1]
    assert first.page_content.startswith("# Penguins\n\nPenguins live")
    assert table.page_content.startswith("| Species | Height |") and table.metadata["block_kinds"] == ["table"]
    width, height = first.metadata["page_size_pt"]
    assert first.metadata["boxes"][0] == pytest.approx([0.1 * width, 0.05 * height, 0.9 * width, 0.09 * height])
    assert first.metadata["task"] == "layout" and first.metadata["source"].endswith("scan.pdf")
    for chunk in chunks:
        assert json.loads(json.dumps(chunk.metadata)) == chunk.metadata


def test_provenance_survives_a_splitter_and_a_vector_store(chunks: list) -> None:
    pieces = RecursiveCharacterTextSplitter(chunk_size=30, chunk_overlap=0).split_documents(chunks)
    assert len(pieces) > len(chunks)
    for piece in pieces:
        assert piece.metadata["boxes"] and "page" in piece.metadata and "document_id" in piece.metadata
    store = InMemoryVectorStore(DeterministicFakeEmbedding(size=16))
    store.add_documents(pieces)
    hit = store.similarity_search(pieces[-1].page_content, k=1)[0]
    assert hit.metadata == pieces[-1].metadata
    assert hit.metadata["boxes"] == chunks[-1].metadata["boxes"]


def test_page_mode_stays_the_default(tmp_path: Path) -> None:
    pdf = tmp_path / "scan.pdf"
    pdf.write_bytes(make_scanned_pdf(1))
    [doc] = InternVLPDFLoader(pdf, engine=LayoutEngine(), dpi=36, task="layout").load()
    assert "boxes" not in doc.metadata and doc.page_content.startswith("# Penguins")
    with pytest.raises(ValueError, match="mode"):
        InternVLPDFLoader(pdf, mode="pages")  # type: ignore[arg-type]
