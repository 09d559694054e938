"""A page is ok only when it was read (issue 14, "failed pages recorded as successes").

An engine answer with ``finish_reason="error"``, an answer the task cannot parse, or a schema answer that did not
finish makes the page a failed page: ``ok`` is false, ``error_type`` names the error (e.g. ``ContextLengthError``)
and ``error`` keeps its message with the numbers, ``summary`` counts it failed, a resume reads it again and the
``ocr`` command exits with ``EXIT_PAGES_FAILED``. Records written before this rule (an empty "success" with
``finish_reason="error"``) count as failed too.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from PIL import Image
from pydantic import BaseModel

from internvl_tools import cli
from internvl_tools.documents import PageResult, completed_pages, load_results, read_pdf, write_jsonl
from internvl_tools.documents import pipeline as pipeline_module
from internvl_tools.engines.local import InternVL
from internvl_tools.errors import ContextLengthError
from internvl_tools.results import ChatResult, Usage

GEN = {"max_new_tokens": 3, "progress": False, "dpi": 36}
TOO_LONG = (
    "ContextLengthError: The prompt is 9127 tokens (9075 text + 52 image tokens from 13 tiles of 4), but "
    "'tiny' has a context of 2048 tokens."
)
DARK = (90, 90, 90)


@pytest.fixture(scope="module")
def pdf(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Three scanned pages; page 2 is dark, which the fake engines below treat as the page that fails."""
    path = tmp_path_factory.mktemp("failed") / "three.pdf"
    pages = [Image.new("RGB", (170, 240), colour) for colour in ("white", DARK, "white")]
    pages[0].save(path, "PDF", save_all=True, append_images=pages[1:], resolution=72.0)
    return path


def _dark(conversation: list[dict]) -> bool:
    return conversation[0]["content"][0]["image"].convert("RGB").getpixel((5, 5))[0] < 128


def _error_item(error: str | None, finish_reason: str = "error") -> ChatResult:
    return ChatResult(
        text="", usage=Usage(prompt_tokens=0, completion_tokens=0), finish_reason=finish_reason, error=error
    )


class ErrorItemEngine:
    """The tiny engine, except that ``batch`` answers dark pages with ``answer`` in their place (as an engine does
    for a conversation it cannot prepare) and ``generate_structured`` answers them with ``answer`` too."""

    def __init__(self, engine: InternVL, answer: ChatResult) -> None:
        self.engine, self.answer, self.model_name, self.info = engine, answer, engine.model_name, engine.info

    def batch(self, conversations: list, **kw: object) -> list[ChatResult]:
        good = [c for c in conversations if not _dark(c)]
        answers = iter(self.engine.batch(good, **kw) if good else [])
        return [self.answer if _dark(c) else next(answers) for c in conversations]

    def chat(self, conversation: list, **kw: object) -> ChatResult:
        return self.answer if _dark(conversation) else self.engine.chat(conversation, **kw)

    def generate_structured(self, conversation: list, schema: dict, **kw: object) -> ChatResult:
        if _dark(conversation):
            return self.answer
        return self.engine.generate_structured(conversation, schema, **kw)

    def stream(self, conversation: list, **kw: object) -> object:
        return self.engine.stream(conversation, **kw)

    def read_pdf(self, source: object, **kw: object) -> object:
        return read_pdf(self, source, **kw)


@pytest.mark.parametrize(
    ("answer", "error_type", "in_message"),
    [
        (_error_item(TOO_LONG), "ContextLengthError", "9127 tokens"),
        (_error_item("GenerationError: CUDA out of memory"), "GenerationError", "out of memory"),
        (_error_item(None), "GenerationError", "finish_reason='error'"),
        (_error_item("RuntimeError: device lost", finish_reason="stop"), "RuntimeError", "device lost"),
    ],
    ids=["context-length", "generation", "no-message", "error-with-stop"],
)
def test_an_error_answer_is_a_failed_page_with_a_typed_error(pdf, tiny_engine, answer, error_type, in_message):
    stream = read_pdf(ErrorItemEngine(tiny_engine, answer), pdf, batch_size=3, **GEN)
    results = list(stream)
    assert [(r.page, r.ok) for r in results] == [(1, True), (2, False), (3, True)]
    failed = results[1]
    assert failed.error_type == error_type and in_message in failed.error and failed.error.startswith("page 2: ")
    summary = stream.summary
    assert (summary.succeeded, summary.failed, summary.failed_pages, summary.finished) == (2, 1, [2], True)
    assert "2 of 3 pages ok, 1 failed (pages 2)" in str(summary)


