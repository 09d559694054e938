"""Opening documents: PDFs (path, bytes, file object; optional password), multi-page TIFFs and plain images.

Everything here is cheap and runs in the calling process; rendering lives in :mod:`.render`. PDFium is not
thread-safe, even across documents, so every PDFium call made in this process holds :data:`PDFIUM_LOCK`.

>>> parse_pages("1-3,7", page_count=10)
[0, 1, 2, 6]
"""

from __future__ import annotations

import io
import os
import re
import threading
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

from internvl_tools.errors import (
    DocumentError,
    ImageDecodeError,
    MediaNotFoundError,
    PageSelectionError,
    PasswordError,
    UnsupportedSourceError,
)
from internvl_tools.media.decode import open_image
from internvl_tools.media.policy import MediaPolicy

__all__ = ["DocumentSource", "PageSpec", "open_source", "page_count", "parse_pages"]

#: Guards every PDFium call in this process (PDFium keeps global state and is not thread-safe).
PDFIUM_LOCK = threading.RLock()

#: What ``pages=`` accepts: ``"1-3,7"``, ``"5-"`` (to the end), an int, or an iterable of ints (all 1-based).
PageSpec = str | int | Iterable[int] | None

DocumentKind = Literal["pdf", "image"]

# PDFium's FPDF_GetLastError codes (fpdfview.h) that load_document can report.
_FPDF_ERR_FILE, _FPDF_ERR_FORMAT, _FPDF_ERR_PASSWORD, _FPDF_ERR_SECURITY = 2, 3, 4, 6

_RANGE = re.compile(r"^\s*(\d+)\s*(?:(-)\s*(\d+)?)?\s*$")


@dataclass(frozen=True)
class DocumentSource:
    """A document ready to open anywhere: a file path or its bytes (picklable, so a worker process can open it).

    ``kind`` is ``"pdf"`` when the data starts with the ``%PDF`` signature (PDFium tolerates up to 1 KiB of junk
    before it, and so do we), otherwise ``"image"`` (PNG, JPEG, TIFF, ... decoded with Pillow).
    """

    kind: DocumentKind
    name: str
    path: str | None = None
    data: bytes | None = None
    image: Any = None  # a PIL image given directly (one-page document)

    def pdfium_input(self) -> str | bytes:
        return self.path if self.path is not None else self.data  # type: ignore[return-value]

    def open_binary(self) -> io.BufferedIOBase:
        return open(self.path, "rb") if self.path is not None else io.BytesIO(self.data or b"")


def _sniff(head: bytes) -> DocumentKind:
    return "pdf" if b"%PDF-" in head[:1024] else "image"


def open_source(source: Any) -> DocumentSource:
    """Normalise a path, ``bytes``, binary file object or PIL image into a :class:`DocumentSource`.

    >>> open_source(b"%PDF-1.4 ...").kind
    'pdf'
    """
    if isinstance(source, DocumentSource):
        return source
    if isinstance(source, (str, os.PathLike)):
        path = Path(os.fspath(source)).expanduser()
        if not path.is_file():
            raise MediaNotFoundError(f"Document {str(path)!r} does not exist or is not a file; check the path.")
        with open(path, "rb") as fh:
            head = fh.read(1024)
        return DocumentSource(kind=_sniff(head), name=str(path), path=str(path))
    if isinstance(source, (bytes, bytearray, memoryview)):
        data = bytes(source)
        if not data:
            raise DocumentError("The document bytes are empty; pass the contents of a PDF or image file.")
        return DocumentSource(kind=_sniff(data), name=f"<{len(data)} bytes>", data=data)
    if hasattr(source, "read"):
        data = source.read()
        if isinstance(data, str):
            raise UnsupportedSourceError("The file object is open in text mode; open it with mode 'rb'.")
        name = str(getattr(source, "name", "<file object>"))
        if not data:
            raise DocumentError(f"The file object {name!r} returned no bytes; is it at its end? Seek to 0 first.")
        return DocumentSource(kind=_sniff(data), name=name, data=bytes(data))
    if hasattr(source, "getexif") and hasattr(source, "size"):  # a PIL image
        return DocumentSource(kind="image", name="<PIL image>", image=source)
    raise UnsupportedSourceError(
        f"Cannot read a document from {type(source).__name__}; pass a path, bytes, a binary file object or a PIL image."
    )


