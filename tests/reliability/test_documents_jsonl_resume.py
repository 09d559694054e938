"""A record file that a crash cut short resumes whole (issue 14, "half-written last JSONL line").

The kill-mid-write scenario is simulated by cutting the file at every byte offset of its last record (the record
holds multi-byte UTF-8, so some cuts split a character) and then resuming the way the README and the CLI do: read
the done pages, append what is missing. Every cut must end with every page recorded exactly once. Damaged lines
are never skipped silently: the reader warns with the line number, and the page they held is simply read again.
"""

from __future__ import annotations

import json
import warnings
from pathlib import Path

import pytest
from PIL import Image

from internvl_tools import cli
from internvl_tools.documents import (
    PageResult,
    completed_pages,
    iter_jsonl,
    load_results,
    read_pdf,
    write_jsonl,
)
from internvl_tools.documents import output as output_module
from internvl_tools.documents.output import DamagedRecordWarning, repair_jsonl_tail
from internvl_tools.errors import ConfigError, DocumentError

PAGES = (1, 2, 3, 4)
GEN = {"max_new_tokens": 3, "progress": False, "dpi": 36}


def record(page: int, ok: bool = True) -> PageResult:
    if not ok:
        return PageResult(
            page=page,
            label=str(page),
            task="ocr",
            error=f"page {page}: GenerationError: boom",
            error_type="GenerationError",
        )
    return PageResult(page=page, label=str(page), task="ocr", text=f"Grüße aus 東京, page {page} ✓")


def line(page: int, ok: bool = True) -> bytes:
    return (record(page, ok).model_dump_json() + "\n").encode("utf-8")


LAST = line(PAGES[-1])


def resume(path: Path) -> None:
    """What a resumed run does with its record file: skip the done pages, append the others page by page."""
    done = completed_pages(path, "ocr")
    for page in PAGES:
        if page not in done:
            write_jsonl([record(page)], path, append=True)


def pages_on_file(path: Path) -> list[int]:
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # after a resume the file must read clean: no damaged line left
        return sorted(r.page for r in iter_jsonl(path))


@pytest.mark.parametrize("cut", range(1, len(LAST)), ids=lambda cut: f"cut{cut}of{len(LAST)}")
def test_a_last_record_cut_at_any_byte_resumes_to_every_page_exactly_once(tmp_path, cut):
    path = tmp_path / "run.jsonl"
    path.write_bytes(b"".join(line(p) for p in PAGES[:-1]) + LAST[:cut])
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        resume(path)
    assert pages_on_file(path) == list(PAGES)
    assert [r.page for r in load_results(path)] == list(PAGES)
    damaged = [w for w in caught if issubclass(w.category, DamagedRecordWarning)]
    if cut == len(LAST) - 1:  # only the newline was lost: the record is whole, repaired without a word
        assert damaged == []
    else:
        assert damaged and all(str(path) in str(w.message) for w in damaged)
        assert any(f"{cut} bytes" in str(w.message) for w in damaged)  # the bytes dropped


@pytest.mark.parametrize(
    ("tail", "dropped", "ends_with"),
    [
        (b"", 0, b"\n"),
        (LAST[:-1], 0, LAST),
        (LAST[:40], 40, line(3)),
        (b"   ", 0, b"   \n"),
    ],
    ids=["clean", "newline-lost", "cut-mid-record", "blank-tail"],
)
def test_repairing_the_tail_keeps_whole_records_and_drops_only_the_cut_one(tmp_path, tail, dropped, ends_with):
    path = tmp_path / "run.jsonl"
    path.write_bytes(line(1) + line(2) + line(3) + tail)
    with warnings.catch_warnings(record=True):
        warnings.simplefilter("always")
        assert repair_jsonl_tail(path) == dropped
    assert path.read_bytes().endswith(ends_with) and path.read_bytes().startswith(line(1) + line(2) + line(3))


def test_repairing_a_missing_or_empty_file_does_nothing(tmp_path):
    assert repair_jsonl_tail(tmp_path / "missing.jsonl") == 0 and not (tmp_path / "missing.jsonl").exists()
    (tmp_path / "empty.jsonl").write_bytes(b"")
    assert repair_jsonl_tail(tmp_path / "empty.jsonl") == 0 and (tmp_path / "empty.jsonl").read_bytes() == b""


@pytest.mark.parametrize(
    ("damaged", "why"),
    [
        (b'{"page": 2, "label": "2", "ta\n', "not a PageResult"),
        (b"\xff\xfe garbage\n", "not a PageResult"),
        (LAST[:30] + line(2), "not a PageResult"),  # an older writer glued a record onto a cut-off one
        (b'{"page": 0, "label": "0", "task": "ocr"}\n', "page"),
    ],
    ids=["cut-record", "not-utf8", "glued-records", "invalid-record"],
)
def test_a_damaged_line_in_the_middle_warns_with_its_number_and_its_page_is_read_again(tmp_path, damaged, why):
    path = tmp_path / "run.jsonl"
    path.write_bytes(line(1) + damaged + line(3))
    with pytest.warns(DamagedRecordWarning, match=rf"line 2 .*{why}.*read(s)? that page again"):
        assert completed_pages(path, "ocr") == {1, 3}
    with pytest.raises(DocumentError, match="line 2"):
        list(iter_jsonl(path, strict=True))
    with warnings.catch_warnings(record=True):
        warnings.simplefilter("always")
        resume(path)
        assert [r.page for r in load_results(path)] == list(PAGES)


