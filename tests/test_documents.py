"""The document pipeline as a specification: opening, page selection, rendering, tasks, failures, output, resume.

Every PDF is generated here: hand-written born-digital text (Helvetica), image-only scans, rotated pages, a chart
page, an encrypted file, a corrupt page object, a 0-page file and a 300-page file.
"""

from __future__ import annotations

import io
import json
import multiprocessing as mp
import zlib
from pathlib import Path

import pytest
from PIL import Image, ImageDraw
from pydantic import BaseModel

from internvl_tools.documents import (
    DEFAULT_LONGEST_SIDE,
    PageResult,
    ReadOptions,
    default_longest_side,
    iter_jsonl,
    load_results,
    page_count,
    parse_chart_answer,
    parse_markdown_table,
    parse_pages,
    read_pdf,
    render_pages,
    to_markdown,
    write_jsonl,
    write_markdown,
)
from internvl_tools.documents.output import DamagedRecordWarning
from internvl_tools.errors import (
    ConfigError,
    DocumentError,
    GenerationError,
    InternVLError,
    MediaNotFoundError,
    PageSelectionError,
    PasswordError,
)
from internvl_tools.tiling import select_grid

GEN = {"max_new_tokens": 3, "progress": False}


# ------------------------------------------------------------------------------------------------ PDF writers


def write_pdf(pages: list[dict], labels: str | None = None, corrupt: int | None = None) -> bytes:
    """A minimal PDF: each page is {"size": (w, h), "text": [...], "rotate": deg, "ops": extra content}."""
    objects: list[bytes] = []

    def add(body: bytes) -> int:
        objects.append(body)
        return len(objects)

    catalog = add(b"")
    tree = add(b"")
    font = add(b"<< /Type /Font /Subtype /Type1 /BaseFont /Helvetica >>")
    kids = []
    for i, page in enumerate(pages):
        w, h = page.get("size", (200, 100))
        ops = page.get("ops", b"")
        for line_no, line in enumerate(page.get("text", [])):
            ops += f"BT /F1 10 Tf 10 {h - 20 - 14 * line_no} Td ({line}) Tj ET\n".encode()
        content = add(b"<< /Length %d >>\nstream\n" % len(ops) + ops + b"\nendstream")
        rotate = f" /Rotate {page['rotate']}" if page.get("rotate") else ""
        body = (
            f"<< /Type /Page /Parent {tree} 0 R /MediaBox [0 0 {w} {h}]{rotate} "
            f"/Resources << /Font << /F1 {font} 0 R >> >> /Contents {content} 0 R >>"
        ).encode()
        if corrupt == i:
            body = b"<< /Type /Pag#e /Parent @@ broken ((( /MediaBox [0 0 x"
        kids.append(add(body))
    objects[tree - 1] = f"<< /Type /Pages /Kids [{' '.join(f'{k} 0 R' for k in kids)}] /Count {len(kids)} >>".encode()
    label_part = ""
    if labels:  # the /Nums array of a /PageLabels number tree
        label_part = f" /PageLabels << /Nums [{labels}] >>"
    objects[catalog - 1] = f"<< /Type /Catalog /Pages {tree} 0 R{label_part} >>".encode()
    out = io.BytesIO()
    out.write(b"%PDF-1.7\n")
    offsets = []
    for n, body in enumerate(objects, 1):
        offsets.append(out.tell())
        out.write(b"%d 0 obj\n" % n + body + b"\nendobj\n")
    xref = out.tell()
    out.write(b"xref\n0 %d\n0000000000 65535 f \n" % (len(objects) + 1))
    for off in offsets:
        out.write(b"%010d 00000 n \n" % off)
    out.write(b"trailer\n<< /Size %d /Root %d 0 R >>\nstartxref\n%d\n%%%%EOF\n" % (len(objects) + 1, catalog, xref))
    return out.getvalue()


def scan_pdf(n: int, size: tuple[int, int] = (170, 240)) -> bytes:
    frames = []
    for i in range(n):
        im = Image.new("RGB", size, (250, 250, 245))
        ImageDraw.Draw(im).text((10, 10), f"scan {i + 1}", fill=(0, 0, 0))
        frames.append(im)
    buf = io.BytesIO()
    frames[0].save(buf, "PDF", save_all=True, append_images=frames[1:], resolution=72.0)
    return buf.getvalue()


