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
import math
import queue as queue_mod
import sys
import threading
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Any, Literal

from PIL import Image, ImageOps

from internvl_tools.documents.sources import (
    PDFIUM_LOCK,
    DocumentSource,
    PageSpec,
    open_pdf,
    open_source,
    page_count,
    parse_pages,
)
from internvl_tools.documents.worker import (
    PageLimits,
    PageWorker,
    apply_memory_limit,
    page_cpu_limit,
    read_job,
    render_in_workers,
    write_frame,
)
from internvl_tools.errors import ConfigError, DocumentError, PageRenderError
from internvl_tools.media import MediaPolicy, decode_frame, open_image

__all__ = [
    "DEFAULT_LONGEST_SIDE",
    "PROCESS_MIN_PAGES",
    "PageLimits",
    "RenderStream",
    "RenderedPage",
    "default_longest_side",
    "grid_longest_side",
    "render_pages",
    "tile_grid_for",
]

Backend = Literal["auto", "process", "thread"]


def default_longest_side(image_size: int = 448, max_tiles: int = 12) -> int:
    """The longest side (pixels) to render pages at so that InternVL's tiler never has to upsample a page.

    The tiler resizes a page to a grid of ``cols x rows`` tiles of ``image_size`` pixels (``cols * rows <=
    max_tiles``), picked by aspect ratio. For page shapes (aspect ratio between 1:2 and 2:1, which covers A-series,
    Letter, Legal and their landscape forms) the largest grid side among the candidates is the longest side the
    model can ever see. Rendering larger is resized away by the tiler; rendering smaller makes the tiler upsample
    (blurrier glyphs). With the defaults (448-pixel tiles, 12 tiles) that is 4 x 448 = **1792 px**: the 3x4 grid
    Letter pages get. A4 gets a 2x3 grid (896x1344), so it is rendered at about 152 DPI and downsampled once by the
    tiler, which antialiases small print. For reference: docling renders VLM pages at 144 DPI, olmOCR at 1288 px
    longest side, MinerU at 200 DPI.

    >>> default_longest_side()
    1792
    >>> default_longest_side(448, 6)
    1344
    """
    if image_size < 1 or max_tiles < 1:
        raise ConfigError(f"image_size and max_tiles must be >= 1, got {image_size} and {max_tiles}.")
    longest = 1
    for cols in range(1, max_tiles + 1):
        for rows in range(1, max_tiles // cols + 1):
            if 0.5 <= cols / rows <= 2.0:
                longest = max(longest, cols, rows)
    return longest * image_size


def grid_longest_side(width: float, height: float, image_size: int = 448, max_tiles: int = 12) -> int:
    """The longest side to render one page at so that the grid the tiler picks for *its* shape is never upsampled.

    :func:`default_longest_side` covers pages between 1:2 and 2:1; a longer page (a till receipt, a 1:3 strip)
    gets a grid whose long side is larger (a 1x3 grid of 128-px tiles is 384 px tall, above the 256 px a 4-tile
    budget gives 1:2 pages), so this takes the larger of the two.

    >>> grid_longest_side(595, 842), grid_longest_side(128, 384, image_size=128, max_tiles=4)
    (1792, 384)
    """
    from internvl_tools.tiling import select_grid

    floor = default_longest_side(image_size, max_tiles)
    scale = floor / max(width, height)
    cols, rows = select_grid(
        max(1, round(width * scale)), max(1, round(height * scale)), max_tiles=max_tiles, image_size=image_size
    )
    return max(floor, (cols if width >= height else rows) * image_size)


def tile_grid_for(engine: Any) -> tuple[int, int] | None:
    """``(image_size, tile budget)`` of an engine's checkpoint, for :func:`render_pages`'s ``tile_grid``.

    ``None`` when the engine does not say its tile size (a remote server). Reads the config only, never weights.

    >>> from types import SimpleNamespace
    >>> tile_grid_for(SimpleNamespace(info=SimpleNamespace(image_size=448, max_dynamic_patch=6), max_tiles=None))
    (448, 6)
    """
    from internvl_tools.tiling import tile_budget

    info = engine.info
    size = getattr(info, "image_size", None)
    if not size:
        return None
    return int(size), tile_budget(info, getattr(engine, "max_tiles", None))


#: Default longest rendered side for 448-pixel tiles and a 12-tile budget (see :func:`default_longest_side`).
DEFAULT_LONGEST_SIDE = default_longest_side()

#: ``backend="auto"`` renders PDFs with at least this many selected pages in the worker process: every PDF, since
#: only the worker can bound a hostile page's memory and time (issue 14). The thread path renders and tiles faster
#: on the 2-core dev box (``benchmarks/documents.py``); pass ``backend="thread"`` for trusted PDFs when speed
#: matters more than isolation.
PROCESS_MIN_PAGES = 1

#: Never render a bitmap above this many pixels (a 1-metre poster at 600 DPI), nor above the policy's
#: ``max_pixels``: the scale is lowered until the page fits.
MAX_PAGE_PIXELS = 120_000_000

#: PDFium keeps every object it has parsed (image streams included) until the document closes, so memory grows
#: with the pages read; reopening the document every this many pages keeps the peak flat on 500-page scans.
REOPEN_EVERY = 16

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


# ---------------------------------------------------------------------------------------------------- producing


def _choose_scale(
    width: float, height: float, dpi: float | None, longest_side: int | None, max_pixels: int = MAX_PAGE_PIXELS
) -> float:
    """Pixels per unit: ``dpi / 72``, capped so the longest side stays within ``longest_side`` when both are set,
    and lowered until the bitmap holds at most ``max_pixels`` pixels (so no page can ask for an unbounded one)."""
    longest = max(width, height)
    if not (longest > 0 and min(width, height) > 0) or not math.isfinite(longest):
        raise PageRenderError(f"The page has a zero or invalid size ({width} x {height}); it cannot be rendered.")
    if dpi is None and longest_side is None:
        longest_side = DEFAULT_LONGEST_SIDE
    scale = dpi / 72.0 if dpi is not None else math.inf
    if longest_side is not None:
        # The tiny shrink keeps ceil(longest * scale) == longest_side despite float rounding.
        scale = min(scale, longest_side / longest * (1 - 1e-9))
    for _ in range(64):
        pixels = math.ceil(width * scale) * math.ceil(height * scale)
        if pixels <= max_pixels:
            return scale
        scale *= min(math.sqrt(max_pixels / pixels), 1 - 1e-6)
    raise PageRenderError(
        f"The page ({width:g} x {height:g} pt) cannot be rendered within {max_pixels} pixels at any scale; its shape "
        "is degenerate."
    )


def _label(doc: Any, index: int) -> str:
    try:
        return doc.get_page_label(index) or str(index + 1)
    except Exception:  # damaged /PageLabels: fall back to the number
        return str(index + 1)


def _pdf_pages(
    src: DocumentSource,
    password: str | None,
    indices: list[int],
    opts: dict,
    lock: Any,
    stopped: Callable[[], bool],
    guard: Callable[[], Any],
) -> Iterator[dict]:
    def reopen(old: Any) -> Any:
        with lock:
            if old is not None:
                old.close()
            new = open_pdf(src, password)
            with contextlib.suppress(Exception):
                new.init_forms()  # so form fields are drawn (must precede loading pages)
        return new

    doc = reopen(None)
    try:
        for done, index in enumerate(indices):
            if stopped():
                return
            if done and done % REOPEN_EVERY == 0:
                doc = reopen(doc)
            meta: dict[str, Any] = {
                "number": index + 1,
                "label": str(index + 1),
                "width_pt": 0.0,
                "height_pt": 0.0,
                "scale": 0.0,
                "rotation": 0,
            }
            try:
                with lock, guard():
                    meta["label"] = _label(doc, index)
                    page = doc[index]
                    try:
                        width, height = page.get_size()
                        meta.update(width_pt=float(width), height_pt=float(height), rotation=page.get_rotation())
                        longest_side = opts["longest_side"]
                        if opts["dpi"] is None and longest_side is None and opts.get("tile_grid"):
                            longest_side = grid_longest_side(width, height, *opts["tile_grid"])
                        scale = _choose_scale(width, height, opts["dpi"], longest_side, opts["max_pixels"])
                        meta["scale"] = scale
                        image = page.render(
                            scale=scale,
                            rev_byteorder=True,
                            may_draw_forms=True,
                            draw_annots=True,
                            limit_image_cache=True,
                        ).to_pil()
                        if image.mode != "RGB":
                            image = image.convert("RGB")
                        if opts["with_text"]:
                            textpage = page.get_textpage()
                            meta["text"] = textpage.get_text_bounded()
                            textpage.close()
                    finally:
                        page.close()
                yield {**meta, "image": image}
            except Exception as exc:
                yield {**meta, "error": _describe(exc, index), "error_type": _error_type(exc)}
    finally:
        with lock:
            doc.close()


def _image_pages(src: DocumentSource, indices: list[int], opts: dict, stopped: Callable[[], bool]) -> Iterator[dict]:
    policy = opts.get("policy")
    if src.image is not None:
        handle = src.image
    else:  # only the policy's formats; each frame's size is checked before it is decoded
        handle = open_image(src.open_binary(), policy=policy, desc=src.name, check_size=False)
    try:
        for index in indices:
            if stopped():
                return
            meta: dict[str, Any] = {
                "number": index + 1,
                "label": str(index + 1),
                "width_pt": 0.0,
                "height_pt": 0.0,
                "scale": 1.0,
                "rotation": 0,
            }
            try:
                desc = f"{src.name} page {index + 1}"
                decode_frame(handle, index, policy=policy, desc=desc)
                frame = ImageOps.exif_transpose(handle.copy() if src.image is not None else handle)
                frame = frame.convert("RGB")
                source_dpi = _image_dpi(handle)
                width, height = frame.size
                meta.update(width_pt=width * 72.0 / source_dpi, height_pt=height * 72.0 / source_dpi)
                if opts["dpi"] is not None or opts["longest_side"] is not None:
                    dpi = opts["dpi"] / source_dpi * 72.0 if opts["dpi"] is not None else None
                    scale = _choose_scale(width, height, dpi, opts["longest_side"], opts["max_pixels"])
                    size = (max(1, round(width * scale)), max(1, round(height * scale)))
                    if size != frame.size:
                        frame = frame.resize(size, Image.Resampling.BICUBIC, reducing_gap=3.0)
                    meta["scale"] = frame.size[0] / width
                yield {**meta, "image": frame}
            except Exception as exc:
                yield {**meta, "error": _describe(exc, index), "error_type": _error_type(exc)}
    finally:
        if src.image is None:
            handle.close()


def _image_dpi(im: Any) -> float:
    """The image's own DPI (TIFF/PNG/JPEG metadata); 72 when absent, so points equal pixels."""
    dpi = im.info.get("dpi")
    try:
        value = float(dpi[0]) if dpi else 72.0
    except (TypeError, ValueError, IndexError):
        value = 72.0
    return value if value > 1 else 72.0


def _describe(exc: BaseException, index: int) -> str:
    return f"page {index + 1}: {type(exc).__name__}: {exc}"


def _error_type(exc: BaseException) -> str:
    return "PageRenderError" if type(exc).__name__ == "PdfiumError" else type(exc).__name__


def _produce(
    src: DocumentSource,
    password: str | None,
    indices: list[int],
    opts: dict,
    lock: Any,
    stopped: Callable[[], bool],
    guard: Callable[[], Any] = contextlib.nullcontext,
) -> Iterator[dict]:
    if src.kind == "pdf":
        return _pdf_pages(src, password, indices, opts, lock, stopped, guard)
    return _image_pages(src, indices, opts, stopped)


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


def serve_worker() -> None:
    """Entry point of the render worker process (see :mod:`.worker`); not for direct use.

    Reads one job from stdin, renders its pages under the per-page limits, writes them to stdout as frames.
    """
    out = sys.stdout.buffer
    sys.stdout = sys.stderr  # a stray print from a library must not corrupt the protocol
    job, data = read_job(sys.stdin.buffer)
    limits = PageLimits(timeout_s=job["timeout_s"], memory_mb=job["memory_mb"])
    opts = dict(job["opts"])
    if opts.get("tile_grid") is not None:
        opts["tile_grid"] = tuple(opts["tile_grid"])
    src = DocumentSource(kind="pdf", name=job["name"], path=job["path"], data=None if job["path"] else data)
    del data
    apply_memory_limit(limits)  # from here on, everything this process maps counts
    try:
        for item in _produce(
            src,
            job["password"],
            job["indices"],
            opts,
            contextlib.nullcontext(),
            lambda: False,
            lambda: page_cpu_limit(limits),
        ):
            image = item.pop("image", None)
            if image is None:
                write_frame(out, item)
                continue
            raw = image.tobytes()
            item["size"] = list(image.size)
            del image
            write_frame(out, item, raw)
            del raw
    except BrokenPipeError:  # the parent stopped reading (closed early): nothing left to do
        return
    except BaseException as exc:  # opening failed after all: report, do not die silently
        with contextlib.suppress(OSError):
            write_frame(out, {"fatal": f"{type(exc).__name__}: {exc}"})
        return
    with contextlib.suppress(OSError):
        write_frame(out, {"done": True})


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

    # -- thread ------------------------------------------------------------------------------------------------

    def _run_thread(self) -> Iterator[RenderedPage]:
        q: queue_mod.Queue = queue_mod.Queue(maxsize=self._prefetch)
        stop = threading.Event()

        def work() -> None:
            try:
                for item in _produce(self.source, self._password, self._indices, self._opts, PDFIUM_LOCK, stop.is_set):
                    if not _put(q, item, stop.is_set):
                        return
            except BaseException as exc:
                _put(q, {"fatal": f"{type(exc).__name__}: {exc}"}, stop.is_set)
                return
            _put(q, _DONE, stop.is_set)

        thread = threading.Thread(target=work, name="internvl-render", daemon=True)
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
            thread.join(timeout=5)

    # -- process -----------------------------------------------------------------------------------------------

    def _run_process(self) -> Iterator[RenderedPage]:
        wire_opts = {k: v for k, v in self._opts.items() if k != "policy"}  # JSON-safe: numbers and flags only
        max_pixels = self._opts["max_pixels"]
        for item in render_in_workers(
            self.source, self._password, self._indices, wire_opts, self._limits, max_pixels, self._started
        ):
            if "fatal" in item:
                raise DocumentError(f"Rendering {self.source.name} failed: {item['fatal']}")
            yield _to_page(item)

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
    page_timeout: float | None = 60.0,
    page_memory_mb: int | None = 2048,
) -> RenderStream:
    """Render the selected pages of a PDF, multi-page TIFF or image lazily, one :class:`RenderedPage` at a time.

    Args:
        source: a path, ``bytes``, a binary file object or a PIL image.
        dpi: render at this resolution (PDF points are 1/72 inch; images use their own DPI metadata, else 72).
        longest_side: render so the longest side has this many pixels; with ``dpi`` it is a cap.
            With neither, PDF pages are rendered so the longest side is :data:`DEFAULT_LONGEST_SIDE` (1792 px,
            the largest grid side InternVL's 12-tile tiler gives a page; see :func:`default_longest_side`), and
            images keep their pixels (resampling before the tiler's own resize would only lose detail).
        pages: 1-based selection, e.g. ``"1-3,7"``; validated against the page count.
        password: for encrypted PDFs (:class:`~internvl_tools.errors.PasswordError` when missing or wrong).
        backend: ``"process"`` (a worker process: each page bounded in memory and CPU time, crashes isolated),
            ``"thread"`` (one thread under the PDFium lock: faster, unbounded, for trusted PDFs only) or
            ``"auto"``: process for PDFs, thread for images (which :func:`~internvl_tools.media.open_image` bounds).
        prefetch: queue slots of the thread backend; at most ``prefetch + 1`` rendered pages exist at once (the
            process backend renders one page ahead).
        with_text: also extract each PDF page's text layer into ``RenderedPage.text`` (``""`` for scans).
        on_error: ``"yield"`` a page with ``error`` set and carry on (default), or ``"raise"`` PageRenderError.
        tile_grid: ``(image_size, max_tiles)`` of the model the pages are for. With neither ``dpi`` nor
            ``longest_side``, each PDF page is then rendered at :func:`grid_longest_side` for its own shape, so
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
    if dpi is not None and not (isinstance(dpi, (int, float)) and 1 <= dpi <= 2400):
        raise ConfigError(f"dpi must be a number between 1 and 2400, got {dpi!r}.")
    if longest_side is not None and not (isinstance(longest_side, int) and 16 <= longest_side <= 20000):
        raise ConfigError(f"longest_side must be an int between 16 and 20000 pixels, got {longest_side!r}.")
    if backend not in ("auto", "process", "thread"):
        raise ConfigError(f"backend must be 'auto', 'process' or 'thread', got {backend!r}.")
    if not isinstance(prefetch, int) or prefetch < 1:
        raise ConfigError(f"prefetch must be an int >= 1, got {prefetch!r}.")
    if on_error not in ("yield", "raise"):
        raise ConfigError(f"on_error must be 'yield' or 'raise', got {on_error!r}.")
    if page_timeout is not None and not (isinstance(page_timeout, (int, float)) and page_timeout > 0):
        raise ConfigError(f"page_timeout must be a positive number of seconds or None, got {page_timeout!r}.")
    if page_memory_mb is not None and not (isinstance(page_memory_mb, int) and page_memory_mb >= 64):
        raise ConfigError(f"page_memory_mb must be an int >= 64 (MiB) or None, got {page_memory_mb!r}.")
    policy = MediaPolicy() if policy is None else policy
    src = open_source(source)
    n_pages = page_count(src, password, policy=policy)
    indices = parse_pages(pages, n_pages) if n_pages or pages is not None else []
    if backend == "auto":
        backend = "process" if src.kind == "pdf" and len(indices) >= PROCESS_MIN_PAGES else "thread"
    if backend == "process" and src.image is not None:
        backend = "thread"  # an in-memory PIL image: nothing for a worker to open
    if tile_grid is not None and not (
        isinstance(tile_grid, tuple) and len(tile_grid) == 2 and all(isinstance(v, int) and v >= 1 for v in tile_grid)
    ):
        raise ConfigError(f"tile_grid must be (image_size, max_tiles) as two positive ints, got {tile_grid!r}.")
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