def parse_pages(spec: PageSpec, page_count: int) -> list[int]:
    """Turn a 1-based page selection into sorted, de-duplicated 0-based indices, validated against ``page_count``.

    ``None`` selects every page. Strings hold comma-separated numbers and ranges: ``"1-3,7"``, ``"10-"``. Work and
    memory are bounded by ``page_count``, whatever the selection says: a range such as ``"1-100000000"`` is
    checked against the page count before anything is built, and iterables are read only until they prove bad.

    >>> parse_pages([3, 1, 3], page_count=5)
    [0, 2]
    >>> parse_pages(None, page_count=3)
    [0, 1, 2]
    """
    if spec is None:
        return list(range(page_count))
    if isinstance(spec, bool):
        raise PageSelectionError(f"pages={spec!r} is not a page selection; use e.g. pages='1-3,7' or pages=[1, 2].")
    selection = _Selection(page_count)
    if isinstance(spec, int):
        selection.add(spec)
    elif isinstance(spec, str):
        if not spec.strip():
            raise PageSelectionError("pages='' selects nothing; use None for all pages or e.g. '1-3,7'.")
        for part in spec.split(","):
            selection.add_part(part, spec)
    else:
        try:
            items = iter(spec)
        except TypeError:
            raise PageSelectionError(
                f"pages={spec!r} is not a page selection; use a string like '1-3,7', an int or a list of ints."
            ) from None
        limit = 16 * page_count + 1024  # duplicates beyond this are a runaway generator, not a selection
        for seen, item in enumerate(items):
            if isinstance(item, bool) or not isinstance(item, int):
                raise PageSelectionError(f"pages holds {item!r}; every page number must be an int (1-based).")
            if seen >= limit:
                raise PageSelectionError(
                    f"pages holds more than {limit} entries for a {page_count}-page document; name each page once."
                )
            selection.add(item)
            if selection.full_of_errors():
                break
    return selection.indices(spec)


class _Selection:
    """Pages chosen so far (at most ``page_count`` of them) and the first few out-of-range numbers."""

    _SHOWN = 5

    def __init__(self, page_count: int) -> None:
        self.page_count = page_count
        self.numbers: set[int] = set()
        self.bad: list[int] = []
        self.empty = True

    def full_of_errors(self) -> bool:
        return len(self.bad) > self._SHOWN

    def add(self, number: int) -> None:
        self.empty = False
        if 1 <= number <= self.page_count:
            self.numbers.add(number)
        elif not self.full_of_errors():
            self.bad.append(number)

    def add_part(self, part: str, spec: str) -> None:
        match = _RANGE.match(part)
        if match is None:
            raise PageSelectionError(
                f"Cannot read {part.strip()!r} in pages={spec!r}; use 1-based numbers and ranges like '1-3,7' "
                "or '5-' (to the end)."
            )
        first = int(match.group(1))
        if match.group(2) is None:
            self.add(first)
            return
        last = int(match.group(3)) if match.group(3) is not None else self.page_count
        if match.group(3) is not None and last < first:
            raise PageSelectionError(f"The range {part.strip()!r} in pages={spec!r} runs backwards; write it low-high.")
        if first < 1:
            raise PageSelectionError(f"Page numbers start at 1; {part.strip()!r} in pages={spec!r} starts at 0.")
        self.empty = self.empty and first > last  # '5-' on a 4-page document selects nothing
        # Clamp before building anything: only numbers inside the document are ever materialised.
        self.numbers.update(range(first, min(last, self.page_count) + 1))
        beyond = max(first, self.page_count + 1)
        for number in range(beyond, min(last, beyond + self._SHOWN) + 1):
            if self.full_of_errors():
                break
            self.bad.append(number)

    def indices(self, spec: PageSpec) -> list[int]:
        if self.bad:
            shown = ", ".join(map(str, self.bad[: self._SHOWN])) + (", ..." if self.full_of_errors() else "")
            raise PageSelectionError(
                f"pages={_short(spec)} names page(s) {shown}, but the document has {self.page_count} page(s) "
                f"(numbered 1-{self.page_count})."
            )
        if self.empty or not self.numbers:
            raise PageSelectionError(f"pages={_short(spec)} selects no pages.")
        return [n - 1 for n in sorted(self.numbers)]


