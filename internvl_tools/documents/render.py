"""Render document pages to images lazily, at a resolution chosen for InternVL's tiling, in bounded memory.

PDFium (through pypdfium2) is not thread-safe, even across documents, and a hostile PDF can ask it for gigabytes
and minutes (3 million drawing operations in 76 KB). PDFs are therefore rendered by default in a **worker
process** (:mod:`.worker`) started with ``python -c`` (it never re-imports the caller's ``__main__``, so scripts
need no ``if __name__ == "__main__":`` guard), where the kernel bounds each page's memory and CPU time and a crash
costs one page, not the caller. The **thread** backend (one thread holding :data:`~.sources.PDFIUM_LOCK`) is
faster but unbounded: it is the default for images, whose decoding :func:`~internvl_tools.media.open_image`
bounds, and an opt-in for trusted PDFs. Pages travel through ``prefetch`` queue slots (thread) or a pipe (process,
one page ahead), so only a few rendered pages exist at a time, whatever the document's length.

>>> from PIL import Image
>>> [(p.number, p.size_px) for p in render_pages(Image.new("RGB", (40, 30)))]
[(1, (40, 30))]
"""

from __future__ import annotations

import contextlib
import queue as queue_mod
import threading
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Any, Literal

from PIL import Image

from internvl_tools.documents.rasterize import produce_pages
from internvl_tools.documents.sizing import (
    DEFAULT_PAGE_MEMORY_MB,
    DEFAULT_PAGE_TIMEOUT_S,
    MAX_PAGE_PIXELS,
    Backend,
    PageLimits,
    check_render_options,
)
from internvl_tools.documents.sources import PDFIUM_LOCK, DocumentSource, PageSpec, open_source, page_count, parse_pages
from internvl_tools.documents.worker import PageWorker, render_in_workers
from internvl_tools.errors import ConfigError, DocumentError, PageRenderError
from internvl_tools.media.policy import MediaPolicy

__all__ = ["RenderStream", "RenderedPage", "render_pages"]

#: ``backend="auto"`` renders PDFs with at least this many selected pages in the worker process: every PDF, since
#: only the worker can bound a hostile page's memory and time (issue 14). The thread path renders and tiles faster
#: on the 2-core dev box (``benchmarks/documents.py``); pass ``backend="thread"`` for trusted PDFs when speed
#: matters more than isolation.
PROCESS_MIN_PAGES = 1

_POLL_S = 0.2


@dataclass(frozen=True)
class RenderedPage:
    """One rendered page. ``number`` is 1-based; sizes are as displayed, i.e. after the page's ``/Rotate``.

    ``scale`` is pixels per point (``dpi / 72``) for PDFs and pixels per source pixel for images. When the page
    failed, ``image`` is ``None`` and ``error`` says why (``error_type`` names the exception class).
    """

    number: int
    label: str
    width_pt: float
    height_pt: float
    scale: float
    rotation: int = 0
    image: Image.Image | None = field(default=None, repr=False, compare=False)
    text: str | None = field(default=None, repr=False)
    error: str | None = None
    error_type: str | None = None

    @property
    def ok(self) -> bool:
        return self.error is None

    @property
    def dpi(self) -> float:
        return self.scale * 72.0

    @property
    def size_pt(self) -> tuple[float, float]:
        return (self.width_pt, self.height_pt)

    @property
    def size_px(self) -> tuple[int, int] | None:
        return None if self.image is None else self.image.size


# ---------------------------------------------------------------------------------------------------- transports

_DONE = "done"


def _put(q: Any, item: Any, stopped: Callable[[], bool]) -> bool:
    """Block until the bounded queue has room (that is the memory bound); give up when the consumer stopped."""
    while not stopped():
        try:
            q.put(item, timeout=_POLL_S)
            return True
        except queue_mod.Full:
            continue
    return False


