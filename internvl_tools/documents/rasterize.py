"""Producing rendered pages: PDFium (PDFs) and PIL (TIFFs, images) turn page indices into page dicts.

The same producers run in the caller's thread (the thread backend of :func:`~.render.render_pages`) and in the
render worker process, whose entry point :func:`serve_worker` lives here (:mod:`.worker` starts it by module name,
so a worker imports only this, not the transports). A page dict holds ``number``, ``label``, sizes, ``scale``,
``rotation`` and either ``image`` (a PIL image) or ``error`` / ``error_type``; a failing page never stops the others.

>>> from PIL import Image
>>> from internvl_tools.documents.sources import open_source
>>> [item["image"].size for item in produce_pages(open_source(Image.new("RGB", (40, 30))), None, [0], {
...     "dpi": None, "longest_side": None, "max_pixels": 10_000, "policy": None}, None, lambda: False)]
[(40, 30)]
"""

from __future__ import annotations

import contextlib
import sys
from collections.abc import Callable, Iterator
from typing import Any

from PIL import Image, ImageOps

from internvl_tools.documents.sizing import PageLimits, choose_scale, grid_longest_side
from internvl_tools.documents.sources import DocumentSource, open_pdf
from internvl_tools.documents.worker import apply_memory_limit, page_cpu_limit, read_job, write_frame
from internvl_tools.media.decode import decode_frame, open_image

__all__ = ["produce_pages", "serve_worker"]

#: PDFium keeps every object it has parsed (image streams included) until the document closes, so memory grows
#: with the pages read; reopening the document every this many pages keeps the peak flat on 500-page scans.
REOPEN_EVERY = 16


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
                        scale = choose_scale(width, height, opts["dpi"], longest_side, opts["max_pixels"])
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
                    scale = choose_scale(width, height, dpi, opts["longest_side"], opts["max_pixels"])
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


def produce_pages(
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
        for item in produce_pages(
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
