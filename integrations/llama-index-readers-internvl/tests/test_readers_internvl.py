"""Specification of ``llama_index.readers.internvl.InternVLPDFReader`` with a tiny random InternVL checkpoint.

Test documents are generated here: Pillow writes "scanned" PDFs (one solid-colour image per page) and images.
"""

from __future__ import annotations

import base64
import io
import json
import pickle
from pathlib import Path
from typing import Any, Literal

import pytest
from llama_index.core import SimpleDirectoryReader, VectorStoreIndex
from llama_index.core.embeddings import MockEmbedding
from llama_index.core.ingestion import DocstoreStrategy, IngestionPipeline
from llama_index.core.llms.mock import MockLLM
from llama_index.core.node_parser import SentenceSplitter
from llama_index.core.query_engine import RetrieverQueryEngine
from llama_index.core.readers.base import BasePydanticReader, BaseReader, ReaderConfig
from llama_index.core.response_synthesizers.no_text import NoText
from llama_index.core.schema import MetadataMode
from llama_index.core.storage.docstore import SimpleDocumentStore
from llama_index.core.vector_stores import ExactMatchFilter, MetadataFilters, SimpleVectorStore
from llama_index.readers.internvl import EXTRA_METADATA_KEYS, InternVLPDFReader
from PIL import Image
from pydantic import BaseModel

import internvl_tools

PACKAGE_ROOT = Path(__file__).resolve().parents[1]


class Invoice(BaseModel):
    """Fields of one page."""

    paid: bool
    currency: Literal["EUR", "USD"]


@pytest.fixture
def reader(internvl_tiny_engine: Any) -> InternVLPDFReader:
    return InternVLPDFReader(
        engine=internvl_tiny_engine, dpi=36, max_new_tokens=6, progress=False, render_backend="thread"
    )


@pytest.fixture
def pdf_path(tmp_path: Path, internvl_scanned_pdf: Any) -> Path:
    path = tmp_path / "scan.pdf"
    path.write_bytes(internvl_scanned_pdf(3))
    return path


def _image_file(tmp_path: Path, name: str, fmt: str, frames: int = 1) -> Path:
    images = [Image.new("RGB", (64, 48), (30 * i, 120, 200)) for i in range(frames)]
    path = tmp_path / name
    images[0].save(path, format=fmt, save_all=frames > 1, append_images=images[1:])
    return path


# ---------------------------------------------------------------------------------------------------- packaging


def test_namespace_layout_and_ancestry() -> None:
    assert not (PACKAGE_ROOT / "llama_index" / "__init__.py").exists()
    assert not (PACKAGE_ROOT / "llama_index" / "readers" / "__init__.py").exists()
    assert (PACKAGE_ROOT / "llama_index" / "readers" / "internvl" / "__init__.py").is_file()
    assert issubclass(InternVLPDFReader, BasePydanticReader) and BaseReader in InternVLPDFReader.__mro__
    assert InternVLPDFReader.class_name() == "InternVLPDFReader"


def test_construction_is_cheap() -> None:
    reader = InternVLPDFReader(model="/nonexistent/checkpoint")
    assert reader._engine is None and reader.is_remote is False


# ---------------------------------------------------------------------------------------------------- pages


def test_one_document_per_page_with_page_metadata(reader: InternVLPDFReader, pdf_path: Path) -> None:
    docs = reader.load_data(pdf_path)
    assert [d.metadata["page_number"] for d in docs] == [1, 2, 3]
    assert [d.metadata["page_label"] for d in docs] == ["1", "2", "3"]
    for doc in docs:
        meta = doc.metadata
        assert meta["file_path"] == str(pdf_path) and meta["file_name"] == "scan.pdf"
        assert meta["total_pages"] == 3 and meta["task"] == "ocr" and meta["dpi"] == pytest.approx(36)
        assert doc.id_ == f"{pdf_path}#page={meta['page_number']}"
        assert "error" not in meta
        assert set(EXTRA_METADATA_KEYS) & set(meta) <= set(doc.excluded_embed_metadata_keys)
        assert set(doc.excluded_embed_metadata_keys) == set(doc.excluded_llm_metadata_keys)
        embed_text = doc.get_metadata_str(MetadataMode.EMBED)
        assert "page_number: " in embed_text and "dpi: " not in embed_text and "task: " not in embed_text
        # The page image rides along as a resource, never as base64 text in the metadata.
        png = base64.b64decode(doc.image_resource.data)
        with Image.open(io.BytesIO(png)) as im:
            assert f"{im.width}x{im.height}" == meta["image_size"] == "60x80"
        assert all(len(str(v)) < 300 for v in meta.values())


