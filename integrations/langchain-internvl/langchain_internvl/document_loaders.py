"""``InternVLPDFLoader``: scanned PDFs (and TIFFs / images) to one LangChain ``Document`` per page, read by InternVL.

>>> from langchain_internvl import InternVLPDFLoader
>>> loader = InternVLPDFLoader("scan.pdf", model="tiny")   # nothing is opened or loaded until lazy_load()
>>> loader.task
'ocr'
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from typing import Any, Literal

from langchain_core.document_loaders import BaseLoader
from langchain_core.documents import Document

from langchain_internvl._config import InternVLSettings

__all__ = ["InternVLPDFLoader"]


class InternVLPDFLoader(BaseLoader):
    """Load a PDF page by page: the page's Markdown transcription (OCR by InternVL) as ``page_content``.

    Metadata follows LangChain's PDF loaders: ``source`` (the path), ``page`` (0-based), ``page_label``,
    ``total_pages``, plus ``task``, ``model`` and, for pages that failed, ``error`` and ``error_type`` (e.g.
    ``ContextLengthError``; the page is still yielded, with empty content, so one bad page never stops a long
    document; ``skip_failed=True`` drops it instead).

    Args:
        file_path: the PDF (or multi-page TIFF / image).
        task: ``"ocr"`` (Markdown, default), ``"chart"``, ``"grounded_ocr"``, or a question string answered per page
            (``task="qa"`` with ``question=...`` is the same).
        pages: 1-based page selection, e.g. ``"1-3,7"``.
        dpi, password, batch_size, max_tokens: passed to the core's ``read_pdf``.
        engine / model / device / ...: which InternVL to use (see ``ChatInternVL``); weights are shared.
        mode: ``"page"`` (default): one ``Document`` per page. ``"chunks"``: the pages are read with
            ``task="layout"`` (when ``task`` is left at ``"ocr"``) and cut by the core's ``chunk_pages`` into
            ``Document`` s of at most ``chunk_size`` characters that never split a table or a list item; each keeps
            its provenance in metadata (JSON-serialisable): ``page`` (0-based), ``page_label``, ``source``,
            ``document_id``, ``chunk_index``, ``boxes`` (one ``[x1, y1, x2, y2]`` per block held, PDF points,
            origin top-left as viewers show the page, ``None`` where the model gave no box), ``block_kinds``,
            ``block_orders``, ``char_start`` / ``char_end`` (the chunk's place in the page's text) and
            ``page_size_pt``. Failed pages give no chunks. LangChain embeds ``page_content`` only, so provenance
            never reaches the embeddings; a text splitter copies it onto every piece.
        chunk_size: characters per chunk in ``mode="chunks"``.

    Example:
        .. code-block:: python

            from langchain_text_splitters import RecursiveCharacterTextSplitter
            docs = InternVLPDFLoader("scan.pdf", model="OpenGVLab/InternVL3-1B-hf").load()
            chunks = RecursiveCharacterTextSplitter(chunk_size=800).split_documents(docs)
    """

    def __init__(
        self,
        file_path: str | os.PathLike[str],
        *,
        task: str = "ocr",
        question: str | None = None,
        pages: Any = None,
        dpi: float | None = None,
        password: str | None = None,
        batch_size: int = 4,
        max_tokens: int | None = None,
        skip_failed: bool = False,
        mode: Literal["page", "chunks"] = "page",
        chunk_size: int = 1000,
        **engine_settings: Any,
    ) -> None:
        if mode not in ("page", "chunks"):
            raise ValueError(f"mode must be 'page' (one Document per page) or 'chunks', got {mode!r}.")
        self.mode = mode
        self.chunk_size = chunk_size
        if mode == "chunks" and task == "ocr" and question is None:
            task = "layout"  # chunks want blocks with boxes
        self.file_path = os.fspath(file_path)
        if task not in ("ocr", "chart", "grounded_ocr", "layout", "qa") and question is None:
            question, task = task, "qa"  # a free-form instruction is a per-page question
        if task == "qa" and not question:
            raise ValueError("task='qa' needs question='...'.")
        self.task = task
        self.question = question
        self.pages = pages
        self.dpi = dpi
        self.password = password
        self.batch_size = batch_size
        self.max_tokens = max_tokens
        self.skip_failed = skip_failed
        self.settings = InternVLSettings(**engine_settings)

    def lazy_load(self) -> Iterator[Document]:
        """Yield one ``Document`` per selected page, in page order, as each page is read."""
        from internvl_tools import render_pages

        # The document's page count for metadata (opening is cheap; nothing is rendered here).
        with render_pages(self.file_path, password=self.password, backend="thread") as probe:
            total = probe.page_count or 1
        engine = self.settings.get_engine()
        kwargs: dict[str, Any] = {
            "pages": self.pages,
            "dpi": self.dpi,
            "password": self.password,
            "batch_size": self.batch_size,
            "progress": False,
            "max_new_tokens": self.max_tokens,
        }
        if self.task == "qa":
            kwargs["question"] = self.question
        else:
            kwargs["task"] = self.task
        if self.mode == "chunks":
            yield from self._chunks(engine.read_pdf(self.file_path, **kwargs), total)
            return
        for result in engine.read_pdf(self.file_path, **kwargs):
            if not result.ok and self.skip_failed:
                continue
            metadata: dict[str, Any] = {
                "source": self.file_path,
                "page": result.page - 1,
                "page_label": result.label,
                "total_pages": total,
                "task": result.task,
                "model": result.model or self.settings.model,
            }
            if self.question:
                metadata["question"] = self.question
            if not result.ok:  # not read: no content, even where a failed parse kept the raw answer
                metadata["error"] = result.error or "generation failed"
                metadata["error_type"] = result.error_type or "GenerationError"
            yield Document(page_content=(result.text or "") if result.ok else "", metadata=metadata)

    def _chunks(self, results: Iterator[Any], total: int) -> Iterator[Document]:
        """One ``Document`` per chunk, page by page as pages are read, with provenance in metadata."""
        from internvl_tools import chunk_pages

        index = 0
        for result in results:
            if not result.ok:
                continue
            for chunk in chunk_pages([result], max_chars=self.chunk_size, source=self.file_path):
                metadata = chunk.metadata()
                metadata.update(
                    chunk_index=index,
                    page=result.page - 1,  # 0-based, as LangChain's PDF loaders
                    total_pages=total,
                    task=result.task,
                    model=result.model or self.settings.model,
                )
                index += 1
                yield Document(page_content=chunk.text, metadata=metadata)
