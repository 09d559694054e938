"""Provenance (#17) as a specification: layout blocks in three coordinate spaces, chunks that keep page and
regions, the repetition guard and read_pdf's one retry. Model answers are recorded/scripted; the tiny model only
carries the plumbing."""

from __future__ import annotations

import re
from types import SimpleNamespace

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from PIL import Image

from internvl_tools.documents import (
    LAYOUT_PROMPT,
    REPETITION_RETRY,
    Block,
    PageResult,
    blocks_markdown,
    chunk_pages,
    parse_layout,
    read_pdf,
)
from internvl_tools.errors import ConfigError
from internvl_tools.generation.options import GenerationOptions
from internvl_tools.generation.stopping import RepetitionGuard, find_repetition
from internvl_tools.results import ChatResult, Usage

# A recorded layout answer: heading, two paragraph lines, a list, a table, a caption, a line with no box.
ANSWER = (
    "<ref># Annual report</ref><box>[[100, 40, 900, 80]]</box>\n"
    "<ref>Sales grew in every region.</ref><box>[[100, 100, 900, 120]]</box>\n"
    "<ref>Costs fell.</ref><box>[[100, 125, 500, 145]]</box>\n"
    "<ref>- North: up</ref><box>[[120, 200, 600, 220]]</box>\n"
    "<ref>- South: flat</ref><box>[[120, 225, 600, 245]]</box>\n"
    "<ref>| Region | Sales |</ref><box>[[100, 300, 900, 320]]</box>\n"
    "<ref>|---|---|</ref><box>[[100, 320, 900, 325]]</box>\n"
    "<ref>| North | 12 |</ref><box>[[100, 325, 900, 345]]</box>\n"
    "<ref>Table 1: Sales by region.</ref><box>[[100, 350, 900, 370]]</box>\n"
    "<ref>[chart]</ref><box>[[100, 400, 900, 800]]</box>\n"
    "A footnote the model wrote without a box.\n"
)
IMAGE_SIZE = (1000, 2000)
PAGE_PT = (500.0, 1000.0)


def test_layout_blocks_kinds_order_text_and_boxes_in_three_spaces() -> None:
    layout = parse_layout(ANSWER, IMAGE_SIZE, PAGE_PT)
    got = [(b.order, b.kind, b.text) for b in layout.blocks]
    assert got == [
        (0, "heading", "# Annual report"),
        (1, "paragraph", "Sales grew in every region. Costs fell."),
        (2, "list", "- North: up\n- South: flat"),
        (3, "table", "| Region | Sales |\n|---|---|\n| North | 12 |"),
        (4, "caption", "Table 1: Sales by region."),
        (5, "chart", "[chart]"),
        (6, "paragraph", "A footnote the model wrote without a box."),
    ]
    para = layout.blocks[1]
    assert para.box_norm1000 == (100, 100, 900, 145)  # the union of its lines
    assert para.box_px == (100.0, 200.0, 900.0, 290.0)  # v / 1000 * (W, H) pixels
    assert para.box_pt == (50.0, 100.0, 450.0, 145.0)  # v / 1000 * page points, origin top-left
    footnote = layout.blocks[6]
    assert footnote.box_norm1000 is footnote.box_px is footnote.box_pt is None
    assert any("block 6" in w and "box=None" in w for w in layout.warnings)
    assert layout.markdown == blocks_markdown(layout.blocks)


@pytest.mark.parametrize(
    ("answer", "kinds", "warning"),
    [
        ("", [], None),
        ("plain text\n\nsecond paragraph", ["paragraph", "paragraph"], "no boxes"),
        ("<ref>a</ref><box>[[1, 2, 3", ["paragraph"], "truncated"),  # cut off inside its box
        ("<ref>a</ref><box>[[1, 2, nan, 4]]</box>", ["paragraph"], "non_finite"),
        ("<ref>x</ref>\n<ref>y</ref><box>[[0, 0, 10, 10]]</box>", ["paragraph", "paragraph"], "block 0"),
        ("<box>[[0, 0, 10, 10]]</box>", [], None),  # a box with no text is no block
        ("<ref>| a |</ref><box>[[0,0,5,5]]</box><ref>| b |</ref><box>[[0,5,5,9]]</box>", ["table"], None),
        ("\x00<ref>\ud800</ref>]]]][[[[", ["paragraph"], None),
    ],
)
def test_layout_parser_is_tolerant(answer: str, kinds: list[str], warning: str | None) -> None:
    layout = parse_layout(answer, (100, 100), None)
    assert [b.kind for b in layout.blocks] == kinds
    if warning is not None:
        assert any(warning in w for w in layout.warnings), layout.warnings
    for block in layout.blocks:
        assert block.box_pt is None  # no page size in points (an image): no point boxes


