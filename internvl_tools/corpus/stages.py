"""The two Ray Data stages of a corpus run, as plain functions and one actor class (Ray is not imported here).

:func:`split_documents` (Ray tasks, CPU): each input document is read, given its :func:`~.inputs.document_id`,
opened and rendered page by page with :func:`~internvl_tools.documents.render_pages` (the size rule ``read_pdf``
uses), skipping pages the output already holds. :class:`PageReader` (an actor pool): each actor builds one engine
from :class:`~internvl_tools.engines.settings.EngineSettings` and reads batches of rendered pages with
:func:`~internvl_tools.documents.read_rendered`, writing each page's record to the output as soon as it is read.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from internvl_tools.corpus.inputs import document_id
from internvl_tools.corpus.records import document_failure_row, record_row, record_schema, rendered_page, rendered_row
from internvl_tools.corpus.store import CorpusStore
from internvl_tools.documents.options import ReadOptions
from internvl_tools.documents.pipeline import read_rendered
from internvl_tools.documents.render import render_pages
from internvl_tools.documents.sources import open_source, page_count, parse_pages
from internvl_tools.media.policy import MediaPolicy

if TYPE_CHECKING:
    from internvl_tools.engines.settings import EngineSettings

__all__ = ["PageReader", "load_engine", "output_schema", "split_documents", "work_schema"]


def work_schema() -> Any:
    """Rows between the stages: a rendered page (``status="page"``), or a note about a whole document:
    ``"skipped"`` (``skipped`` pages already done) or ``"failed"`` (it could not be opened)."""
    import pyarrow as pa

    return pa.schema(
        [
            ("document_id", pa.string()),
            ("source", pa.string()),
            ("status", pa.string()),
            ("skipped", pa.int64()),
            ("page", pa.int64()),
            ("label", pa.string()),
            ("width_pt", pa.float64()),
            ("height_pt", pa.float64()),
            ("scale", pa.float64()),
            ("rotation", pa.int64()),
            ("png", pa.binary()),
            ("render_error", pa.string()),
            ("render_error_type", pa.string()),
            ("error", pa.string()),
            ("error_type", pa.string()),
        ]
    )


def output_schema() -> Any:
    """Rows the actors return: page records (:func:`~.records.record_schema`) plus ``status`` and ``skipped``."""
    import pyarrow as pa

    schema = record_schema()
    return schema.append(pa.field("status", pa.string())).append(pa.field("skipped", pa.int64()))


def _read_bytes(item: dict[str, Any]) -> tuple[bytes, str]:
    data, path = item.get("bytes"), item.get("path")
    if data is not None:
        return bytes(data), str(path or item.get("source") or "")
    if path is None:
        raise ValueError("each input row needs a 'path' or 'bytes' column")
    if "://" in str(path):
        import pyarrow.fs as pafs

        fs, inner = pafs.FileSystem.from_uri(str(path))
        with fs.open_input_stream(inner) as fh:
            return fh.read(), str(path)
    with open(path, "rb") as fh:
        return fh.read(), str(path)


def _split_one(
    item: dict[str, Any],
    options: ReadOptions,
    store: CorpusStore | None,
    tile_grid: tuple[int, int] | None,
    policy: MediaPolicy | None,
) -> list[dict[str, Any]]:
    data, source = _read_bytes(item)
    doc_id = document_id(data)
    source = source or doc_id
    note = {"document_id": doc_id, "source": source}
    task = options.task_name
    if store is not None and not store.read_manifest(doc_id):
        rows = store.read_document(doc_id)
        if rows and all(r["ok"] and r["page"] and r["task"] == task for r in rows):
            return [{**note, "status": "skipped", "skipped": len(rows)}]
    try:
        src = open_source(data)
        count = page_count(src, options.password, policy=policy)
        selected = [i + 1 for i in parse_pages(options.pages, count)] if count or options.pages is not None else []
    except Exception as exc:
        failure = document_failure_row(
            source=source, document_id=doc_id, task=task, error_type=type(exc).__name__, error=str(exc)
        )
        if store is not None:
            store.write_manifest(doc_id, {"source": source, "task": task, "failure": failure})
        return [{**note, "status": "failed", "error": failure["error"], "error_type": failure["error_type"]}]
    done: set[int] = set()
    if store is not None:
        done = store.done_pages(doc_id, task) & set(selected)
        store.write_manifest(doc_id, {"source": source, "task": task, "pages": selected})
    out = [{**note, "status": "skipped", "skipped": len(done)}] if done else []
    todo = [n for n in selected if n not in done]
    if not todo:
        return out
    fixed = options.dpi is not None or options.longest_side is not None
    with render_pages(
        src,
        options.dpi,
        options.longest_side,
        pages=todo,
        password=options.password,
        backend=options.backend,
        prefetch=options.render_prefetch,
        tile_grid=None if fixed or src.kind != "pdf" else tile_grid,
        policy=policy,
        page_timeout=options.page_timeout,
        page_memory_mb=options.page_memory_mb,
    ) as pages:
        out.extend({**note, "status": "page", **rendered_row(page)} for page in pages)
    return out


def split_documents(
    batch: Any,
    *,
    options: ReadOptions,
    store_root: str | None,
    store_format: str,
    tile_grid: tuple[int, int] | None,
    policy: MediaPolicy | None,
) -> Any:
    """Ray Data ``map_batches`` function (``batch_format="pyarrow"``): input documents → :func:`work_schema` rows."""
    import pyarrow as pa

    store = CorpusStore(store_root, store_format) if store_root else None
    rows: list[dict[str, Any]] = []
    for item in batch.to_pylist():
        rows.extend(_split_one(item, options, store, tile_grid, policy))
    return pa.Table.from_pylist(rows, schema=work_schema())


def load_engine(engine: Any) -> Any:
    """An engine from :class:`~internvl_tools.engines.settings.EngineSettings`, a model name, or a zero-argument
    callable returning one (built where it is called: inside each actor)."""
    from internvl_tools.engines.settings import EngineSettings

    if isinstance(engine, EngineSettings):
        return engine.build_engine()
    if isinstance(engine, str):
        return EngineSettings(model=engine).build_engine()
    if callable(engine):
        return engine()
    raise TypeError(f"engine must be EngineSettings, a model name or a callable, got {type(engine).__name__}")


class PageReader:
    """The actor of the inference stage: one engine per actor, batches of rendered pages in, page records out."""

    def __init__(
        self,
        engine: EngineSettings | str | Callable[[], Any],
        options: ReadOptions,
        store_root: str | None,
        store_format: str,
    ) -> None:
        self.engine = load_engine(engine)
        if hasattr(self.engine, "load"):
            self.engine.load()
        self.options = options
        self.store = CorpusStore(store_root, store_format) if store_root else None

    def __call__(self, batch: Any) -> Any:
        import pyarrow as pa

        rows = batch.to_pylist()
        todo = [r for r in rows if r["status"] == "page"]
        results = read_rendered(self.engine, [rendered_page(r) for r in todo], self.options) if todo else []
        out: list[dict[str, Any]] = []
        for row, result in zip(todo, results, strict=True):
            record = record_row(result, source=row["source"], document_id=row["document_id"])
            if self.store is not None:
                self.store.write_page(record)
            out.append({**record, "status": "read", "skipped": 0})
        task = self.options.task_name
        for row in rows:
            if row["status"] == "skipped":
                out.append(
                    {
                        "document_id": row["document_id"],
                        "source": row["source"],
                        "status": "skipped",
                        "skipped": row["skipped"],
                        "page": -1,
                        "task": task,
                        "ok": True,
                        "warnings": [],
                    }
                )
            elif row["status"] == "failed":
                failure = document_failure_row(
                    source=row["source"],
                    document_id=row["document_id"],
                    task=task,
                    error_type=row["error_type"],
                    error="",
                )
                out.append({**failure, "error": row["error"], "status": "failed", "skipped": 0})
        return pa.Table.from_pylist(out, schema=output_schema())