class RenderStream(Iterator["RenderedPage"]):
    """Iterator over rendered pages (what :func:`render_pages` returns). Close it (or use ``with``) to stop early.

    ``len(stream)`` is the number of selected pages; ``page_count`` the document's; ``page_numbers`` the
    selected 1-based numbers in order; ``backend`` the transport actually used (``"process"`` or ``"thread"``).
    """

    def __init__(
        self,
        src: DocumentSource,
        password: str | None,
        indices: list[int],
        n_pages: int,
        opts: dict,
        backend: str,
        prefetch: int,
        on_error: str,
        limits: PageLimits | None = None,
    ) -> None:
        self.source = src
        self.page_count = n_pages
        self.page_numbers = [i + 1 for i in indices]
        self.backend = backend
        self._password = password
        self._indices = indices
        self._opts = opts
        self._prefetch = prefetch
        self._on_error = on_error
        self._limits = PageLimits() if limits is None else limits
        self._gen: Iterator[RenderedPage] | None = None
        self._closed = False
        self.process: PageWorker | None = None  # the current worker (process backend), for inspection and tests

    def __len__(self) -> int:
        return len(self._indices)

    def __iter__(self) -> RenderStream:
        return self

    def __next__(self) -> RenderedPage:
        if self._closed or not self._indices:
            raise StopIteration
        if self._gen is None:
            self._gen = self._run_process() if self.backend == "process" else self._run_thread()
        page = next(self._gen)
        if page.error is not None and self._on_error == "raise":
            self.close()
            raise PageRenderError(page.error)
        return page

    def close(self) -> None:
        """Stop rendering and release the worker (process or thread); safe to call twice."""
        self._closed = True
        if self._gen is not None:
            self._gen.close()  # type: ignore[attr-defined]

    def __enter__(self) -> RenderStream:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def __del__(self) -> None:
        with contextlib.suppress(Exception):
            self.close()

    # -- both backends: a producer thread fills a bounded queue, so pages render while the caller infers ------------

    def _prefetched(self, produce: Callable[[Callable[[], bool]], Iterator[dict]]) -> Iterator[RenderedPage]:
        q: queue_mod.Queue = queue_mod.Queue(maxsize=self._prefetch)
        stop = threading.Event()

        def work() -> None:
            items = produce(stop.is_set)
            try:
                for item in items:
                    if not _put(q, item, stop.is_set):
                        return
            except BaseException as exc:
                _put(q, {"fatal": f"{type(exc).__name__}: {exc}"}, stop.is_set)
                return
            finally:
                close = getattr(items, "close", None)
                if close is not None:
                    close()  # the process backend's generator stops (and reaps) its worker here
            _put(q, _DONE, stop.is_set)

        thread = threading.Thread(target=work, name=f"internvl-render-{self.backend}", daemon=True)
        thread.start()
        try:
            while True:
                item = q.get()
                if item == _DONE:
                    return
                if "fatal" in item:
                    raise DocumentError(f"Rendering {self.source.name} failed: {item['fatal']}")
                yield _to_page(item)
        finally:
            stop.set()
            with contextlib.suppress(queue_mod.Empty):
                while True:
                    q.get_nowait()
            if self.process is not None:  # unblock the reader at once, even in the middle of a slow page
                self.process.close()
            thread.join(timeout=5)

    def _run_thread(self) -> Iterator[RenderedPage]:
        return self._prefetched(
            lambda stopped: produce_pages(self.source, self._password, self._indices, self._opts, PDFIUM_LOCK, stopped)
        )

    def _run_process(self) -> Iterator[RenderedPage]:
        wire_opts = {k: v for k, v in self._opts.items() if k != "policy"}  # JSON-safe: numbers and flags only
        max_pixels = self._opts["max_pixels"]
        # The worker renders while this process infers: the reader thread keeps up to ``prefetch`` pages queued.
        return self._prefetched(
            lambda stopped: render_in_workers(
                self.source, self._password, self._indices, wire_opts, self._limits, max_pixels, self._started
            )
        )

    def _started(self, worker: PageWorker) -> None:
        self.process = worker


_PAGE_FIELDS = frozenset(
    {"number", "label", "width_pt", "height_pt", "scale", "rotation", "text", "error", "error_type"}
)


def _to_page(item: dict) -> RenderedPage:
    image = item.pop("image", None)
    raw = item.pop("raw", None)
    if raw is not None:
        size, data = raw
        image = Image.frombytes("RGB", size, data)
    return RenderedPage(image=image, **{k: v for k, v in item.items() if k in _PAGE_FIELDS})