@pytest.mark.parametrize(
    ("history", "kept_ok"),
    [
        ([(2, False), (2, True)], True),  # the retry succeeded: done
        ([(2, True), (2, False)], True),  # a page once read stays read
        ([(2, False), (2, False)], False),
        ([(2, True), (2, True)], True),
    ],
    ids=["fail-then-ok", "ok-then-fail", "fail-twice", "ok-twice"],
)
def test_a_page_recorded_several_times_counts_once(tmp_path, history, kept_ok):
    path = tmp_path / "run.jsonl"
    path.write_bytes(b"".join(line(page, ok) for page, ok in history))
    [kept] = load_results(path)
    assert (kept.page, kept.ok) == (2, kept_ok)
    assert completed_pages(path, "ocr") == ({2} if kept_ok else set())


def test_results_of_different_tasks_for_one_page_are_all_kept(tmp_path):
    path = tmp_path / "run.jsonl"
    write_jsonl([record(1), PageResult(page=1, label="1", task="chart", text="No chart.")], path)
    assert [(r.page, r.task) for r in load_results(path)] == [(1, "chart"), (1, "ocr")]
    assert [r.task for r in load_results(path, task="ocr")] == ["ocr"]


def test_each_record_is_one_write_and_fsync_forces_each_to_disk(tmp_path, monkeypatch):
    synced: list[int] = []
    monkeypatch.setattr(output_module.os, "fsync", synced.append)
    path = tmp_path / "run.jsonl"
    assert write_jsonl([record(p) for p in PAGES], path, fsync=True) == len(PAGES)
    assert len(synced) == len(PAGES)
    assert path.read_bytes() == b"".join(line(p) for p in PAGES)


@pytest.fixture(scope="module")
def pdf(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("resume") / "four.pdf"
    pages = [Image.new("RGB", (170, 240), (250 - 20 * i, 250, 245)) for i in range(len(PAGES))]
    pages[0].save(path, "PDF", save_all=True, append_images=pages[1:], resolution=72.0)
    return path


def _cut_last_record(path: Path, keep: float) -> None:
    data = path.read_bytes()
    start = data.rstrip(b"\n").rfind(b"\n") + 1
    path.write_bytes(data[: start + max(1, int((len(data) - start) * keep))])


@pytest.mark.parametrize("keep", [0.01, 0.5, 0.999], ids=["first-byte", "half", "all-but-newline"])
def test_the_readme_resume_pattern_after_a_crash_records_every_page_once(pdf, tiny_engine, tmp_path, keep):
    path = tmp_path / "scan.jsonl"
    for result in read_pdf(tiny_engine, pdf, resume_from=path, **GEN):
        write_jsonl([result], path, append=True)
    _cut_last_record(path, keep)
    with warnings.catch_warnings(record=True):
        warnings.simplefilter("always")
        again = read_pdf(tiny_engine, pdf, resume_from=path, **GEN)
        for result in again:
            write_jsonl([result], path, append=True)
    assert pages_on_file(path) == list(PAGES)
    assert again.summary.skipped + again.summary.succeeded == len(PAGES) and again.summary.failed == 0


def test_the_cli_resume_after_a_crash_records_every_page_once(pdf, tiny_engine, tmp_path, capsys):
    path = tmp_path / "pages.jsonl"
    args = ["ocr", str(pdf), "--out", str(path), "--resume", "--model", "tiny", "--max-new-tokens", "3", "--dpi", "36"]
    assert cli.main(args) == cli.EXIT_OK
    _cut_last_record(path, 0.5)
    with warnings.catch_warnings(record=True):
        warnings.simplefilter("always")
        assert cli.main(args) == cli.EXIT_OK
    assert "1 of 4 pages ok, 0 failed, 3 skipped" in capsys.readouterr().err
    assert pages_on_file(path) == list(PAGES)


def test_writing_a_resumed_run_over_its_own_records_without_append_is_refused(pdf, tiny_engine, tmp_path):
    path = tmp_path / "run.jsonl"
    write_jsonl([record(1), record(2)], path)
    before = path.read_bytes()
    with pytest.raises(ConfigError, match="append=True"):
        write_jsonl(read_pdf(tiny_engine, pdf, resume_from=path, **GEN), path)
    assert path.read_bytes() == before
    assert json.loads(before.splitlines()[0])["page"] == 1