def test_lazy_load_yields_pages_one_at_a_time(reader: InternVLPDFReader, pdf_path: Path) -> None:
    pages = reader.lazy_load_data(pdf_path)
    assert next(iter(pages)).metadata["page_number"] == 1
    pages.close()


def test_page_selection_keeps_total_pages(reader: InternVLPDFReader, pdf_path: Path) -> None:
    reader.pages = "2-3"
    docs = reader.load_data(pdf_path)
    assert [(d.metadata["page_number"], d.metadata["total_pages"]) for d in docs] == [(2, 3), (3, 3)]


def test_extra_info_is_merged_caller_wins_except_page_keys(reader: InternVLPDFReader, pdf_path: Path) -> None:
    docs = reader.load_data(pdf_path, extra_info={"file_path": "docs/scan.pdf", "source": "inbox", "page_number": 9})
    assert [d.metadata["page_number"] for d in docs] == [1, 2, 3]
    assert {d.metadata["source"] for d in docs} == {"inbox"}
    assert docs[1].id_ == "docs/scan.pdf#page=2"


@pytest.mark.parametrize(
    ("name", "fmt", "frames"), [("a.png", "PNG", 1), ("b.jpg", "JPEG", 1), ("c.tiff", "TIFF", 1), ("d.tiff", "TIFF", 2)]
)
def test_images_are_documents_too(reader: InternVLPDFReader, tmp_path: Path, name: str, fmt: str, frames: int) -> None:
    reader.dpi = None  # images keep their own pixels
    path = _image_file(tmp_path, name, fmt, frames)
    docs = reader.load_data(path)
    assert [d.metadata["page_number"] for d in docs] == list(range(1, frames + 1))
    assert all(d.metadata["total_pages"] == frames and d.metadata["file_name"] == name for d in docs)
    with Image.open(io.BytesIO(base64.b64decode(docs[0].image_resource.data))) as im:
        assert im.size == (64, 48)


@pytest.mark.parametrize("mode", ["path", "none"])
def test_page_image_modes(reader: InternVLPDFReader, pdf_path: Path, tmp_path: Path, mode: str) -> None:
    reader.page_images = mode
    reader.image_dir = str(tmp_path / "pages")
    reader.pages = "1"
    [doc] = reader.load_data(pdf_path)
    if mode == "none":
        assert doc.image_resource is None
    else:
        assert doc.image_resource.data is None and Path(doc.image_resource.path).parent == tmp_path / "pages"
        with Image.open(doc.image_resource.path) as im:
            assert im.size == (60, 80)


def test_missing_file_raises(reader: InternVLPDFReader, tmp_path: Path) -> None:
    with pytest.raises(internvl_tools.MediaNotFoundError):
        reader.load_data(tmp_path / "absent.pdf")


def test_settings_are_the_cores_engine_settings(internvl_tiny_engine: Any, pdf_path: Path, tmp_path: Path) -> None:
    # The same field names as the LLM, LangChain and the CLI; the engine and policy come from EngineSettings.
    assert issubclass(InternVLPDFReader, internvl_tools.EngineSettings)
    policy = InternVLPDFReader(model="tiny").build_media_policy()
    assert policy.allow_local_files and policy.allowed_dirs is None and not policy.allow_remote
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    with pytest.raises(internvl_tools.PathNotAllowedError):
        InternVLPDFReader(engine=internvl_tiny_engine, allowed_dirs=[str(elsewhere)]).load_data(pdf_path)
    with pytest.raises(internvl_tools.PathNotAllowedError):
        InternVLPDFReader(engine=internvl_tiny_engine, allow_local_files=False).load_data(pdf_path)
    assert "api_key" not in InternVLPDFReader(model="tiny", api_key="secret").to_dict()