def render_pages(
    source: Any,
    dpi: float | None = None,
    longest_side: int | None = None,
    pages: PageSpec = None,
    password: str | None = None,
    *,
    backend: Backend = "auto",
    prefetch: int = 2,
    with_text: bool = False,
    on_error: Literal["yield", "raise"] = "yield",
    tile_grid: tuple[int, int] | None = None,
    policy: MediaPolicy | None = None,
    page_timeout: float | None = DEFAULT_PAGE_TIMEOUT_S,
    page_memory_mb: int | None = DEFAULT_PAGE_MEMORY_MB,
) -> RenderStream:
    """Render the selected pages of a PDF, multi-page TIFF or image lazily, one :class:`RenderedPage` at a time.

    Args:
        source: a path, ``bytes``, a binary file object or a PIL image.
        dpi: render at this resolution (PDF points are 1/72 inch; images use their own DPI metadata, else 72).
        longest_side: render so the longest side has this many pixels; with ``dpi`` it is a cap.
            With neither, PDF pages are rendered so the longest side is :data:`~.sizing.DEFAULT_LONGEST_SIDE` (1792 px,
            the largest grid side InternVL's 12-tile tiler gives a page; see :func:`~.sizing.default_longest_side`), and
            images keep their pixels (resampling before the tiler's own resize would only lose detail).
        pages: 1-based selection, e.g. ``"1-3,7"``; validated against the page count.
        password: for encrypted PDFs (:class:`~internvl_tools.errors.PasswordError` when missing or wrong).
        backend: ``"process"`` (a worker process: each page bounded in memory and CPU time, crashes isolated),
            ``"thread"`` (one thread under the PDFium lock: faster, unbounded, for trusted PDFs only) or
            ``"auto"``: process for PDFs, thread for images (which :func:`~internvl_tools.media.open_image` bounds).
        prefetch: queue slots for rendered pages (both backends): at most ``prefetch + 2`` rendered pages exist at
            once, so memory stays bounded while rendering runs ahead of the caller.
        with_text: also extract each PDF page's text layer into ``RenderedPage.text`` (``""`` for scans).
        on_error: ``"yield"`` a page with ``error`` set and carry on (default), or ``"raise"`` PageRenderError.
        tile_grid: ``(image_size, max_tiles)`` of the model the pages are for. With neither ``dpi`` nor
            ``longest_side``, each PDF page is then rendered at :func:`~.sizing.grid_longest_side` for its own shape, so
            long pages are not upsampled by the tiler (``read_pdf`` passes the engine's values).
        policy: the :class:`~internvl_tools.media.MediaPolicy` for image inputs (allowed formats, ``max_pixels``
            per frame, checked before decoding). Its ``max_pixels`` also caps every rendered page: a ``dpi`` that
            would need a bigger bitmap is lowered (``RenderedPage.scale`` says what was used).
        page_timeout: CPU seconds one PDF page may take in the worker process; a page over it fails alone with a
            :class:`~internvl_tools.errors.PageRenderError` naming the limit. ``None``: no limit.
        page_memory_mb: memory (MiB) the worker may use beyond its start-up size while rendering; a page over it
            fails alone likewise. ``None``: no limit. Both limits need the process backend (POSIX).

    Opening problems (missing file, not a PDF, encrypted, bad page selection) raise here, at call time; per-page
    problems surface per page. The page rotation (``/Rotate``), form fields and annotations are drawn.

    >>> from PIL import Image
    >>> page = next(iter(render_pages(Image.new("RGB", (300, 200)), longest_side=150)))
    >>> page.size_px, round(page.scale, 2)
    ((150, 100), 0.5)
    """
    check_render_options(
        dpi=dpi,
        longest_side=longest_side,
        backend=backend,
        prefetch=prefetch,
        tile_grid=tile_grid,
        page_timeout=page_timeout,
        page_memory_mb=page_memory_mb,
    )
    if on_error not in ("yield", "raise"):
        raise ConfigError(f"on_error must be 'yield' or 'raise', got {on_error!r}.")
    policy = MediaPolicy() if policy is None else policy
    src = open_source(source)
    n_pages = page_count(src, password, policy=policy)
    indices = parse_pages(pages, n_pages) if n_pages or pages is not None else []
    if backend == "auto":
        backend = "process" if src.kind == "pdf" and len(indices) >= PROCESS_MIN_PAGES else "thread"
    if backend == "process" and src.image is not None:
        backend = "thread"  # an in-memory PIL image: nothing for a worker to open
    opts = {
        "dpi": dpi,
        "longest_side": longest_side,
        "with_text": with_text,
        "tile_grid": tile_grid,
        "max_pixels": min(MAX_PAGE_PIXELS, policy.max_pixels),
        "policy": policy,
    }
    limits = PageLimits(timeout_s=page_timeout, memory_mb=page_memory_mb)
    return RenderStream(src, password, indices, n_pages, opts, backend, prefetch, on_error, limits)
