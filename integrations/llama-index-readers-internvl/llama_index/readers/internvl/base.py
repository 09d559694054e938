"""``InternVLPDFReader``: scanned PDFs, TIFFs and images → one LlamaIndex ``Document`` per page, read by InternVL.

>>> from llama_index.readers.internvl import InternVLPDFReader
>>> reader = InternVLPDFReader(model="tiny", dpi=50, max_new_tokens=16)   # cheap: no weights load here
>>> docs = reader.load_data("scan.pdf")                                    # doctest: +SKIP
>>> docs[0].metadata["page_number"], docs[0].id_                           # doctest: +SKIP
(1, 'scan.pdf#page=1')
"""

from __future__ import annotations

import hashlib
import io
import json
import os
import tempfile
from collections.abc import Iterable
from pathlib import Path
from typing import Any, Literal

from llama_index.core.bridge.pydantic import Field, PrivateAttr, SecretStr
from llama_index.core.readers.base import BasePydanticReader
from llama_index.core.schema import Document, MediaResource

import internvl_tools
from internvl_tools import EngineSettings
from internvl_tools.constants import DEFAULT_MODEL
from internvl_tools.media import confine_path

__all__ = [
    "CHUNK_METADATA_KEYS",
    "DEFAULT_MODEL",
    "EXTRA_METADATA_KEYS",
    "SUPPORTED_EXTENSIONS",
    "InternVLPDFReader",
]

#: Our bookkeeping keys: kept in metadata, hidden from embeddings and from the LLM's context.
EXTRA_METADATA_KEYS = ("dpi", "model", "task", "image_size", "error", "error_type", "finish_reason")

#: Provenance of ``mode="chunks"`` (hidden from embeddings and the LLM too). ``boxes``, ``block_kinds``,
#: ``block_orders`` and ``page_size_pt`` are JSON strings, so vector stores that take flat metadata only keep them.
CHUNK_METADATA_KEYS = (
    "document_id",
    "chunk_index",
    "boxes",
    "block_kinds",
    "block_orders",
    "char_start",
    "char_end",
    "page_size_pt",
)

#: File types the reader takes (``SimpleDirectoryReader(file_extractor={ext: reader for ext in ...})``).
SUPPORTED_EXTENSIONS = (".pdf", ".png", ".jpg", ".jpeg", ".tif", ".tiff", ".webp", ".bmp")


def _is_pdf(source: Any) -> bool:
    if isinstance(source, bytes):
        head = source[:1024]
    else:
        with open(source, "rb") as handle:
            head = handle.read(1024)
    return b"%PDF-" in head


def _task_name(task: Any) -> str:
    if isinstance(task, str):
        return task
    if isinstance(task, dict):
        return str(task.get("title") or "schema")
    return getattr(task, "__name__", "schema")