@given(st.text(max_size=300))
@settings(max_examples=60, deadline=None)
def test_layout_parser_never_raises(text: str) -> None:
    parse_layout(text, (640, 480), (612.0, 792.0))


# ------------------------------------------------------------------------------------------------ chunks

WORD = st.text(alphabet="abcdefghij", min_size=1, max_size=12)
KINDS = ("heading", "paragraph", "list", "table", "caption", "other")


@st.composite
def block_lists(draw: st.DrawFn) -> list[Block]:
    blocks = []
    for order in range(draw(st.integers(0, 12))):
        kind = draw(st.sampled_from(KINDS))
        if kind == "table":
            rows = draw(st.lists(st.lists(WORD, min_size=1, max_size=3), min_size=1, max_size=6))
            text = "\n".join("| " + " | ".join(r) + " |" for r in rows)
        elif kind == "list":
            items = draw(st.lists(st.lists(WORD, min_size=1, max_size=8), min_size=1, max_size=6))
            text = "\n".join("- " + " ".join(i) for i in items)
        else:
            sentences = draw(st.lists(st.lists(WORD, min_size=1, max_size=10), min_size=1, max_size=5))
            text = " ".join(" ".join(s) + "." for s in sentences)
        boxed = draw(st.booleans())
        box = (float(order), float(order), float(order + 10), float(order + 10)) if boxed else None
        blocks.append(Block(kind=kind, text=text, order=order, box_pt=box, box_px=box, box_norm1000=box))
    return blocks


@given(block_lists(), st.integers(8, 200))
@settings(max_examples=150, deadline=None)
def test_chunks_tile_the_page_and_keep_provenance(blocks: list[Block], max_chars: int) -> None:
    text = blocks_markdown(blocks)
    page = PageResult(page=3, label="iii", task="layout", text=text, blocks=blocks, page_size_pt=(612.0, 792.0))
    chunks = chunk_pages([page], max_chars=max_chars, source="a.pdf", document_id="doc-1")
    # The chunks tile the page: slices in order, separated by whitespace only.
    rebuilt, cursor = "", 0
    for chunk in chunks:
        assert text[chunk.char_start : chunk.char_end] == chunk.text
        gap = text[cursor : chunk.char_start]
        assert not gap.strip()
        rebuilt += gap + chunk.text
        cursor = chunk.char_end
    assert rebuilt + text[cursor:] == text and not text[cursor:].strip()
    by_order = {b.order: b for b in blocks}
    for index, chunk in enumerate(chunks):
        assert (chunk.page, chunk.page_label, chunk.source, chunk.document_id) == (3, "iii", "a.pdf", "doc-1")
        assert chunk.chunk_index == index and chunk.id == f"doc-1#page=3&chunk={index}"
        assert chunk.boxes == [by_order[o].box_pt for o in chunk.block_orders]  # one box per block held
        held = [by_order[o] for o in chunk.block_orders]
        if len(chunk.text) > max_chars:  # only an unsplittable piece may overflow: a table, an item, a word
            assert len(held) == 1
            kind = held[0].kind
            assert kind == "table" or (kind == "list" and chunk.text.count("\n- ") == 0) or " " not in chunk.text
        for block in held:
            if block.kind == "table":
                assert block.text in chunk.text  # a table is never split
            if block.kind == "list":  # a list splits between items only
                assert chunk.text.startswith("- ") or block is not held[0] or block.text.startswith(chunk.text)


def test_chunk_metadata_is_json_and_pages_without_blocks_chunk_by_sections() -> None:
    import json

    layout = parse_layout(ANSWER, IMAGE_SIZE, PAGE_PT)
    pages = [
        PageResult(page=1, label="1", task="layout", text=layout.markdown, blocks=layout.blocks, page_size_pt=PAGE_PT),
        PageResult(page=2, label="2", task="ocr", text="# T\n\nbody text"),
        PageResult(page=3, label="3", task="ocr", error="page 3: X: y", error_type="X"),
    ]
    chunks = chunk_pages(pages, max_chars=60, source="r.pdf")
    assert {c.page for c in chunks} == {1, 2}  # failed pages have no chunks
    meta = chunks[0].metadata()
    assert json.loads(json.dumps(meta)) == meta
    assert meta["boxes"][0] == [50.0, 40.0, 450.0, 80.0] and meta["page"] == 1 and meta["document_id"] == "r.pdf"
    assert [c.text for c in chunks if c.page == 2] == ["# T\n\nbody text"]
    assert [c.boxes for c in chunks if c.page == 2] == [[None, None]]
    with pytest.raises(ConfigError, match="max_chars"):
        chunk_pages(pages, max_chars=0)


