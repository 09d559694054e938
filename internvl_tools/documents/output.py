"""Writing page results (JSONL, one Markdown file) and reading them back to resume a run.

A JSONL line is ``PageResult.model_dump_json()``. Resuming reads the file, keeps the pages that succeeded, and
:func:`~internvl_tools.documents.read_pdf` skips them, so a crash on page 400 of 500 loses at most the pages in
flight. Point ``resume_from`` and the output at the same file and append to it; a missing file means "nothing done
yet", so one command line serves the first run and every rerun.

A crash can cut the last line short. The appending writer repairs that tail before it writes (a complete record
gets its newline back; a cut-off one is dropped, with a :class:`DamagedRecordWarning` naming the file and the
bytes), so every record it appends starts on a line of its own. The reader never skips a damaged line silently:
it warns with the line number, and the page that line held simply counts as not done, so a resume reads it again.
A page may appear on several lines (a failure, then the retry that succeeded); :func:`load_results` keeps one per
page.

>>> import tempfile, os
>>> path = os.path.join(tempfile.mkdtemp(), "run.jsonl")
>>> write_jsonl([PageResult(page=1, label="1", task="ocr", text="hi")], path)
1
>>> [r.text for r in load_results(path)]
['hi']
"""

from __future__ import annotations

import json
import os
import warnings
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import Any

from pydantic import ValidationError

from internvl_tools.documents.models import PageResult
from internvl_tools.errors import ConfigError, DocumentError

__all__ = [
    "DamagedRecordWarning",
    "completed_pages",
    "iter_jsonl",
    "load_results",
    "repair_jsonl_tail",
    "to_markdown",
    "write_jsonl",
    "write_markdown",
]

_BLOCK = 1 << 16


class DamagedRecordWarning(UserWarning):
    """A line of a JSONL record file is not a whole ``PageResult`` (cut off by a crash, or damaged); it was skipped
    or dropped, and the page it held counts as not done, so a resume reads that page again."""


def _parse(line: bytes) -> PageResult:
    return PageResult.model_validate_json(line.decode("utf-8"))


def _why(exc: Exception) -> str:
    if isinstance(exc, ValidationError) and exc.errors():
        first = exc.errors()[0]
        where = ".".join(map(str, first.get("loc", ())))
        return f"{where}: {first['msg']}" if where else str(first["msg"])
    return f"{type(exc).__name__}: {exc}"


def _is_record(line: bytes) -> bool:
    try:
        _parse(line)
    except (ValidationError, ValueError):  # json and UTF-8 decoding errors are ValueErrors
        return False
    return True


def _last_line_start(fh: Any, size: int) -> int:
    """Offset just after the last newline of a file whose last byte is not a newline (0 if it has none)."""
    end = size
    while end > 0:
        start = max(0, end - _BLOCK)
        fh.seek(start)
        found = fh.read(end - start).rfind(b"\n")
        if found >= 0:
            return start + found + 1
        end = start
    return 0


def repair_jsonl_tail(path: str | os.PathLike) -> int:
    """Make ``path`` end on a whole line before records are appended to it; returns the bytes dropped.

    A last line without its newline (a crash between the record and the newline, or in the middle of the record)
    would glue the next appended record onto it and lose both. If that line is a complete record, its newline is
    added; otherwise it is truncated away with a :class:`DamagedRecordWarning` naming the file and the byte count
    (the page it held was never recorded as done, so a resume reads it again). A missing or empty file is left as
    it is.
    """
    target = Path(path)
    if not target.is_file():
        return 0
    with open(target, "r+b") as fh:
        size = fh.seek(0, os.SEEK_END)
        if size == 0:
            return 0
        fh.seek(size - 1)
        if fh.read(1) == b"\n":
            return 0
        start = _last_line_start(fh, size)
        fh.seek(start)
        tail = fh.read()
        if not tail.strip() or _is_record(tail):
            fh.seek(size)
            fh.write(b"\n")
            return 0
        fh.truncate(start)
    warnings.warn(
        f"{target}: its last line was cut off mid-record ({size - start} bytes without a newline, left by an "
        "interrupted write); dropped those bytes so appended records start on a line of their own. The page that "
        "line held is not done and is read again.",
        DamagedRecordWarning,
        stacklevel=2,
    )
    return size - start


def _write_all(fh: Any, data: bytes) -> None:
    view = memoryview(data)
    while view:
        view = view[fh.write(view) :]