class InternVLPDFReader(EngineSettings, BasePydanticReader):
    """Read every page of a PDF (or a multi-page TIFF, or a PNG/JPEG as one page) with an InternVL model.

    Each page becomes a ``Document`` whose text is the task's answer: Markdown OCR (``task="ocr"``, default), a
    chart description plus its data table (``"chart"``), an answer to ``question``, or, for a pydantic model or
    JSON-schema ``task``, the page's fields as JSON (constrained decoding).

    Metadata: ``file_path``, ``file_name``, ``page_label`` (the PDF's printed label), ``page_number`` (1-based),
    ``total_pages``; plus ``task``, ``model``, ``dpi`` (hidden from embeddings and the LLM) and, for a page that
    failed, ``error`` / ``error_type`` (the run goes on). ``extra_info`` is merged in (the caller's values win,
    except the page keys). Ids are ``f"{file_path}#page={n}"`` so re-ingesting a file upserts its pages.

    ``mode="chunks"`` yields chunks instead of pages: read with ``task="layout"`` (when ``task`` is left at
    ``"ocr"``), cut by the core's :func:`internvl_tools.chunk_pages` into at most ``chunk_size`` characters without
    splitting a table or a list item. Each chunk keeps the page keys above plus its provenance
    (:data:`CHUNK_METADATA_KEYS`): ``document_id`` (the file path), ``chunk_index``, ``boxes`` (JSON: one ``[x1, y1,
    x2, y2]`` per block it holds, in PDF points with the origin top-left as viewers show the page, ``null`` where the
    model gave no box), ``block_kinds``, ``block_orders``, ``char_start``/``char_end`` and ``page_size_pt``. These
    are hidden from embeddings and the LLM; ids are ``f"{file_path}#page={n}&chunk={i}"`` so re-ingesting upserts.
    Chunks carry no page image, and failed pages give no chunks.

    The page image is attached as ``Document.image_resource``: PNG bytes (``page_images="bytes"``, default), a PNG
    file in ``image_dir`` (``"path"``), or nothing (``"none"``); never base64 in metadata.

    ``allowed_dirs`` confines local paths as the LangChain tools' option does: a path must resolve (symlinks
    followed, ``..`` folded) inside one of them, else :class:`~internvl_tools.PathNotAllowedError`. It is off
    (``None``) by default, as a reader is given paths by its own program; set it when the paths come from users or
    agents. Either way a path must name a regular file: a FIFO, device or directory, a symlink loop, a NUL byte or an
    over-long name raise a typed :class:`~internvl_tools.MediaError` naming the problem. Bytes and files read
    through a non-local fsspec ``fs`` are not local paths and are not confined.

    The engine and media fields (``model``, ``base_url``, ``api_key``, ``device``, ``dtype``, ``max_tiles``,
    ``trust_remote_code``, ``engine_kwargs``, ``allowed_dirs``, ``allow_local_files``, ``allow_remote_urls``,
    ``allow_private_hosts``, ``media_policy``) are the core's :class:`internvl_tools.EngineSettings`, the same names
    as in the LlamaIndex LLM and LangChain; the engine is built by its ``build_engine``.

    The reader holds settings only: it pickles (``SimpleDirectoryReader(num_workers=...)``) and builds its engine on
    first use; weights are shared process-wide with every other engine on the same checkpoint. Pass ``engine=`` to
    reuse an existing engine (``internvl_tools.InternVL``, a server backend, or the LlamaIndex LLM's ``.engine``).
    """

    is_remote: bool = False
    api_key: SecretStr | None = Field(default=None, exclude=True, repr=False, description="Server API key.")
    task: Any = Field(default="ocr", description="'ocr', 'chart', 'qa' or a pydantic model / JSON schema.")
    question: str | None = Field(default=None, description="Answer this question on every page.")
    pages: str | None = Field(default=None, description="1-based page selection such as '1-3,7'.")
    dpi: float | None = Field(default=None, description="Render resolution (default: fills the tile grid).")
    longest_side: int | None = Field(default=None, description="Render so the longest side has this many px.")
    password: str | None = Field(default=None, exclude=True, repr=False)
    batch_size: int = Field(default=4, ge=1, description="Pages per batched generate.")
    max_new_tokens: int | None = Field(default=None, ge=1, description="Per page (default: per task).")
    generate_kwargs: dict[str, Any] = Field(default_factory=dict, description="Other generation options.")
    progress: bool | None = Field(default=None, description="tqdm bar (default: on in terminals/notebooks).")
    render_backend: Literal["auto", "thread", "process"] = Field(default="auto")
    page_images: Literal["bytes", "path", "none"] = Field(default="bytes")
    image_dir: str | None = Field(default=None, description="Where page PNGs go with page_images='path'.")
    mode: Literal["page", "chunks"] = Field(default="page", description="One Document per page, or per chunk.")
    chunk_size: int = Field(default=1000, ge=1, description="Characters per chunk with mode='chunks'.")

    _engine: Any = PrivateAttr(default=None)
    _owns_engine: bool = PrivateAttr(default=True)

    def __init__(self, engine: Any = None, **kwargs: Any) -> None:
        if engine is not None and "model" not in kwargs:
            kwargs["model"] = str(getattr(engine, "model_name", None) or DEFAULT_MODEL)
        super().__init__(**kwargs)
        if engine is not None:
            if not callable(getattr(engine, "read_pdf", None)):
                raise internvl_tools.ConfigError(
                    f"engine must offer the VisionLanguageModel API; {type(engine).__name__} has no read_pdf()."
                )
            self._engine = engine
            self._owns_engine = False

    @classmethod
    def class_name(cls) -> str:
        return "InternVLPDFReader"

    def __getstate__(self) -> dict[Any, Any]:
        # Settings travel, weights never do: a worker process builds (and shares) its own engine on first use.
        state = super().__getstate__()
        private = dict(state.get("__pydantic_private__") or {})
        private["_engine"] = None
        private["_owns_engine"] = True
        state["__pydantic_private__"] = private
        return state

    @property
    def engine(self) -> Any:
        if self._engine is None:
            # A server is asked which model it serves (GET /v1/models) unless a model other than the default is named.
            served = None if self.model == DEFAULT_MODEL else self.model
            self._engine = self.build_engine(server_model=served)
        return self._engine

    # ------------------------------------------------------------------------------------------------ reading

    def _source(self, file: Any, fs: Any) -> tuple[Any, str]:
        """What the core opens (a local path, or bytes read through ``fs``) and the path to report."""
        if isinstance(file, (bytes, bytearray)):
            return bytes(file), "<bytes>"
        path = os.fspath(file)
        local = fs is None or "file" in (getattr(fs, "protocol", ()) or ())
        if local:
            policy = self.build_media_policy()
            if not policy.allow_local_files:
                raise internvl_tools.PathNotAllowedError(
                    f"Reading local files is disabled (allow_local_files=False); cannot read {os.fsdecode(path)!r}. "
                    "Pass the file's bytes, or set allowed_dirs."
                )
            # The core's one path check: inside allowed_dirs when set, and a regular file (no FIFO, device or
            # directory), with every path problem (loop, NUL byte, too long, ...) as a typed error.
            return str(confine_path(path, policy.allowed_dirs or None)), os.fsdecode(path)
        with fs.open(path, "rb") as handle:
            return handle.read(), str(path)

    def _page_image(self, source: Any, number: int, dpi: float | None, file_path: str) -> MediaResource | None:
        if self.page_images == "none":
            return None
        # Rendered like read_pdf renders for the model: "auto" (default) is the bounded worker process for PDFs.
        with internvl_tools.render_pages(
            source,
            dpi=dpi,
            longest_side=self.longest_side,
            pages=[number],
            password=self.password,
            backend=self.render_backend,
        ) as stream:
            page = next(iter(stream), None)
        if page is None or page.image is None:
            return None
        buf = io.BytesIO()
        page.image.save(buf, format="PNG")
        data = buf.getvalue()
        if self.page_images == "bytes":
            return MediaResource(data=data, mimetype="image/png")
        folder = Path(self.image_dir or Path(tempfile.gettempdir()) / "internvl-pages")
        folder.mkdir(parents=True, exist_ok=True)
        key = hashlib.sha256(file_path.encode("utf-8")).hexdigest()[:12]
        target = folder / f"{Path(file_path).stem}-{key}-page{number}.png"
        target.write_bytes(data)
        return MediaResource(path=target, mimetype="image/png")

    def _text(self, result: Any) -> str:
        if not result.ok:  # not read: no text, even where a failed parse kept the raw answer
            return ""
        if not isinstance(self.task, str) and result.data is not None:
            return json.dumps(result.data, ensure_ascii=False, indent=2)
        return result.text or ""

    def lazy_load_data(  # type: ignore[override]
        self,
        file: str | os.PathLike | bytes,
        extra_info: dict[str, Any] | None = None,
        fs: Any = None,
    ) -> Iterable[Document]:
        """Yield one ``Document`` per selected page, in page order, as pages are read.

        ``extra_info`` (e.g. SimpleDirectoryReader's file metadata) is merged into every page's metadata; ``fs`` is
        an fsspec filesystem to read ``file`` from. Opening errors (missing file, wrong password, bad ``pages``)
        raise; a page that fails to render or generate yields a Document with ``error`` set and the run goes on.
        """
        source, file_path = self._source(file, fs)
        with internvl_tools.render_pages(source, pages=self.pages, password=self.password, backend="thread") as probe:
            total_pages = probe.page_count
        generation = dict(self.generate_kwargs)
        chunks = self.mode == "chunks"
        task = "layout" if chunks and self.task == "ocr" and self.question is None else self.task
        stream = self.engine.read_pdf(
            source,
            task=task,
            question=self.question,
            pages=self.pages,
            dpi=self.dpi,
            longest_side=self.longest_side,
            password=self.password,
            batch_size=self.batch_size,
            progress=self.progress,
            max_new_tokens=self.max_new_tokens,
            backend=self.render_backend,
            **generation,
        )
        base = {"file_path": file_path, "file_name": Path(file_path).name if file_path != "<bytes>" else file_path}
        base.update(extra_info or {})
        with stream:
            for result in stream:
                if chunks:
                    yield from self._chunk_documents(result, base, total_pages, task)
                else:
                    yield self._document(result, base, total_pages, source)

    def _chunk_documents(self, result: Any, base: dict[str, Any], total_pages: int, task: Any) -> list[Document]:
        if not result.ok:
            return []
        file_path = str(base["file_path"])
        documents = []
        for chunk in internvl_tools.chunk_pages([result], max_chars=self.chunk_size, source=file_path):
            provenance = chunk.metadata()
            metadata = dict(base)
            metadata.update(
                {
                    "page_label": str(result.label),
                    "page_number": int(result.page),
                    "total_pages": int(total_pages),
                    "task": _task_name(task),
                    "model": result.model or self.model,
                    "dpi": result.dpi,
                }
            )
            for key in CHUNK_METADATA_KEYS:
                value = provenance.get(key)
                metadata[key] = json.dumps(value) if isinstance(value, list) else value
            hidden = [key for key in (*EXTRA_METADATA_KEYS, *CHUNK_METADATA_KEYS) if key in metadata]
            documents.append(
                Document(
                    id_=chunk.id,
                    text=chunk.text,
                    metadata=metadata,
                    excluded_embed_metadata_keys=list(hidden),
                    excluded_llm_metadata_keys=list(hidden),
                )
            )
        return documents

    def _document(self, result: Any, base: dict[str, Any], total_pages: int, source: Any) -> Document:
        metadata = dict(base)
        metadata.update(
            {
                "page_label": str(result.label),
                "page_number": int(result.page),
                "total_pages": int(total_pages),
                "task": _task_name(self.task),
                "model": result.model or self.model,
                "dpi": result.dpi,
            }
        )
        if result.image_size is not None:
            metadata["image_size"] = f"{result.image_size[0]}x{result.image_size[1]}"
        if not result.ok:
            metadata["error"] = result.error or "generation failed"
            metadata["error_type"] = result.error_type or "GenerationError"
        elif result.finish_reason:
            metadata["finish_reason"] = result.finish_reason
        image = None
        if result.ok or result.image_size is not None:
            # Re-render at the resolution the model saw: PDFs at the dpi read_pdf chose; images keep their pixels.
            dpi = self.dpi
            if dpi is None and _is_pdf(source):
                dpi = result.dpi
            try:
                image = self._page_image(source, result.page, dpi, str(metadata["file_path"]))
            except Exception:  # the page's text matters more than its picture
                image = None
        hidden = [key for key in EXTRA_METADATA_KEYS if key in metadata]
        return Document(
            id_=f"{metadata['file_path']}#page={result.page}",
            text=self._text(result),
            metadata=metadata,
            image_resource=image,
            excluded_embed_metadata_keys=list(hidden),
            excluded_llm_metadata_keys=list(hidden),
        )