# ------------------------------------------------------------------------------------------------ repetition


@pytest.mark.parametrize(
    ("ids", "expected"),
    [
        ([7] * 99, None),  # under the minimum span
        ([7] * 100, (0, 1)),
        ([1, 2, 3] + [4, 5] * 60, (3, 2)),
        (list(range(50)) + list(range(40)) * 10, (50, 40)),  # a 40-token row written 10 times
        (list(range(50)) + list(range(40)) * 9, None),  # 9 copies are not yet a loop
        ([9, 9, 9] + [1, 2, 3, 4, 5] * 30 + [6], None),  # the loop ended: the answer moved on
        (list(range(1000)), None),
        ([], None),
    ],
)
def test_find_repetition(ids: list[int], expected: tuple[int, int] | None) -> None:
    assert find_repetition(ids) == expected


class LoopingModel:
    """A fake causal LM whose greedy continuation enters a loop of period 3 after a short preamble."""

    vocab = 16

    def __init__(self) -> None:
        self.steps = 0

    def __call__(self, input_ids, **kwargs):
        import torch

        self.steps += 1
        last = int(input_ids[0, -1])
        following = {10: 11, 11: 12, 12: 1, 1: 2, 2: 3, 3: 1}
        logits = torch.zeros((input_ids.shape[0], 1, self.vocab))
        logits[:, -1, following.get(last, 10)] = 1.0
        return SimpleNamespace(logits=logits, past_key_values=None)


def test_guard_stops_a_looping_generation_within_a_bounded_number_of_tokens() -> None:
    import torch

    from internvl_tools.generation.decoding import decode

    prompt = torch.tensor([[5, 6]])
    model = LoopingModel()
    out = decode(
        model,
        prompt,
        torch.ones_like(prompt),
        None,
        max_new_tokens=5000,
        eos_token_id=15,
        pad_token_id=14,
        stopping=[RepetitionGuard(prompt.shape[1])],
    )
    new = out[0].tolist()
    assert len(new) <= 3 + 100 + 3  # preamble + the minimum span + one period of slack, not 5000
    assert find_repetition(new) == (3, 3)


def test_finish_result_marks_and_cuts_a_loop() -> None:
    from internvl_tools.engines.generate import finish_result

    tokenizer = SimpleNamespace(decode=lambda ids, skip_special_tokens=False: " ".join(map(str, ids)))
    state = SimpleNamespace(
        tokenizer=tokenizer,
        template=SimpleNamespace(postprocess=lambda t: t),
        drop_ids=frozenset(),
        eos_token_id=15,
        pad_token_id=14,
    )
    prepared = SimpleNamespace(image_tokens=0, num_tiles=0)
    ids = [10, 11, 12] + [1, 2, 3] * 40
    guarded = GenerationOptions(max_new_tokens=200, stop_repetition=True)
    result = finish_result(ids + [14] * 5, 2, prepared, guarded, state, 200, "m")
    assert (result.finish_reason, result.text, result.usage.completion_tokens) == ("repetition", "10 11 12 1 2 3", 6)
    plain = finish_result(ids + [14] * 5, 2, prepared, GenerationOptions(max_new_tokens=200), state, 200, "m")
    assert plain.finish_reason == "stop" and plain.text.count("1 2 3") == 40


# ------------------------------------------------------------------------------------------------ read_pdf


def _answer(text: str, finish: str = "stop") -> ChatResult:
    return ChatResult(text=text, usage=Usage(prompt_tokens=1, completion_tokens=1), finish_reason=finish)  # type: ignore[arg-type]


class ScriptedEngine:
    """Answers from a script, one per call (batch items and chat calls alike); records the generation kwargs."""

    model_name = "scripted"
    info = SimpleNamespace(image_size=448, max_dynamic_patch=12, use_thumbnail=True)

    def __init__(self, script: list[ChatResult]) -> None:
        self.script, self.calls = list(script), []

    def batch(self, conversations, **kwargs):
        self.calls.append(("batch", kwargs))
        return [self.script.pop(0) for _ in conversations]

    def chat(self, conversation, **kwargs):
        self.calls.append(("chat", kwargs))
        assert conversation[0]["content"][1]["text"] == LAYOUT_PROMPT
        return self.script.pop(0)