CHART_OPS = b"0 0 1 rg 20 10 20 40 re f 0 1 0 rg 60 10 20 70 re f 1 0 0 rg 100 10 20 25 re f\n"


@pytest.fixture(scope="module")
def docs(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    root = tmp_path_factory.mktemp("docs")
    files = {
        "text": write_pdf(
            [
                {"size": (612, 792), "text": ["Invoice 42", "Total: 17.50 EUR"]},
                {"size": (595, 842), "text": ["Second page about penguins"]},
                {"size": (300, 200), "text": ["Landscape"]},
            ],
            labels="0 << /S /r >> 2 << /S /D >>",
        ),
        "rotated": write_pdf(
            [
                {"size": (200, 100), "rotate": 90, "text": ["turned"]},
                {"size": (200, 100), "rotate": 180},
                {"size": (200, 100)},
            ]
        ),
        "chart": write_pdf([{"size": (140, 100), "ops": CHART_OPS, "text": ["Sales"]}]),
        "corrupt": write_pdf([{"text": ["one"]}, {"text": ["two"]}, {"text": ["three"]}], corrupt=1),
        "empty": write_pdf([]),
        "long": write_pdf([{"size": (60, 80)}] * 300),
        "scan": scan_pdf(3),
    }
    paths = {}
    for name, data in files.items():
        paths[name] = root / f"{name}.pdf"
        paths[name].write_bytes(data)
    frames = [Image.new("RGB", (64, 48), c) for c in ("red", "green", "blue")]
    paths["tiff"] = root / "pages.tiff"
    frames[0].save(paths["tiff"], save_all=True, append_images=frames[1:])
    paths["png"] = root / "page.png"
    frames[0].save(paths["png"])
    pypdf = pytest.importorskip("pypdf")
    writer = pypdf.PdfWriter(clone_from=io.BytesIO(files["text"]))
    writer.encrypt(user_password="s3cret", owner_password="owner", algorithm="RC4-128")
    paths["encrypted"] = root / "encrypted.pdf"
    with open(paths["encrypted"], "wb") as fh:
        writer.write(fh)
    return paths


# ------------------------------------------------------------------------------------------------ page selection


@pytest.mark.parametrize(
    ("spec", "count", "expected"),
    [
        (None, 3, [0, 1, 2]),
        ("1-3,7", 10, [0, 1, 2, 6]),
        ("7, 1-2", 10, [0, 1, 6]),
        ("2-", 4, [1, 2, 3]),
        ("3-3", 3, [2]),
        (2, 5, [1]),
        ([5, 1, 5], 5, [0, 4]),
        (range(1, 3), 2, [0, 1]),
    ],
)
def test_parse_pages_selects_one_based_pages(spec, count, expected) -> None:
    assert parse_pages(spec, count) == expected


@pytest.mark.parametrize(
    ("spec", "count", "message"),
    [
        ("0", 5, "has 5 page"),
        ("4-2", 5, "backwards"),
        ("1-9", 5, "6, 7, 8, 9"),
        ("a", 5, "'a'"),
        ("", 5, "nothing"),
        ([1.5], 5, "int"),
        (True, 5, "not a page selection"),
        ("1", 0, "0 page"),
        ("0-2", 5, "start at 1"),
    ],
)
def test_bad_page_selections_raise_a_typed_error_naming_the_problem(spec, count, message) -> None:
    with pytest.raises(PageSelectionError, match=message) as info:
        parse_pages(spec, count)
    assert isinstance(info.value, ValueError) and isinstance(info.value, InternVLError)


# ------------------------------------------------------------------------------------------------ opening


def test_pdf_opens_from_path_bytes_and_file_object(docs) -> None:
    data = docs["text"].read_bytes()
    assert page_count(docs["text"]) == page_count(str(docs["text"])) == page_count(data) == 3
    with open(docs["text"], "rb") as fh:
        assert [p.number for p in render_pages(fh, dpi=36)] == [1, 2, 3]


def test_encrypted_pdf_needs_the_right_password(docs) -> None:
    with pytest.raises(PasswordError, match="encrypted; pass password"):
        render_pages(docs["encrypted"])
    with pytest.raises(PasswordError, match="wrong"):
        render_pages(docs["encrypted"], password="nope")
    pages = list(render_pages(docs["encrypted"], password="s3cret", dpi=36))
    assert [p.label for p in pages] == ["i", "ii", "1"] and all(p.ok for p in pages)


@pytest.mark.parametrize(
    ("source", "error"),
    [
        (b"", DocumentError),
        (b"%PDF-1.4\nnot really a pdf", DocumentError),
        (b"hello, world", DocumentError),
        ("/no/such/file.pdf", MediaNotFoundError),
        (12, TypeError),
    ],
)
def test_unreadable_sources_raise_typed_errors(source, error) -> None:
    with pytest.raises(error):
        render_pages(source)


def test_zero_page_pdf_yields_nothing_and_rejects_any_selection(docs, tiny_engine) -> None:
    assert page_count(docs["empty"]) == 0
    assert list(render_pages(docs["empty"])) == []
    with pytest.raises(PageSelectionError, match="0 page"):
        render_pages(docs["empty"], pages="1")
    stream = read_pdf(tiny_engine, docs["empty"], **GEN)
    assert list(stream) == [] and stream.summary.total == 0 and stream.summary.finished


def test_multipage_tiff_and_plain_images_are_documents(docs) -> None:
    pages = list(render_pages(docs["tiff"]))
    assert [(p.number, p.size_px, p.image.getpixel((0, 0))) for p in pages] == [
        (1, (64, 48), (255, 0, 0)),
        (2, (64, 48), (0, 128, 0)),
        (3, (64, 48), (0, 0, 255)),
    ]
    assert [p.number for p in render_pages(docs["tiff"], pages="2-3")] == [2, 3]
    [png] = list(render_pages(docs["png"], longest_side=32))
    assert png.size_px == (32, 24) and png.scale == pytest.approx(0.5)


# ------------------------------------------------------------------------------------------------ rendering


def test_pages_carry_number_label_sizes_and_scale(docs) -> None:
    pages = list(render_pages(docs["text"], dpi=72))
    assert [p.number for p in pages] == [1, 2, 3]
    assert [p.label for p in pages] == ["i", "ii", "1"]
    assert [p.size_pt for p in pages] == [(612, 792), (595, 842), (300, 200)]
    assert [p.size_px for p in pages] == [(612, 792), (595, 842), (300, 200)]
    assert all(p.dpi == pytest.approx(72) for p in pages)
    # born-digital text is drawn: the text region holds dark pixels
    assert pages[0].image.convert("L").crop((0, 0, 200, 60)).getextrema()[0] < 100


@pytest.mark.parametrize(
    ("dpi", "longest_side", "expected"),
    [(144, None, (1224, 1584)), (None, 396, (306, 396)), (300, 500, (387, 500)), (36, 1000, (306, 396))],
)
def test_resolution_by_dpi_or_longest_side(docs, dpi, longest_side, expected) -> None:
    page = next(iter(render_pages(docs["text"], dpi=dpi, longest_side=longest_side, pages="1")))
    assert page.size_px == expected


def test_default_resolution_fills_the_largest_tile_grid_without_upsampling(docs) -> None:
    assert DEFAULT_LONGEST_SIDE == 1792 == default_longest_side(448, 12)
    page = next(iter(render_pages(docs["text"], pages="1")))  # Letter: the 3x4 grid, 1344 x 1792 pixels
    assert max(page.size_px) == 1792
    cols, rows = select_grid(*page.size_px)
    assert cols * 448 <= page.size_px[0] + 1 and rows * 448 <= page.size_px[1] + 1
    assert default_longest_side(56, 12) == 224 and default_longest_side(448, 1) == 448


def test_page_rotation_is_honoured(docs) -> None:
    pages = list(render_pages(docs["rotated"], dpi=72))
    assert [p.rotation for p in pages] == [90, 180, 0]
    assert [p.size_px for p in pages] == [(100, 200), (200, 100), (200, 100)]
    assert [p.size_pt for p in pages] == [(100, 200), (200, 100), (200, 100)]


def test_corrupt_page_object_fails_alone(docs) -> None:
    pages = list(render_pages(docs["corrupt"], dpi=36))
    assert [p.number for p in pages] == [1, 2, 3]
    assert [p.ok for p in pages] == [True, False, True]
    assert pages[1].image is None and "page 2" in pages[1].error
    with pytest.raises(DocumentError, match="page 2"):
        list(render_pages(docs["corrupt"], dpi=36, on_error="raise"))


@pytest.mark.parametrize("backend", ["thread", "process"])
def test_both_backends_render_the_same_pixels(docs, backend) -> None:
    ref = [p.image.tobytes() for p in render_pages(docs["scan"], dpi=36, backend="thread")]
    got = list(render_pages(docs["scan"], dpi=36, backend=backend))
    assert [p.image.tobytes() for p in got] == ref


def test_300_page_pdf_is_lazy_and_early_exit_reaps_the_worker(docs) -> None:
    stream = render_pages(docs["long"], dpi=18, prefetch=2)
    assert len(stream) == 300 and stream.page_count == 300 and stream.backend == "process"
    first = [next(stream) for _ in range(3)]
    assert [p.number for p in first] == [1, 2, 3]
    proc = stream.process
    assert proc.is_alive()  # blocked on the bounded queue, not racing through 300 pages
    stream.close()
    assert proc.exitcode is not None and not proc.is_alive()
    assert proc not in mp.active_children()
    assert [p.label for p in render_pages(docs["long"], dpi=18, pages="299-300")] == ["299", "300"]


def test_bad_render_options_raise(docs) -> None:
    for kwargs in ({"dpi": 0}, {"longest_side": 3}, {"backend": "gpu"}, {"prefetch": 0}):
        with pytest.raises(ConfigError):
            render_pages(docs["text"], **kwargs)


# ------------------------------------------------------------------------------------------------ tasks


def _run(engine, source, **kw):
    stream = read_pdf(engine, source, dpi=kw.pop("dpi", 36), **{**GEN, **kw})
    return list(stream), stream.summary


def test_ocr_over_pages_yields_typed_results(docs, tiny_engine) -> None:
    results, summary = _run(tiny_engine, docs["text"], batch_size=2)
    assert [r.page for r in results] == [1, 2, 3] and [r.label for r in results] == ["i", "ii", "1"]
    assert all(r.ok and r.task == "ocr" and r.text is not None and r.usage.num_tiles >= 1 for r in results)
    assert [r.image_size for r in results] == [(306, 396), (298, 421), (150, 100)]
    assert all(r.dpi == pytest.approx(36) and r.model == tiny_engine.model_name for r in results)
    assert (summary.total, summary.succeeded, summary.failed, summary.finished) == (3, 3, 0, True)
    if hasattr(tiny_engine, "read_pdf"):
        assert [r.page for r in tiny_engine.read_pdf(docs["text"], pages="2", dpi=36, **GEN)] == [2]


def test_batched_results_match_one_page_at_a_time(docs, tiny_engine) -> None:
    batched, _ = _run(tiny_engine, docs["scan"], batch_size=3)
    single, _ = _run(tiny_engine, docs["scan"], batch_size=1)
    assert [r.text for r in batched] == [r.text for r in single]


def test_default_resolution_follows_the_engine_tiles(docs, tiny_engine) -> None:
    [result] = list(read_pdf(tiny_engine, docs["text"], pages="1", **GEN))
    assert max(result.image_size) == default_longest_side(tiny_engine.info.image_size, 12)


def test_failed_pages_are_isolated_and_counted(docs, tiny_engine) -> None:
    results, summary = _run(tiny_engine, docs["corrupt"])
    assert [(r.page, r.ok) for r in results] == [(1, True), (2, False), (3, True)]
    assert results[1].error_type and results[1].text is None
    assert (summary.succeeded, summary.failed, summary.failed_pages) == (2, 1, [2])
    assert "1 failed" in str(summary)


class FlakyEngine:
    """The tiny engine, except that generation fails for images of one width (as a too-long page would)."""

    def __init__(self, engine, bad_width: int) -> None:
        self.engine, self.bad_width, self.model_name, self.info = engine, bad_width, engine.model_name, engine.info
        self.calls: list[str] = []

    def _check(self, conversation) -> None:
        if conversation[0]["content"][0]["image"].width == self.bad_width:
            raise GenerationError("out of memory on this page")

    def batch(self, conversations, **kw):
        self.calls.append(f"batch{len(conversations)}")
        for conversation in conversations:
            self._check(conversation)
        return self.engine.batch(conversations, **kw)

    def chat(self, conversation, **kw):
        self.calls.append("chat")
        self._check(conversation)
        return self.engine.chat(conversation, **kw)


def test_generation_failure_spares_the_rest_of_its_batch(docs, tiny_engine) -> None:
    flaky = FlakyEngine(tiny_engine, bad_width=298)  # page 2 of the text PDF at 36 DPI
    results, summary = _run(flaky, docs["text"], batch_size=3)
    assert [(r.page, r.ok) for r in results] == [(1, True), (2, False), (3, True)]
    assert results[1].error_type == "GenerationError" and "out of memory" in results[1].error
    assert flaky.calls == ["batch3", "chat", "chat", "chat"]
    assert (summary.succeeded, summary.failed, summary.failed_pages) == (2, 1, [2])


def test_chart_task_returns_description_and_table_fields(docs, tiny_engine) -> None:
    [result], _ = _run(tiny_engine, docs["chart"], task="chart")
    assert result.task == "chart" and set(result.data) == {"has_chart", "description", "table"}


def test_chart_answer_parsing() -> None:
    answer = "A bar chart of sales.\n\n| Year | Sales |\n|:--|--:|\n| 2023 | 10 |\n| 2024 | 12 | extra |\n"
    assert parse_chart_answer(answer) == {
        "has_chart": True,
        "description": "A bar chart of sales.",
        "table": {"columns": ["Year", "Sales"], "rows": [["2023", "10"], ["2024", "12"]]},
    }
    assert parse_chart_answer("No chart.")["has_chart"] is False
    assert parse_markdown_table("| a |\n| b |") is None


class ChartData(BaseModel):
    title: str
    values: list[int]


def test_schema_task_extracts_validated_data_per_page(docs, tiny_engine) -> None:
    results, _ = _run(tiny_engine, docs["chart"], task=ChartData, max_new_tokens=60)
    [result] = results
    assert result.task == "ChartData"
    if result.ok:
        assert ChartData.model_validate(result.data)
    else:  # a random model may not finish the JSON in 60 tokens: reported, not raised
        assert result.error_type in {"ValueError", "StructuredOutputError"}


def test_question_over_every_page_and_over_the_most_relevant(docs, tiny_engine) -> None:
    results, _ = _run(tiny_engine, docs["text"], question="What is the total?")
    assert [r.task for r in results] == ["qa"] * 3 and all(r.question == "What is the total?" for r in results)
    top, summary = _run(tiny_engine, docs["text"], question="Which page mentions penguins?", top_pages=1)
    assert [r.page for r in top] == [2] and top[0].relevance == pytest.approx(0.5)
    assert summary.skipped == 2


def test_bad_read_pdf_arguments_raise_before_work(docs, tiny_engine) -> None:
    for kwargs in (
        {"task": "summarise"},
        {"task": "chart", "question": "q"},
        {"batch_size": 0},
        {"task": "qa"},
        {"top_pages": 2},
    ):
        with pytest.raises(ConfigError):
            read_pdf(tiny_engine, docs["text"], **kwargs)
    with pytest.raises(PasswordError):
        read_pdf(tiny_engine, docs["encrypted"])


class Invoice(BaseModel):
    total: float


def test_bad_read_options_raise_at_the_call_naming_the_option(docs, tiny_engine) -> None:
    bad = {
        "dpi": 0,
        "longest_side": 3,
        "backend": "gpu",
        "prefetch": 0,
        "page_timeout": -1,
        "page_memory_mb": 8,
        "max_new_tokens": 0,
    }
    for name, value in bad.items():
        with pytest.raises(ConfigError, match=name):
            read_pdf(tiny_engine, docs["text"], **{name: value})  # not iterated: raised before any page
    with pytest.raises(ConfigError, match="options=ReadOptions"):
        read_pdf(tiny_engine, docs["text"], options=ReadOptions(), dpi=36)


def test_options_object_reads_like_the_keywords(docs, tiny_engine) -> None:
    options = ReadOptions(dpi=36, pages="1-2", batch_size=2, max_new_tokens=3, progress=False)
    assert options == ReadOptions(dpi=36, pages="1-2", batch_size=2, max_new_tokens=3, progress=False)
    by_options = [r.text for r in read_pdf(tiny_engine, docs["text"], options=options)]
    by_keywords = [r.text for r in read_pdf(tiny_engine, docs["text"], dpi=36, pages="1-2", batch_size=2, **GEN)]
    assert by_options == by_keywords and len(by_options) == 2
    assert options.generation_kwargs() == {"do_sample": False, "max_new_tokens": 3, "stop_repetition": True}
    assert ReadOptions(task=Invoice).generation_kwargs()["max_new_tokens"] == 1024


def test_read_pdf_passes_the_media_policy_and_page_limits_to_rendering(docs, tiny_engine, monkeypatch) -> None:
    from internvl_tools.documents import pipeline
    from internvl_tools.media import MediaPolicy

    seen: list[dict] = []

    def spy(*args, **kwargs):
        seen.append(kwargs)
        return render_pages(*args, **kwargs)

    monkeypatch.setattr(pipeline, "render_pages", spy)
    policy = MediaPolicy()
    monkeypatch.setattr(tiny_engine, "media_policy", policy, raising=False)
    list(read_pdf(tiny_engine, docs["text"], pages="1", dpi=36, page_timeout=30, page_memory_mb=512, **GEN))
    [kwargs] = seen
    assert (kwargs["policy"], kwargs["page_timeout"], kwargs["page_memory_mb"]) == (policy, 30, 512)
    list(read_pdf(tiny_engine, docs["text"], pages="1", dpi=36, **GEN))
    assert (seen[1]["page_timeout"], seen[1]["page_memory_mb"]) == (60.0, 2048)  # the render defaults


def test_schema_prompt_states_the_schema_with_the_core_instruction(docs, tiny_engine) -> None:
    from internvl_tools.documents.tasks import SCHEMA_PROMPT
    from internvl_tools.generation.structured import json_instruction, json_schema_of
    from internvl_tools.results import ChatResult, Usage

    class Recorder:
        def __init__(self, engine) -> None:
            self.engine, self.prompts = engine, []

        def __getattr__(self, name):
            return getattr(self.engine, name)

        def generate_structured(self, conversation, schema, **kwargs):
            self.prompts.append(conversation[0]["content"][1]["text"])
            return ChatResult(
                text='{"total": 1}', usage=Usage(prompt_tokens=1, completion_tokens=1), finish_reason="stop"
            )

    engine = Recorder(tiny_engine)
    [result] = list(read_pdf(engine, docs["text"], task=Invoice, pages="1", dpi=36, **GEN))
    schema = json_schema_of(Invoice)
    assert engine.prompts == [f"{SCHEMA_PROMPT}\n{json_instruction(schema)}"]
    assert engine.prompts[0] == (
        f"{SCHEMA_PROMPT}\nAnswer with a JSON object that follows this JSON schema:\n{json.dumps(schema)}"
    )
    assert result.ok and result.data == {"total": 1.0}


def test_documents_package_reexports_its_modules(docs) -> None:
    import internvl_tools
    from internvl_tools import documents

    for name in ("DamagedRecordWarning", "repair_jsonl_tail", "ReadOptions", "PageLimits", "render_pages"):
        assert name in documents.__all__ and name in internvl_tools.__all__
        assert getattr(documents, name) is getattr(internvl_tools, name)
    for module in (
        documents.models,
        documents.options,
        documents.output,
        documents.pipeline,
        documents.render,
        documents.sizing,
        documents.tasks,
    ):
        for name in module.__all__:  # each module lists only what it defines
            value = getattr(module, name)
            assert getattr(value, "__module__", module.__name__) in (module.__name__, "builtins", "typing"), name


def test_progress_bar_counts_pages(docs, tiny_engine, capsys) -> None:
    list(read_pdf(tiny_engine, docs["scan"], dpi=36, max_new_tokens=2, progress=True))
    err = capsys.readouterr().err
    assert "3/3" in err and "page/s" in err
    list(read_pdf(tiny_engine, docs["scan"], dpi=36, max_new_tokens=2, progress=None))  # not a tty: off
    assert "3/3" not in capsys.readouterr().err


# ------------------------------------------------------------------------------------------------ output / resume


def test_jsonl_roundtrip_markdown_and_resume(docs, tiny_engine, tmp_path) -> None:
    out = tmp_path / "run.jsonl"
    stream = read_pdf(tiny_engine, docs["corrupt"], dpi=36, resume_from=out, **GEN)  # no file yet: nothing skipped
    write_jsonl(stream, out)
    assert stream.summary.skipped == 0
    lines = [json.loads(line) for line in out.read_text().splitlines()]
    assert [(d["page"], d["error"] is None) for d in lines] == [(1, True), (2, False), (3, True)]
    # a crash mid-write leaves half a line: resuming warns, redoes only the failed page, and appending drops the
    # cut-off bytes first, so the retried record is whole (tests/reliability/test_documents_jsonl_resume.py: all cuts)
    with open(out, "a") as fh:
        fh.write('{"page": 3, "lab')
    with pytest.warns(DamagedRecordWarning, match="line 4"):
        again = read_pdf(tiny_engine, docs["corrupt"], dpi=36, resume_from=out, **GEN)
    redone = list(again)
    assert [r.page for r in redone] == [2] and again.summary.skipped == 2
    with pytest.warns(DamagedRecordWarning, match="16 bytes"):
        write_jsonl(redone, out, append=True)
    assert [r.page for r in iter_jsonl(out)] == [1, 2, 3, 2]
    merged = load_results(out)
    assert [r.page for r in merged] == [1, 2, 3]
    md = write_markdown(merged, tmp_path / "run.md").read_text()
    assert md.index("<!-- page 1 label=1 -->") < md.index("<!-- page 2 label=2 -->") < md.index("page 3")
    assert "error: " in md


def test_resume_skips_only_pages_done_for_the_same_task(tmp_path, docs, tiny_engine) -> None:
    out = tmp_path / "r.jsonl"
    write_jsonl(
        [PageResult(page=1, label="i", task="chart", text="x"), PageResult(page=2, label="ii", task="ocr", text="y")],
        out,
    )
    results, summary = _run(tiny_engine, docs["text"], resume_from=out)
    assert [r.page for r in results] == [1, 3] and summary.skipped == 1 and summary.total == 3


def test_markdown_renders_structured_data_as_json() -> None:
    md = to_markdown([PageResult(page=4, label="iv", task="ChartData", data={"title": "t", "values": [1]})])
    assert md.startswith("<!-- page 4 label=iv -->") and '"values": [\n' in md


def test_deflate_free_writer_sanity() -> None:
    # the hand-written PDFs stay readable by PDFium without compression
    assert zlib is not None and page_count(write_pdf([{"text": ["x"]}])) == 1


@pytest.mark.skipif(not __import__("sys").platform.startswith("linux"), reason="F_SETPIPE_SZ is Linux-only")
def test_the_worker_page_pipe_is_widened_so_a_page_crosses_in_few_reads(tmp_path, monkeypatch):
    """Each pipe read gives the GIL away; behind a busy thread, getting it back costs up to 5 ms per read."""
    from internvl_tools.documents import worker

    worker.SPARE.close()  # the next document starts its workers now, under the spy
    seen: list[int | None] = []
    original = worker.widen_pipe
    monkeypatch.setattr(worker, "widen_pipe", lambda fh, *a: seen.append(original(fh, *a)) or seen[-1])
    pdf = tmp_path / "one.pdf"
    pdf.write_bytes(write_pdf([{"size": (200, 200), "text": ["hello"]}]))
    pages = list(render_pages(pdf, backend="process"))
    assert [p.error for p in pages] == [None]
    assert seen and seen[0] is not None and seen[0] >= worker.PIPE_BYTES


def test_a_spare_worker_waits_for_the_next_document_and_serves_it(tmp_path):
    """The second document is served by the worker started while the first one rendered (no interpreter start)."""
    from internvl_tools.documents import worker

    pdf = tmp_path / "one.pdf"
    pdf.write_bytes(write_pdf([{"size": (200, 200), "text": ["hello"]}]))
    worker.SPARE.close()
    list(render_pages(pdf, backend="process"))
    spare = worker.SPARE._held
    assert spare is not None and spare[0].poll() is None
    pids: list[int] = []
    stream = render_pages(pdf, backend="process")
    stream.__next__()
    pids.append(stream.process.pid)
    stream.close()
    assert pids == [spare[0].pid]
    assert worker.SPARE._held is not None and worker.SPARE._held[0].pid != spare[0].pid


def test_the_spare_is_not_used_after_the_environment_changed_and_close_reaps_it(tmp_path, monkeypatch):
    from internvl_tools.documents import worker

    pdf = tmp_path / "one.pdf"
    pdf.write_bytes(write_pdf([{"size": (200, 200), "text": ["hello"]}]))
    list(render_pages(pdf, backend="process"))
    old = worker.SPARE._held[0]
    monkeypatch.setenv("INTERNVL_TEST_MARKER", "changed")
    stream = render_pages(pdf, backend="process")
    stream.__next__()
    assert stream.process.pid != old.pid
    stream.close()
    assert old.poll() is not None  # the stale spare was killed and reaped, not leaked
    current = worker.SPARE._held[0]
    worker.SPARE.close()
    assert current.poll() is not None and worker.SPARE._held is None