def test_a_prompt_too_long_fails_every_page_as_chat_would_refuse_it(pdf, tiny_engine):
    """The issue's repro: every page's prompt is over the context, so no page is read."""
    question = "word " * 3000
    stream = read_pdf(tiny_engine, pdf, question=question, max_new_tokens=4, progress=False, dpi=36)
    results = list(stream)
    with pytest.raises(ContextLengthError) as refused:
        tiny_engine.chat(
            [
                {
                    "role": "user",
                    "content": [
                        {"type": "image", "image": Image.new("RGB", (85, 120))},
                        {"type": "text", "text": question},
                    ],
                }
            ],
            max_new_tokens=4,
        )
    assert [r.ok for r in results] == [False, False, False]
    assert {r.error_type for r in results} == {type(refused.value).__name__}
    assert all("context of" in r.error and "tokens" in r.error for r in results)
    assert (stream.summary.succeeded, stream.summary.failed) == (0, 3)


def test_resume_reads_failed_pages_again_until_they_succeed(pdf, tiny_engine, tmp_path):
    out = tmp_path / "run.jsonl"
    write_jsonl(read_pdf(ErrorItemEngine(tiny_engine, _error_item(TOO_LONG)), pdf, resume_from=out, **GEN), out)
    assert completed_pages(out, "ocr") == {1, 3}
    again = read_pdf(tiny_engine, pdf, resume_from=out, **GEN)
    write_jsonl(again, out, append=True)
    assert (again.summary.skipped, again.summary.succeeded, again.summary.failed) == (2, 1, 0)
    assert [(r.page, r.ok) for r in load_results(out)] == [(1, True), (2, True), (3, True)]
    assert completed_pages(out, "ocr") == {1, 2, 3}


def test_a_legacy_empty_success_with_finish_reason_error_is_not_done(pdf, tiny_engine, tmp_path):
    """Files written before the fix hold failed pages as ``"ok": true`` with ``finish_reason="error"``."""
    legacy = {"page": 2, "label": "2", "task": "ocr", "text": "", "finish_reason": "error", "error": None, "ok": True}
    out = tmp_path / "legacy.jsonl"
    lines = [PageResult(page=n, label=str(n), task="ocr", text="x").model_dump_json() for n in (1, 3)]
    out.write_text("\n".join([lines[0], json.dumps(legacy), lines[1]]) + "\n")
    [record] = [r for r in load_results(out) if r.page == 2]
    assert record.ok is False and json.loads(record.model_dump_json())["ok"] is False
    assert completed_pages(out, "ocr") == {1, 3}
    assert [r.page for r in read_pdf(tiny_engine, pdf, resume_from=out, **GEN)] == [2]


@pytest.mark.parametrize(("task", "parser"), [("chart", "parse_chart_answer"), ("grounded_ocr", "parse_grounding")])
def test_an_answer_the_task_cannot_parse_fails_the_page_but_keeps_its_text(pdf, tiny_engine, monkeypatch, task, parser):
    def broken(*args: object) -> None:
        raise ValueError("unexpected answer layout")

    monkeypatch.setattr(pipeline_module, parser, broken)
    stream = read_pdf(tiny_engine, pdf, task=task, pages="1", **GEN)
    [result] = list(stream)
    assert (result.ok, result.error_type) == (False, "ValueError")
    assert "unexpected answer layout" in result.error and result.text is not None
    assert (stream.summary.succeeded, stream.summary.failed) == (0, 1)


