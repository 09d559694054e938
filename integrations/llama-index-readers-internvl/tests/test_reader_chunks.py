"""InternVLPDFReader(mode="chunks"): chunks with provenance (page, regions in PDF points) hidden from embeddings,
surviving SimpleDirectoryReader, an IngestionPipeline with a docstore (upserts) and a VectorStoreIndex round trip.
The model's layout answer is scripted."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
from llama_index.core import SimpleDirectoryReader, VectorStoreIndex
from llama_index.core.embeddings import MockEmbedding
from llama_index.core.ingestion import DocstoreStrategy, IngestionPipeline
from llama_index.core.readers.base import ReaderConfig
from llama_index.core.schema import MetadataMode
from llama_index.core.storage.docstore import SimpleDocumentStore
from llama_index.core.vector_stores import SimpleVectorStore
from llama_index.readers.internvl import CHUNK_METADATA_KEYS, InternVLPDFReader

import internvl_tools
from internvl_tools.results import ChatResult, Usage

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
def reader() -> InternVLPDFReader:
    return InternVLPDFReader(
        engine=LayoutEngine(), dpi=36, progress=False, render_backend="thread", mode="chunks", chunk_size=80
    )


@pytest.fixture
def pdf_path(tmp_path: Path, internvl_scanned_pdf: Any) -> Path:
    path = tmp_path / "scan.pdf"
    path.write_bytes(internvl_scanned_pdf(2))
    return path


def _boxes(doc: Any) -> list:
    return json.loads(doc.metadata["boxes"])


def test_chunks_carry_provenance_hidden_from_embeddings(reader: InternVLPDFReader, pdf_path: Path) -> None:
    docs = reader.load_data(pdf_path)
    assert [(d.metadata["page_number"], d.metadata["chunk_index"]) for d in docs] == [(1, 0), (1, 1), (2, 0), (2, 1)]
    assert [d.id_ for d in docs[:2]] == [f"{pdf_path}#page=1&chunk=0", f"{pdf_path}#page=1&chunk=1"]
    width, height = json.loads(docs[0].metadata["page_size_pt"])
    assert _boxes(docs[0])[0] == pytest.approx([0.1 * width, 0.05 * height, 0.9 * width, 0.09 * height])
    assert json.loads(docs[1].metadata["block_kinds"]) == ["table"]
    for doc in docs:
        assert set(CHUNK_METADATA_KEYS) <= set(doc.excluded_embed_metadata_keys)
        assert set(CHUNK_METADATA_KEYS) <= set(doc.excluded_llm_metadata_keys)
        assert "boxes" not in doc.get_content(metadata_mode=MetadataMode.EMBED)
        assert json.loads(json.dumps(doc.metadata)) == doc.metadata


def test_provenance_survives_simple_directory_reader(reader: InternVLPDFReader, pdf_path: Path) -> None:
    docs = SimpleDirectoryReader(input_dir=str(pdf_path.parent), file_extractor={".pdf": reader}).load_data()
    assert len(docs) == 4 and all(_boxes(d) for d in docs)
    assert {d.metadata["file_name"] for d in docs} == {"scan.pdf"}
    assert (
        "last_modified_date" in docs[0].excluded_embed_metadata_keys and "boxes" in docs[0].excluded_embed_metadata_keys
    )


def test_provenance_survives_an_ingestion_pipeline_with_upserts(reader: InternVLPDFReader, pdf_path: Path) -> None:
    docstore, vector_store = SimpleDocumentStore(), SimpleVectorStore()

    def pipeline() -> IngestionPipeline:
        return IngestionPipeline(
            readers=[ReaderConfig(reader=reader, reader_kwargs={"file": str(pdf_path)})],
            transformations=[MockEmbedding(embed_dim=8)],
            docstore=docstore,
            vector_store=vector_store,
            docstore_strategy=DocstoreStrategy.UPSERTS,
        )

    first = pipeline().run()
    assert len(first) == 4 and all(_boxes(n) and n.metadata["page_number"] in (1, 2) for n in first)
    assert pipeline().run() == []  # same chunk ids and hashes: nothing re-ingested
    assert len(docstore.docs) == 4


def test_provenance_survives_a_vector_index_round_trip(reader: InternVLPDFReader, pdf_path: Path) -> None:
    docs = reader.load_data(pdf_path)
    index = VectorStoreIndex.from_documents(docs, embed_model=MockEmbedding(embed_dim=8))
    hits = index.as_retriever(similarity_top_k=4).retrieve("Emperor height")
    assert len(hits) == 4
    by_id = {d.id_: d for d in docs}
    for hit in hits:
        source = by_id[hit.node.ref_doc_id]
        assert hit.node.metadata["boxes"] == source.metadata["boxes"]
        assert hit.node.metadata["page_number"] == source.metadata["page_number"]
