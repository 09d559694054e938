"""Whole corpora on Ray Data: :func:`read_corpus` (a ``ray.data.Dataset`` of page records to compose) and
:func:`ingest` (one call: records written per document, resumable, a :class:`CorpusSummary` back).

Ray is imported only when one of them is called (``pip install 'internvl-tools[ray]'``).
"""

from __future__ import annotations

import os
import time
from typing import Any

from pydantic import BaseModel, Field, computed_field

from internvl_tools.constants import DEFAULT_MODEL
from internvl_tools.corpus.inputs import expand_inputs
from internvl_tools.corpus.stages import PageReader, load_engine, split_documents
from internvl_tools.corpus.store import CorpusStore
from internvl_tools.documents.options import ReadOptions
from internvl_tools.documents.sizing import tile_grid_for
from internvl_tools.errors import ConfigError, DependencyMissingError

__all__ = ["DEFAULT_ACTOR_CPUS", "DEFAULT_RENDER_CPUS", "CorpusSummary", "ingest", "read_corpus"]

#: CPUs each inference actor asks for: a fraction, so two actors and the render tasks fit a 2-core machine.
DEFAULT_ACTOR_CPUS = 0.5
#: CPUs each render task asks for.
DEFAULT_RENDER_CPUS = 0.5
_LOST = "its worker died on every attempt ({attempts}); rerun ingest into the same output to read it again"


class CorpusSummary(BaseModel):
    """Counts of one :func:`ingest` run. ``pages_skipped`` were already in ``output`` (resume); ``pages_failed``
    includes pages whose worker died on every attempt; ``failures`` maps each failed document's source to its
    error type (``PasswordError``, ``DocumentError``, ...) or, for failed pages, to ``"pages: 3, 7"``."""

    output: str
    documents: int = 0
    documents_failed: int = 0
    pages_ok: int = 0
    pages_failed: int = 0
    pages_skipped: int = 0
    failures: dict[str, str] = Field(default_factory=dict)
    elapsed: float = 0.0

    @computed_field  # type: ignore[prop-decorator]
    @property
    def pages_per_second(self) -> float:
        done = self.pages_ok + self.pages_failed
        return done / self.elapsed if self.elapsed > 0 else 0.0

    def __str__(self) -> str:
        return (
            f"{self.documents} documents ({self.documents_failed} failed), {self.pages_ok} pages ok, "
            f"{self.pages_failed} failed, {self.pages_skipped} skipped (resumed), {self.elapsed:.1f} s, "
            f"{self.pages_per_second:.2f} pages/s -> {self.output}"
        )


def _ray() -> Any:
    try:
        import ray
        import ray.data
    except ImportError as exc:
        raise DependencyMissingError("Corpus ingestion runs on Ray Data: pip install 'internvl-tools[ray]'.") from exc
    return ray


def _inputs_dataset(ray: Any, inputs: Any) -> Any:
    if isinstance(inputs, ray.data.Dataset):
        return inputs
    paths = expand_inputs(inputs)
    if not paths:
        raise ConfigError("no documents found in the inputs; pass PDF/TIFF/image files, directories or globs.")
    return ray.data.from_items([{"path": p} for p in paths], override_num_blocks=len(paths))


def _tile_grid(engine: Any) -> tuple[int, int] | None:
    try:
        return tile_grid_for(load_engine(engine))
    except Exception:  # a remote server does not say its tile size: render as read_pdf does for it
        return None


def _work(
    inputs: Any,
    *,
    model: Any,
    output: str | None,
    format: str,
    workers: int,
    num_cpus: float,
    num_gpus: float,
    render_cpus: float,
    max_attempts: int,
    options: ReadOptions,
) -> Any:
    ray = _ray()
    if not isinstance(workers, int) or workers < 1:
        raise ConfigError(f"workers must be an int >= 1 (inference actors), got {workers!r}.")
    if not isinstance(max_attempts, int) or max_attempts < 1:
        raise ConfigError(f"max_attempts must be an int >= 1, got {max_attempts!r}.")
    if options.top_pages is not None:
        raise ConfigError("top_pages ranks pages within one document; use read_pdf for it, not a corpus run.")
    if not ray.is_initialized():
        ray.init(address=os.environ.get("RAY_ADDRESS"), include_dashboard=False, log_to_driver=False)
    store_root = str(CorpusStore(output, format).root) if output is not None else None
    policy = options.policy
    ds = _inputs_dataset(ray, inputs).map_batches(
        split_documents,
        batch_size=1,
        batch_format="pyarrow",
        num_cpus=render_cpus,
        fn_kwargs={
            "options": options,
            "store_root": store_root,
            "store_format": format,
            "tile_grid": _tile_grid(model),
            "policy": policy,
        },
    )
    return ds.map_batches(
        PageReader,
        fn_constructor_kwargs={"engine": model, "options": options, "store_root": store_root, "store_format": format},
        batch_size=options.batch_size,
        batch_format="pyarrow",
        compute=ray.data.ActorPoolStrategy(size=workers),
        num_cpus=num_cpus,
        num_gpus=num_gpus,
        max_restarts=max_attempts - 1,
        max_task_retries=max_attempts - 1,
    )


