"""InternVLPDFLoader on a generated scanned PDF, feeding a text splitter and an in-memory vector store."""

from __future__ import annotations

from pathlib import Path

from langchain_core.embeddings import DeterministicFakeEmbedding
from langchain_core.vectorstores import InMemoryVectorStore
from langchain_text_splitters import RecursiveCharacterTextSplitter

from langchain_internvl import InternVLPDFLoader
from tests.conftest import make_scanned_pdf


def test_one_document_per_page_with_pdf_loader_metadata(tmp_path: Path, tiny: str) -> None:
    pdf = tmp_path / "scan.pdf"
    pdf.write_bytes(make_scanned_pdf(3))
    loader = InternVLPDFLoader(pdf, model=tiny, device="cpu", max_tokens=24, dpi=72)

    docs = list(loader.lazy_load())

    assert [d.metadata["page"] for d in docs] == [0, 1, 2]  # 0-based, as LangChain's PDF loaders
    assert [d.metadata["page_label"] for d in docs] == ["1", "2", "3"]
    assert {d.metadata["total_pages"] for d in docs} == {3}
    assert {d.metadata["source"] for d in docs} == {str(pdf)}
    assert {d.metadata["task"] for d in docs} == {"ocr"}
    assert all("error" not in d.metadata for d in docs)
    assert all(d.page_content for d in docs)

    chunks = RecursiveCharacterTextSplitter(chunk_size=20, chunk_overlap=0).split_documents(docs)
    assert len(chunks) >= len(docs)
    assert all("page" in c.metadata for c in chunks)
    store = InMemoryVectorStore(DeterministicFakeEmbedding(size=16))
    ids = store.add_documents(chunks)
    assert len(ids) == len(chunks)
    hit = store.similarity_search(chunks[-1].page_content, k=1)[0]
    assert hit.metadata["page"] == chunks[-1].metadata["page"]


def test_page_selection_and_questions(tmp_path: Path, tiny: str) -> None:
    pdf = tmp_path / "scan.pdf"
    pdf.write_bytes(make_scanned_pdf(3))
    docs = InternVLPDFLoader(pdf, model=tiny, device="cpu", pages="2-3", task="What is the total?",
                             max_tokens=8, dpi=72).load()  # fmt: skip
    assert [d.metadata["page"] for d in docs] == [1, 2]
    assert {d.metadata["question"] for d in docs} == {"What is the total?"}
    assert {d.metadata["total_pages"] for d in docs} == {3}
