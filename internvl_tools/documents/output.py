"""Writing page results (JSONL, one Markdown file) and reading them back to resume a run.

A JSONL line is ``PageResult.model_dump_json()``. Resuming reads the file, keeps the pages that succeeded, and
:func:`~internvl_tools.documents.read_pdf` skips them, so a crash on page 400 of 500 loses at most the pages in
flight. Point ``resume_from`` and the output at the same file; a missing file means "nothing done yet", so one
command line serves the first run and every rerun.

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
from collections.abc import Iterable, Iterator
from pathlib import Path

from pydantic import ValidationError

from internvl_tools.documents.models import PageResult
from internvl_tools.errors import DocumentError

__all__ = ["completed_pages", "iter_jsonl", "load_results", "to_markdown", "write_jsonl", "write_markdown"]


def write_jsonl(results: Iterable[PageResult], path: str | os.PathLike, *, append: bool = False) -> int:
    """Write each result as one JSON line as soon as it arrives (flushed per line); returns the lines written.

    Use ``append=True`` when resuming into the file the run started.
    """
    count = 0
    with open(path, "a" if append else "w", encoding="utf-8") as fh:
        for result in results:
            fh.write(result.model_dump_json() + "\n")
            fh.flush()
            count += 1
    return count


def iter_jsonl(path: str | os.PathLike, *, strict: bool = False) -> Iterator[PageResult]:
    """Read results back. A damaged line (e.g. the half-written last line of a crashed run) is skipped, or raises
    :class:`~internvl_tools.errors.DocumentError` with ``strict=True``."""
    with open(path, encoding="utf-8") as fh:
        for number, line in enumerate(fh, 1):
            if not line.strip():
                continue
            try:
                yield PageResult.model_validate_json(line)
            except (ValidationError, json.JSONDecodeError, ValueError) as exc:
                if strict:
                    raise DocumentError(f"{path}: line {number} is not a PageResult ({exc}).") from None


def load_results(path: str | os.PathLike, *, strict: bool = False) -> list[PageResult]:
    """The latest result per page (a success beats a later failure), sorted by page number."""
    best: dict[int, PageResult] = {}
    for result in iter_jsonl(path, strict=strict):
        current = best.get(result.page)
        if current is None or result.ok or not current.ok:
            best[result.page] = result
    return [best[page] for page in sorted(best)]


def completed_pages(path: str | os.PathLike | None, task: str | None = None) -> set[int]:
    """Page numbers that succeeded in ``path`` (for ``task`` when given); empty when the file does not exist."""
    if path is None or not Path(path).is_file():
        return set()
    return {r.page for r in iter_jsonl(path) if r.ok and (task is None or r.task == task)}


def _page_body(result: PageResult) -> str:
    if not result.ok:
        return f"<!-- error: {result.error_type}: {(result.error or '').replace('--', '- -')} -->"
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
    """Write :func:`to_markdown` to ``path`` (pass a :func:`load_results` list to export a resumed run)."""
    target = Path(path)
    target.write_text(to_markdown(results, **kwargs), encoding="utf-8")
    return target