class Receipt(BaseModel):
    total: float


@pytest.mark.parametrize(
    ("answer", "error_type", "in_message"),
    [
        (_error_item(TOO_LONG), "ContextLengthError", "9127 tokens"),
        (
            ChatResult(text='{"total": 1', usage=Usage(prompt_tokens=5, completion_tokens=3), finish_reason="length"),
            "StructuredOutputError",
            "max_new_tokens",
        ),
        (
            ChatResult(
                text='{"total": "n/a"}', usage=Usage(prompt_tokens=5, completion_tokens=6), finish_reason="stop"
            ),
            "StructuredOutputError",
            "Receipt",
        ),
    ],
    ids=["error-item", "cut-by-length", "does-not-validate"],
)
def test_a_schema_answer_that_is_not_valid_data_fails_the_page(pdf, tiny_engine, answer, error_type, in_message):
    stream = read_pdf(ErrorItemEngine(tiny_engine, answer), pdf, task=Receipt, pages="2", **GEN)
    [result] = list(stream)
    assert (result.ok, result.error_type, result.data) == (False, error_type, None)
    assert in_message in result.error
    assert stream.summary.failed == 1


def test_ocr_command_exits_nonzero_while_pages_fail_and_resume_retries_them(
    pdf, tiny_engine, tmp_path, monkeypatch, capsys
):
    out = tmp_path / "pages.jsonl"
    args = ["ocr", str(pdf), "--out", str(out), "--resume", "--model", "tiny", "--max-new-tokens", "3", "--dpi", "36"]
    original = InternVL.batch
    monkeypatch.setattr(
        InternVL, "batch", lambda self, conversations, **kw: [_error_item(TOO_LONG)] * len(conversations)
    )
    assert cli.main(args) == cli.EXIT_PAGES_FAILED
    err = capsys.readouterr().err
    assert "0 of 3 pages ok, 3 failed" in err and "--resume" in err
    assert completed_pages(out, "ocr") == set()
    assert {r.error_type for r in load_results(out)} == {"ContextLengthError"}

    monkeypatch.setattr(InternVL, "batch", original)
    assert cli.main(args) == cli.EXIT_OK
    assert "3 of 3 pages ok, 0 failed" in capsys.readouterr().err
    assert [(r.page, r.ok) for r in load_results(out)] == [(1, True), (2, True), (3, True)]


def test_the_llamaindex_reader_gives_an_error_answer_page_no_text_and_a_typed_error(pdf, tiny_engine):
    readers = pytest.importorskip("llama_index.readers.internvl")
    reader = readers.InternVLPDFReader(
        engine=ErrorItemEngine(tiny_engine, _error_item(TOO_LONG)),
        dpi=36,
        max_new_tokens=3,
        progress=False,
        render_backend="thread",
    )
    docs = reader.load_data(pdf)
    assert [("error" in d.metadata) for d in docs] == [False, True, False]
    assert docs[1].text == "" and docs[1].metadata["error_type"] == "ContextLengthError"


def test_the_langchain_loader_gives_an_error_answer_page_no_content_and_a_typed_error(pdf, tiny_engine):
    loaders = pytest.importorskip("langchain_internvl")
    loader = loaders.InternVLPDFLoader(
        pdf,
        engine=ErrorItemEngine(tiny_engine, _error_item(TOO_LONG)),
        model=tiny_engine.model_name,
        max_tokens=3,
        dpi=36,
    )
    docs = list(loader.lazy_load())
    assert [("error" in d.metadata) for d in docs] == [False, True, False]
    assert docs[1].page_content == "" and docs[1].metadata["error_type"] == "ContextLengthError"
    assert [
        d.metadata["page"]
        for d in loader.__class__(
            pdf, engine=loader.settings.engine, model=tiny_engine.model_name, max_tokens=3, dpi=36, skip_failed=True
        ).lazy_load()
    ] == [0, 2]