def _image(tmp_path) -> str:
    path = tmp_path / "page.png"
    Image.new("RGB", (400, 800), "white").save(path)
    return str(path)


LOOP = "<ref>the</ref><box>[[1, 1, 2, 2]]</box>" + " the" * 50


@pytest.mark.parametrize(
    ("script", "ok", "finish", "warning", "error_type"),
    [
        ([_answer(ANSWER)], True, "stop", None, None),
        ([_answer(LOOP, "repetition"), _answer(ANSWER)], True, "stop", "repetition loop", None),
        ([_answer(LOOP, "repetition"), _answer(LOOP, "repetition")], False, "repetition", None, "RepetitionError"),
    ],
)
def test_read_pdf_layout_and_the_repetition_retry(tmp_path, script, ok, finish, warning, error_type) -> None:
    engine = ScriptedEngine(script)
    [page] = list(read_pdf(engine, _image(tmp_path), task="layout", progress=False, backend="thread"))
    assert (page.ok, page.finish_reason, page.error_type) == (ok, finish, error_type)
    assert engine.script == []
    first = {k: v for k, v in engine.calls[0][1].items() if k != "batch_size"}
    assert first["stop_repetition"] is True and first["max_new_tokens"] == 4096
    if len(engine.calls) > 1:  # the retry: once, with the loop-breaking settings
        assert engine.calls[1] == ("chat", {**first, **REPETITION_RETRY})
    if ok:
        assert page.text == blocks_markdown(page.blocks) and len(page.blocks) == 7
        assert page.blocks[0].box_px == (40.0, 32.0, 360.0, 64.0)  # 1000-scale to the 400 x 800 image
        assert page.grounding is not None and page.grounding.raw_text == ANSWER
    else:
        assert page.blocks is None and page.text.startswith("<ref>the</ref>")  # what was read is kept
        assert "repetition_penalty=1.1" in page.error
    if warning:
        assert any(warning in w for w in page.warnings)
    assert re.search(r"box=None", " ".join(page.warnings)) or not ok


# ------------------------------------------------------------------------------------------------ drawing


@pytest.mark.parametrize(
    "box",
    [
        (100, 300, 600, 400),  # room above: the label sits above
        (100, 0, 600, 80),  # at the top edge: the label sits below
        (20, 500, 40, 520),  # a small box keeps its label outside too
        (900, 10, 1000, 30),  # at the right edge
    ],
)
def test_draw_never_paints_a_label_over_its_own_box(box: tuple[int, int, int, int]) -> None:
    from internvl_tools.grounding import draw, parse_grounding

    image = Image.new("RGB", (400, 400), "white")
    result = parse_grounding(f"<ref>a long label here</ref><box>[[{', '.join(map(str, box))}]]</box>", image.size)
    plain = draw(image, result, show_labels=False, width=1)
    labelled = draw(image, result, width=1)
    x1, y1, x2, y2 = (round(v) for v in result.boxes[0].xyxy)
    interior = [(x, y) for x in range(x1 + 1, x2 - 1) for y in range(y1 + 1, y2 - 1)]
    assert interior and all(labelled.getpixel(p) == plain.getpixel(p) for p in interior)
    assert labelled.tobytes() != plain.tobytes()  # the label was drawn somewhere


def test_chunk_draw_highlights_its_regions_translucently() -> None:
    layout = parse_layout(ANSWER, IMAGE_SIZE, PAGE_PT)
    page = PageResult(
        page=1, label="1", task="layout", text=layout.markdown, blocks=layout.blocks, page_size_pt=PAGE_PT
    )
    chunk = chunk_pages([page], max_chars=60)[0]
    image = Image.new("RGB", (250, 500), (0, 0, 0))
    image.putpixel((100, 25), (255, 255, 255))  # "ink" inside the heading's region (50..450 x 40..80 pt)
    out = chunk.draw(image)
    inside, outside = out.getpixel((100, 30)), out.getpixel((100, 450))
    assert inside != (0, 0, 0) and outside == (0, 0, 0)  # highlighted in, untouched out
    assert out.getpixel((100, 25)) != inside and sum(out.getpixel((100, 25))) > 3 * 128  # ink shows through
    with pytest.raises(ConfigError, match="space_size"):
        chunk.model_copy(update={"page_size_pt": None}).draw(image)