def _short(spec: PageSpec) -> str:
    text = repr(spec)
    return text if len(text) <= 80 else f"{text[:60]}…{text[-12:]}"


def open_pdf(source: DocumentSource, password: str | None = None) -> Any:
    """Open a PDF with PDFium (call with :data:`PDFIUM_LOCK` held); typed errors for passwords and damage."""
    import pypdfium2 as pdfium

    try:
        return pdfium.PdfDocument(source.pdfium_input(), password=password)
    except pdfium.PdfiumError as exc:
        code = getattr(exc, "err_code", None)
        if code == _FPDF_ERR_PASSWORD:
            if password is None:
                raise PasswordError(f"{source.name} is encrypted; pass password='...' to open it.") from None
            raise PasswordError(f"The password given for {source.name} is wrong; check it and try again.") from None
        if code == _FPDF_ERR_SECURITY:
            raise DocumentError(f"{source.name} uses an unsupported security handler; decrypt it first.") from None
        if code == _FPDF_ERR_FILE:
            raise MediaNotFoundError(f"PDFium could not read {source.name}; check that the file exists.") from None
        raise DocumentError(
            f"{source.name} is not a readable PDF ({exc}); it may be truncated or damaged beyond repair."
        ) from None


def _looks_empty(source: DocumentSource) -> bool:
    """PDFium refuses a PDF whose page tree is empty (even one it wrote itself), so spot that case by hand."""
    with source.open_binary() as fh:
        data = fh.read(4_000_000)
    return bool(re.search(rb"/Count\s*0(?![0-9])", data)) and not re.search(rb"/Type\s*/Page(?![a-zA-Z])", data)


def _image_frames(source: DocumentSource, policy: MediaPolicy | None = None) -> int:
    if source.image is not None:
        return 1
    try:
        # Each frame's size is checked when it is rendered, so one oversized page fails alone.
        with open_image(source.open_binary(), policy=policy, desc=source.name, check_size=False) as im:
            return int(getattr(im, "n_frames", 1))
    except ImageDecodeError as exc:
        raise DocumentError(
            f"{source.name} is neither a PDF nor an image in an allowed format ({exc}); pass a PDF, TIFF, PNG or JPEG."
        ) from None
    except OSError as exc:
        raise DocumentError(f"{source.name} cannot be read ({exc}).") from None


def page_count(source: Any, password: str | None = None, *, policy: MediaPolicy | None = None) -> int:
    """The number of pages of a PDF (frames of a multi-page TIFF; 1 for other images).

    Images are opened with :func:`~internvl_tools.media.open_image`, so only ``policy.image_formats`` are read.

    >>> from PIL import Image
    >>> page_count(Image.new("RGB", (4, 4)))
    1
    """
    src = open_source(source)
    if src.kind == "image":
        return _image_frames(src, policy)
    with PDFIUM_LOCK:
        try:
            doc = open_pdf(src, password)
        except DocumentError:
            if _looks_empty(src):
                return 0
            raise
        try:
            return len(doc)
        finally:
            doc.close()