def write_jsonl(
    results: Iterable[PageResult], path: str | os.PathLike, *, append: bool = False, fsync: bool = False
) -> int:
    """Write each result as one JSON line as soon as it arrives; returns the lines written.

    Each line goes to the file in one unbuffered write, so a crash loses at most the line being written, never a
    line already returned. ``fsync=True`` also forces each line to the disk (survives a power cut, costs a disk
    flush per page). Use ``append=True`` when resuming into the file the run started (or when writing page by page,
    as in the README): a cut-off last line left by a crash is repaired first (:func:`repair_jsonl_tail`).

    Writing a run that resumed from ``path`` without ``append=True`` would erase the records of the pages it
    skipped, so that raises :class:`~internvl_tools.errors.ConfigError` before the file is touched.
    """
    target = Path(path)
    resumed_from = getattr(results, "resume_from", None)
    if (
        not append
        and resumed_from is not None
        and getattr(results, "resumed_pages", None)
        and target.exists()
        and os.path.samefile(target, resumed_from)
    ):
        raise ConfigError(
            f"write_jsonl({str(target)!r}) would overwrite the records of the pages this run skips because they "
            "are done there (resume_from is the same file); pass append=True."
        )
    if append:
        repair_jsonl_tail(target)
    count = 0
    with open(target, "ab" if append else "wb", buffering=0) as fh:
        for result in results:
            _write_all(fh, (result.model_dump_json() + "\n").encode("utf-8"))
            if fsync:
                os.fsync(fh.fileno())
            count += 1
    return count


def iter_jsonl(path: str | os.PathLike, *, strict: bool = False) -> Iterator[PageResult]:
    """Read results back, one per line, in file order (a page may appear more than once: see :func:`load_results`).

    A line that is not a whole ``PageResult`` (a crash cut the last line short, or the file was damaged) is never
    skipped silently: it raises :class:`~internvl_tools.errors.DocumentError` with ``strict=True``, and otherwise
    is skipped with a :class:`DamagedRecordWarning` that names the file and the line; the page it held counts as
    not done, so a resume reads it again.
    """
    with open(path, "rb") as fh:
        for number, line in enumerate(fh, 1):
            if not line.strip():
                continue
            try:
                yield _parse(line)
            except (ValidationError, ValueError) as exc:
                cut = not line.endswith(b"\n")
                what = "was cut off by an interrupted write" if cut else "is not a PageResult record"
                detail = _why(exc)
                if strict:
                    raise DocumentError(
                        f"{path}: line {number} {what} ({detail}); fix or delete that line, or read with "
                        "strict=False to skip it."
                    ) from None
                warnings.warn(
                    f"{path}: line {number} {what} ({len(line)} bytes; {detail}); skipped it. The page it held is "
                    "not done, so a resume reads that page again.",
                    DamagedRecordWarning,
                    stacklevel=2,
                )


def load_results(path: str | os.PathLike, *, strict: bool = False, task: str | None = None) -> list[PageResult]:
    """One result per page (per page and task when the file holds several tasks and ``task`` is None), sorted by
    page: the latest success, or the latest failure when the page never succeeded (a failure followed by a
    successful retry is a success; a page once read stays read). ``task`` keeps only that task's records."""
    best: dict[tuple[int, str], PageResult] = {}
    for result in iter_jsonl(path, strict=strict):
        if task is not None and result.task != task:
            continue
        key = (result.page, result.task)
        current = best.get(key)
        if current is None or result.ok or not current.ok:
            best[key] = result
    return [best[key] for key in sorted(best)]


def completed_pages(path: str | os.PathLike | None, task: str | None = None) -> set[int]:
    """Page numbers that succeeded in ``path`` (for ``task`` when given); empty when the file does not exist."""
    if path is None or not Path(path).is_file():
        return set()
    return {r.page for r in iter_jsonl(path) if r.ok and (task is None or r.task == task)}


def _page_body(result: PageResult) -> str:
    if not result.ok:
        error = (result.error or "the engine answered finish_reason='error'").replace("--", "- -")
        return f"<!-- error: {result.error_type or 'GenerationError'}: {error} -->"
    if result.text is not None and result.data is None:
        return result.text.strip()
    if result.task == "chart" and isinstance(result.data, dict):
        return (result.text or "").strip()
    body = json.dumps(result.data, indent=2, ensure_ascii=False, default=str)
    return f"```json\n{body}\n```"


def to_markdown(results: Iterable[PageResult], *, marker: str = "<!-- page {page} label={label} -->") -> str:
    """One Markdown document: each page's text after a marker comment (failed pages keep a marker and the error)."""
    chunks = []
    for result in results:
        head = marker.format(page=result.page, label=result.label)
        chunks.append(f"{head}\n\n{_page_body(result)}\n")
    return "\n".join(chunks)


def write_markdown(results: Iterable[PageResult], path: str | os.PathLike, **kwargs: str) -> Path:
    """Write :func:`to_markdown` to ``path`` (pass a :func:`load_results` list to export a resumed run).

    The file is replaced whole (written beside it, then renamed), so a crash never leaves half a document.
    """
    target = Path(path)
    partial = target.with_name(f".{target.name}.partial")
    partial.write_text(to_markdown(results, **kwargs), encoding="utf-8")
    os.replace(partial, target)
    return target