def test_page_images_of_untrusted_pdfs_render_in_the_worker(
    internvl_tiny_engine: Any, pdf_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # render_backend "auto" (the default): PDF pages, the attached page images included, go through the bounded
    # worker process; only the page-count probe (which renders nothing) opens the PDF in this process.
    render_pages = internvl_tools.render_pages
    backends: list[str] = []

    def recording(*args: Any, **kwargs: Any) -> Any:
        backends.append(kwargs.get("backend", "auto"))
        return render_pages(*args, **kwargs)

    monkeypatch.setattr(internvl_tools, "render_pages", recording)
    reader = InternVLPDFReader(engine=internvl_tiny_engine, dpi=36, max_new_tokens=2, progress=False, pages="1")
    [doc] = reader.load_data(pdf_path)
    assert doc.image_resource is not None and doc.image_resource.data is not None
    assert backends == ["thread", "auto"]  # the probe, then the page image


class FlakyEngine(internvl_tools.VisionLanguageModel):
    """Delegates to a real engine but fails on greenish-red pages (page 2 of ``internvl_scanned_pdf``)."""

    def __init__(self, inner: Any) -> None:
        self.inner = inner
        self.model_name = inner.model_name
        self.media_policy = inner.media_policy

    @property
    def info(self) -> Any:
        return self.inner.info

    def _check(self, messages: Any) -> None:
        image = messages[0]["content"][0]["image"]
        red = image.convert("RGB").resize((1, 1)).getpixel((0, 0))[0]
        if 20 <= red <= 60:
            raise internvl_tools.GenerationError("simulated failure on this page")

    def chat(self, messages: Any, **gen: Any) -> Any:
        self._check(messages)
        return self.inner.chat(messages, **gen)

    def batch(self, conversations: Any, *, batch_size: int = 8, **gen: Any) -> Any:
        for conversation in conversations:
            self._check(conversation)
        return self.inner.batch(conversations, batch_size=batch_size, **gen)

    def stream(self, messages: Any, **gen: Any) -> Any:
        return self.inner.stream(messages, **gen)

    def generate_structured(self, messages: Any, json_schema: dict, **gen: Any) -> Any:
        self._check(messages)
        return self.inner.generate_structured(messages, json_schema, **gen)


def test_a_failed_page_is_flagged_and_the_run_continues(internvl_tiny_engine: Any, pdf_path: Path) -> None:
    reader = InternVLPDFReader(
        engine=FlakyEngine(internvl_tiny_engine), dpi=36, max_new_tokens=4, progress=False, render_backend="thread"
    )
    docs = reader.load_data(pdf_path)
    assert [d.metadata["page_number"] for d in docs] == [1, 2, 3]
    assert [("error" in d.metadata) for d in docs] == [False, True, False]
    failed = docs[1]
    assert failed.text == "" and "simulated failure" in failed.metadata["error"]
    assert failed.metadata["error_type"] == "GenerationError"
    assert "error" in failed.excluded_embed_metadata_keys


def test_schema_task_gives_the_fields_as_json(internvl_tiny_engine: Any, pdf_path: Path) -> None:
    reader = InternVLPDFReader(
        engine=internvl_tiny_engine,
        task=Invoice,
        dpi=36,
        max_new_tokens=40,
        pages="1",
        progress=False,
        render_backend="thread",
    )
    [doc] = reader.load_data(pdf_path)
    assert "error" not in doc.metadata, doc.metadata.get("error")
    assert doc.metadata["task"] == "Invoice"
    Invoice.model_validate(json.loads(doc.text))


def test_reader_pickles_settings_not_the_model(internvl_tiny_path: str, pdf_path: Path) -> None:
    reader = InternVLPDFReader(
        model=internvl_tiny_path,
        task="chart",
        dpi=36,
        max_new_tokens=4,
        progress=False,
        render_backend="thread",
        pages="1",
    )
    reader.engine.load()
    clone = pickle.loads(pickle.dumps(reader))
    assert clone._engine is None
    assert (clone.model, clone.task, clone.dpi, clone.pages) == (internvl_tiny_path, "chart", 36, "1")
    [doc] = clone.load_data(pdf_path)
    assert doc.metadata["task"] == "chart"
    assert clone.engine.model is reader.engine.model  # rebuilt engine shares the loaded weights


# ---------------------------------------------------------------------------------------------------- LlamaIndex


def test_simple_directory_reader_routes_pdfs_and_images(
    reader: InternVLPDFReader, pdf_path: Path, tmp_path: Path
) -> None:
    png = _image_file(tmp_path, "photo.png", "PNG")
    (tmp_path / "notes.txt").write_text("plain text stays with the default reader")
    docs = SimpleDirectoryReader(input_dir=str(tmp_path), file_extractor={".pdf": reader, ".png": reader}).load_data()
    by_file: dict[str, list] = {}
    for doc in docs:
        by_file.setdefault(doc.metadata["file_name"], []).append(doc)
    assert sorted(by_file) == ["notes.txt", "photo.png", "scan.pdf"]
    assert [d.metadata["page_number"] for d in by_file["scan.pdf"]] == [1, 2, 3]
    [photo] = by_file["photo.png"]
    assert photo.metadata["total_pages"] == 1 and photo.metadata["file_size"] == png.stat().st_size
    assert photo.id_ == f"{photo.metadata['file_path']}#page=1"
    assert "last_modified_date" in photo.excluded_embed_metadata_keys  # SimpleDirectoryReader's exclusions kept
    assert "dpi" in by_file["scan.pdf"][0].excluded_embed_metadata_keys


def test_ingestion_pipeline_upserts_on_rerun(reader: InternVLPDFReader, pdf_path: Path) -> None:
    docstore = SimpleDocumentStore()
    vector_store = SimpleVectorStore()

    def pipeline() -> IngestionPipeline:
        return IngestionPipeline(
            readers=[ReaderConfig(reader=reader, reader_kwargs={"file": str(pdf_path)})],
            transformations=[SentenceSplitter(chunk_size=512), MockEmbedding(embed_dim=8)],
            docstore=docstore,
            vector_store=vector_store,
            docstore_strategy=DocstoreStrategy.UPSERTS,
        )

    first = pipeline().run()
    assert sorted(n.metadata["page_number"] for n in first) == [1, 2, 3]
    assert {n.ref_doc_id for n in first} == {f"{pdf_path}#page={k}" for k in (1, 2, 3)}
    stored = len(vector_store.data.embedding_dict)
    second = pipeline().run()
    assert second == []  # same pages, same ids, same hashes: nothing re-ingested
    assert len(docstore.docs) == 3 and len(vector_store.data.embedding_dict) == stored


def test_vector_index_returns_the_right_page_in_source_nodes(reader: InternVLPDFReader, pdf_path: Path) -> None:
    docs = reader.load_data(pdf_path)
    index = VectorStoreIndex.from_documents(docs, embed_model=MockEmbedding(embed_dim=8))
    filters = MetadataFilters(filters=[ExactMatchFilter(key="page_number", value=2)])
    # NoText built by as_query_engine ignores llm= and reaches for Settings.llm (OpenAI), so wire it by hand.
    engine = RetrieverQueryEngine(
        retriever=index.as_retriever(filters=filters, similarity_top_k=3), response_synthesizer=NoText(llm=MockLLM())
    )
    response = engine.query("What is on page 2?")
    assert response.source_nodes
    for hit in response.source_nodes:
        assert hit.node.metadata["page_number"] == 2 and hit.node.metadata["page_label"] == "2"
        assert hit.node.metadata["file_name"] == "scan.pdf"
        assert hit.node.ref_doc_id == f"{pdf_path}#page=2"
        assert hit.node.get_content().strip() == docs[1].text.strip()


def test_reads_through_an_fsspec_filesystem(reader: InternVLPDFReader, internvl_scanned_pdf: Any) -> None:
    from fsspec.implementations.memory import MemoryFileSystem

    fs = MemoryFileSystem()
    fs.pipe("/bucket/remote.pdf", internvl_scanned_pdf(2))
    docs = reader.load_data("/bucket/remote.pdf", fs=fs)
    pages = [(d.metadata["file_name"], d.metadata["page_number"]) for d in docs]
    assert pages == [("remote.pdf", 1), ("remote.pdf", 2)]
    assert docs[0].id_ == "/bucket/remote.pdf#page=1"