def read_corpus(
    inputs: Any,
    *,
    model: Any = DEFAULT_MODEL,
    output: str | os.PathLike | None = None,
    format: str = "jsonl",
    workers: int = 1,
    num_cpus: float = DEFAULT_ACTOR_CPUS,
    num_gpus: float = 0,
    render_cpus: float = DEFAULT_RENDER_CPUS,
    max_attempts: int = 3,
    options: ReadOptions | None = None,
    **read_options: Any,
) -> Any:
    """A lazy ``ray.data.Dataset`` of page records (:mod:`.records`: ``PageResult``'s fields, ``source``,
    ``document_id``; ``page == 0`` for a document that could not be opened) for the documents in ``inputs``.

    ``inputs``: paths, directories, globs, or a ``ray.data.Dataset`` with a ``path`` column (local paths or URIs
    pyarrow's filesystems open, e.g. ``s3://``) or a ``bytes`` column. ``model``: an
    :class:`~internvl_tools.engines.settings.EngineSettings` (local weights, or ``base_url`` of a vLLM / LMDeploy
    / ``internvl-tools serve`` server), a model name, or a zero-argument callable that builds an engine; each of the
    ``workers`` actors builds one, with ``num_cpus`` / ``num_gpus`` each. ``output``: when given, pages already in it
    are skipped and each page read is written there at once (see :func:`ingest`). The task and the rest:
    ``read_pdf``'s options (``task``, ``question``, ``pages``, ``dpi``, ``batch_size``, ...) or ``options=``.
    Ray is initialised when it is not (locally, or ``$RAY_ADDRESS``); call ``ray.init`` first to choose.
    """
    opts = ReadOptions(progress=False, **read_options) if options is None else options
    ds = _work(
        inputs,
        model=model,
        output=None if output is None else os.fspath(output),
        format=format,
        workers=workers,
        num_cpus=num_cpus,
        num_gpus=num_gpus,
        render_cpus=render_cpus,
        max_attempts=max_attempts,
        options=opts,
    )
    return ds.filter(lambda row: row["status"] != "skipped").drop_columns(["status", "skipped"])


def ingest(
    inputs: Any,
    output: str | os.PathLike,
    *,
    model: Any = DEFAULT_MODEL,
    format: str = "jsonl",
    workers: int = 1,
    num_cpus: float = DEFAULT_ACTOR_CPUS,
    num_gpus: float = 0,
    render_cpus: float = DEFAULT_RENDER_CPUS,
    max_attempts: int = 3,
    progress: bool | None = None,
    options: ReadOptions | None = None,
    **read_options: Any,
) -> CorpusSummary:
    """Read every page of every document in ``inputs`` into ``output``: one file per document
    (``{document_id}.jsonl`` or ``.parquet``, written atomically), and return a :class:`CorpusSummary`.

    Nothing lost, nothing twice: a rerun into the same ``output`` skips documents already complete and, for a
    document cut mid-way, the pages already written (each page is saved as soon as it is read). A document that
    cannot be opened (corrupt, encrypted) is recorded as failed (``page 0``, its ``error_type``) and the run goes
    on. A worker actor that dies is restarted and its batch retried, up to ``max_attempts`` in all; pages still
    unread then are recorded failed (``WorkerLostError``) and a rerun reads them. Other arguments: :func:`read_corpus`.
    """
    ray = _ray()
    opts = ReadOptions(progress=False, **read_options) if options is None else options
    store = CorpusStore(output, format)
    summary = CorpusSummary(output=str(store.root))
    started = time.perf_counter()
    context = ray.data.DataContext.get_current()
    saved = context.max_errored_blocks
    context.max_errored_blocks = -1  # a batch whose worker died max_attempts times is recorded, not fatal
    show = progress if progress is not None else opts.show_progress
    bar = None
    seen: set[str] = set()
    try:
        ds = _work(
            inputs,
            model=model,
            output=os.fspath(output),
            format=format,
            workers=workers,
            num_cpus=num_cpus,
            num_gpus=num_gpus,
            render_cpus=render_cpus,
            max_attempts=max_attempts,
            options=opts,
        )
        if show:
            from tqdm.auto import tqdm

            bar = tqdm(unit="page", desc="ingest")
        for batch in ds.iter_batches(batch_format="pyarrow", batch_size=None):
            for row in batch.select(["document_id", "source", "status", "skipped", "ok", "page"]).to_pylist():
                seen.add(row["document_id"])
                if row["status"] == "skipped":
                    summary.pages_skipped += row["skipped"]
                elif row["status"] == "failed":
                    summary.failures[row["source"]] = "document"
                elif row["ok"]:
                    summary.pages_ok += 1
                else:
                    summary.pages_failed += 1
                if bar is not None:
                    bar.update(1 if row["status"] == "read" else 0)
                    bar.set_postfix(documents=len(seen), failed=summary.pages_failed)
    finally:
        context.max_errored_blocks = saved
        if bar is not None:
            bar.close()
    lost = _LOST.format(attempts=max_attempts)
    for doc_id in store.pending():
        rows = store.finalize(doc_id, lost_error=lost)
        seen.add(doc_id)
        failed_pages = [r["page"] for r in rows if not r["ok"] and r["page"]]
        summary.pages_failed += sum(r["error_type"] == "WorkerLostError" for r in rows)
        source = rows[0]["source"] if rows else doc_id
        if rows and rows[0]["page"] == 0:
            summary.documents_failed += 1
            summary.failures[source] = rows[0]["error_type"]
        elif failed_pages:
            summary.failures[source] = "pages: " + ", ".join(map(str, failed_pages))
    summary.documents = len(seen)
    summary.elapsed = time.perf_counter() - started
    return summary
