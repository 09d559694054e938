"""Specification of InternVL grounding: parsing ``<ref>…</ref><box>[[…]]</box>``, geometry, prompts, drawing, export.

Expected pixel values are worked out by hand from InternVL's convention (``v / 1000 * W``); most table cases use a
1000×1000 image so that the expected pixel box is the number the model wrote.
"""

from __future__ import annotations

import io
import json
import math
import random
import time
from collections import Counter

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from PIL import Image
from pydantic import ValidationError

from internvl_tools.errors import ConfigError, DependencyMissingError
from internvl_tools.grounding import (
    DETECTION_ANSWER_PREFACE,
    detection_prompt,
    draw,
    format_box,
    format_grounding,
    grounded_ocr_prompt,
    grounding_prompt,
    parse_grounding,
    region_prompt,
    to_internvl_record,
    to_swift_record,
    write_jsonl,
)
from internvl_tools.grounding.result import GroundingResult
from internvl_tools.grounding.types import BoundingBox, GroundedObject, GroundingWarning

LADY = (427, 640)  # the RefCOCO image of docs/internvl_reference.md §7


def xyxy(result: GroundingResult) -> list[list[float]]:
    return [list(b.xyxy) for b in result.boxes]


def codes(result: GroundingResult) -> Counter[str]:
    return Counter(w.code for w in result.warnings)


# ---------------------------------------------------------------------------------------------------------------
# §7 reference vectors (ours keeps every box, not just the first)
# ---------------------------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "coords", "expected", "warning_codes"),
    [
        ("<ref>the lady</ref><box>[[243, 469, 558, 746]]</box>", "norm1000", [[103.761, 300.16, 238.266, 477.44]], []),
        ("the lady[[243, 469, 558, 746]]", "norm1000", [[103.761, 300.16, 238.266, 477.44]], []),
        (
            "<ref>x</ref><box>[[10, 20, 30, 40], [500, 500, 900, 950]]</box>",
            "norm1000",
            [[4.27, 12.8, 12.81, 25.6], [213.5, 320.0, 384.3, 608.0]],
            [],
        ),
        ("<box>[[243, 469, 558, 746]</box>", "norm1000", [[103.761, 300.16, 238.266, 477.44]], ["unclosed_bracket"]),
        ("<box>[[243.5, 469.2, 558.0, 746.9]]</box>", "norm1000", [[103.9745, 300.288, 238.266, 478.016]], []),
        ("[0.12, 0.30, 0.55, 0.90]", "norm1", [[51.24, 192.0, 234.85, 576.0]], []),
        # The official eval's "sum < 4 means 0-1" quirk would give [0, 0, 427, 1280]; coords is explicit here.
        ("<box>[[0, 0, 1, 2]]</box>", "norm1000", [[0.0, 0.0, 0.427, 1.28]], []),
        ("<box>[[243, 469, 558", "norm1000", [], ["truncated"]),
        ("The lady is not in the picture.", "norm1000", [], []),
    ],
)
def test_reference_vectors(text, coords, expected, warning_codes):
    result = parse_grounding(text, LADY, coords=coords)
    assert xyxy(result) == [pytest.approx(box, abs=1e-6) for box in expected]
    assert codes(result) == Counter(warning_codes)


def test_reference_vector_labels():
    assert parse_grounding("<ref>the lady</ref><box>[[243, 469, 558, 746]]</box>", LADY).labels == ["the lady"]
    assert parse_grounding("the lady[[243, 469, 558, 746]]", LADY).labels == ["the lady"]


def test_normalising_matches_reference():
    assert format_box([100, 200, 300, 400], LADY) == "<box>[[234, 312, 703, 625]]</box>"
    assert BoundingBox(x1=100, y1=200, x2=300, y2=400).to_normalized(LADY) == (234, 312, 703, 625)


# ---------------------------------------------------------------------------------------------------------------
# Real-looking answers: (text, coords, image size, expected (label, box) pairs, expected warning codes)
# ---------------------------------------------------------------------------------------------------------------

V3DET = (
    "Sure, I will detect and label all objects in the image and mark their positions.\n\n```\n"
    "<ref>Bulletproof Helmet</ref><box>[[1, 2, 269, 235]]</box>\n"
    "<ref>Bulletproof Clothing</ref><box>[[650, 619, 990, 993]]</box>\n"
    "<ref>95 Type Assault Rifle</ref><box>[[39, 229, 983, 667]]</box>\n"
    "<ref>Wireless Walkie-Talkie</ref><box>[[295, 2, 370, 226], [374, 0, 447, 226]]</box>\n"
    "<ref>bomb</ref><box>[[473, 61, 552, 181], [569, 61, 648, 183]]</box>\n```\n"
)
V3DET_BOXES = [
    ("Bulletproof Helmet", [1, 2, 269, 235]),
    ("Bulletproof Clothing", [650, 619, 990, 993]),
    ("95 Type Assault Rifle", [39, 229, 983, 667]),
    ("Wireless Walkie-Talkie", [295, 2, 370, 226]),
    ("Wireless Walkie-Talkie", [374, 0, 447, 226]),
    ("bomb", [473, 61, 552, 181]),
    ("bomb", [569, 61, 648, 183]),
]
K = (1000, 1000)

TABLE = [
    pytest.param(V3DET, "norm1000", K, V3DET_BOXES, [], id="detection-output"),
    pytest.param(
        V3DET.replace("<ref>", "").replace("</ref>", "").replace("<box>", "").replace("</box>", ""),
        "norm1000",
        K,
        V3DET_BOXES,
        [],
        id="detection-tags-stripped",
    ),
    pytest.param(
        V3DET,
        "norm1000",
        (800, 400),
        [(label, [box[0] * 0.8, box[1] * 0.4, box[2] * 0.8, box[3] * 0.4]) for label, box in V3DET_BOXES],
        [],
        id="detection-scaled-to-800x400",
    ),
    pytest.param(
        "<ref>person</ref><box>[[10, 20, 30, 40], [50, 60, 70, 80], [90, 10",
        "norm1000",
        K,
        [("person", [10, 20, 30, 40]), ("person", [50, 60, 70, 80])],
        ["truncated"],
        id="truncated-list",
    ),
    pytest.param(
        "<ref>a</ref><box>[[1, 2, 3, 4", "norm1000", K, [("a", None)], ["truncated"], id="truncated-after-4-numbers"
    ),
    pytest.param("<ref>a", "norm1000", K, [("a", None)], ["truncated"], id="truncated-in-ref"),
    pytest.param(
        "<ref>cat</ref><box>[[1, 2, 3, 4]]",
        "norm1000",
        K,
        [("cat", [1, 2, 3, 4])],
        ["truncated"],
        id="truncated-before-close-tag",
    ),
    pytest.param(
        "<box>[245, [100, 200, 300, 400]]</box>",
        "norm1000",
        K,
        [(None, [100, 200, 300, 400])],
        ["stray_numbers"],
        id="nested-list-with-stray-number",
    ),
    pytest.param(
        "<ref>a</ref><box>[[[100, 200, 300, 400]], [[500, 600, 700, 800]]]</box>",
        "norm1000",
        K,
        [("a", [100, 200, 300, 400]), ("a", [500, 600, 700, 800])],
        [],
        id="deeply-nested",
    ),
    pytest.param(
        "<ref>car</ref><box>[[100, 200, 300, 99999999999999999999999999]]</box>",
        "norm1000",
        K,
        [("car", None)],
        ["runaway_number"],
        id="runaway-digits",
    ),
    pytest.param(
        "<ref>car</ref><box>[[100, 200, 300, 400], [1, 2, 3, 99999" + "9" * 500,
        "norm1000",
        K,
        [("car", [100, 200, 300, 400])],
        ["truncated"],
        id="runaway-digits-truncated",
    ),
    pytest.param(
        "<box>[[100, 200, 300, 20000], [1, 2, 3, 4]]</box>",
        "norm1000",
        K,
        [(None, [1, 2, 3, 4])],
        ["runaway_number"],
        id="beyond-ten-times-scale",
    ),
    pytest.param(
        "<ref>dog</ref><box>[[0.1, 0.2, 0.5, 0.75]]</box>",
        "norm1",
        (200, 100),
        [("dog", [20, 20, 100, 75])],
        [],
        id="norm1-floats",
    ),
    pytest.param(
        "<ref>dog</ref><box>[[0.1, 0.2, 1.2, 0.75]]</box>",
        "norm1",
        (200, 100),
        [("dog", [20, 20, 200, 75])],
        ["out_of_range"],
        id="norm1-out-of-range",
    ),
    pytest.param(
        "<ref>x</ref><box>[[10, 20, 30, 40]]</box>",
        "pixel",
        (50, 60),
        [("x", [10, 20, 30, 40])],
        [],
        id="pixel",
    ),
    pytest.param(
        "<ref>x</ref><box>[[10, 20, 70, 40]]</box>",
        "pixel",
        (50, 60),
        [("x", [10, 20, 50, 40])],
        ["out_of_range"],
        id="pixel-clipped",
    ),
    pytest.param(
        "The answer is <box>[[100, 100, 200, 200]]</box>.",
        "norm1000",
        K,
        [(None, [100, 100, 200, 200])],
        [],
        id="box-without-ref",
    ),
    pytest.param(
        "<ref>unicorn</ref> is not in the image.",
        "norm1000",
        K,
        [("unicorn", None)],
        ["ref_without_box"],
        id="ref-without-box",
    ),
    pytest.param(
        "<ref>a</ref><box>[[300, 400, 100, 200]]</box>",
        "norm1000",
        K,
        [("a", [100, 200, 300, 400])],
        ["reversed_corners"],
        id="reversed-corners",
    ),
    pytest.param(
        "<ref>a</ref><box>[[-20, 50, 1100, 900]]</box>",
        "norm1000",
        K,
        [("a", [0, 50, 1000, 900])],
        ["out_of_range"],
        id="negative-and-over-scale",
    ),
    pytest.param(
        "<ref>a</ref><box>[[1, 2, 3], [1, 2, 3, 4, 5], [10, 20, 30, 40]]</box>",
        "norm1000",
        K,
        [("a", [10, 20, 30, 40])],
        ["wrong_count", "wrong_count"],
        id="wrong-counts",
    ),
    pytest.param(
        "<box>[[nan, 1, 2, 3], [1, 2, inf, 4], [5, 6, 7, 8]]</box>",
        "norm1000",
        K,
        [(None, [5, 6, 7, 8])],
        ["non_finite", "non_finite"],
        id="nan-inf",
    ),
    pytest.param(
        "<ref> the cat </ref>\n<box>\n[ [ 10 ,20,\n 30 , 40 ] ]\n</box>",
        "norm1000",
        K,
        [("the cat", [10, 20, 30, 40])],
        [],
        id="spaces-and-newlines",
    ),
    pytest.param(
        "<ref>cat<box>[[1, 2, 3, 4]]</box>",
        "norm1000",
        K,
        [("cat", [1, 2, 3, 4])],
        ["unclosed_tag"],
        id="missing-close-ref",
    ),
    pytest.param(
        "<ref>cat</ref><box>[[1, 2, 3, 4]]\n<ref>dog</ref><box>[[5, 6, 7, 8]]</box>",
        "norm1000",
        K,
        [("cat", [1, 2, 3, 4]), ("dog", [5, 6, 7, 8])],
        ["unclosed_tag"],
        id="missing-close-box",
    ),
    pytest.param(
        "<ref>猫</ref><box>［［１０，２０，３０，４０］］</box>",
        "norm1000",
        K,
        [("猫", [10, 20, 30, 40])],
        [],
        id="full-width-brackets-digits-commas",
    ),
    pytest.param(
        "A <ref>man</ref><box>[[1, 2, 3, 4]]</box> rides a <ref>horse</ref><box>[[5, 6, 7, 8]]</box>.",
        "norm1000",
        K,
        [("man", [1, 2, 3, 4]), ("horse", [5, 6, 7, 8])],
        [],
        id="grounded-caption",
    ),
    pytest.param(
        "<ref>a</ref><box>[[1, 2, 3, 4]]</box><box>[[5, 6, 7, 8]]</box>",
        "norm1000",
        K,
        [("a", [1, 2, 3, 4]), ("a", [5, 6, 7, 8])],
        [],
        id="two-box-tags-one-ref",
    ),
    pytest.param(
        "<ref>a</ref><box>[[1, 2, 3, 4]]</box>\n<box>[[5, 6, 7, 8]]</box>",
        "norm1000",
        K,
        [("a", [1, 2, 3, 4]), (None, [5, 6, 7, 8])],
        [],
        id="box-on-next-line-is-unlabelled",
    ),
    pytest.param(
        "walkie[[1, 2, 3, 4]] [[5, 6, 7, 8]]\n[[9, 9, 10, 10]]",
        "norm1000",
        K,
        [("walkie", [1, 2, 3, 4]), ("walkie", [5, 6, 7, 8]), (None, [9, 9, 10, 10])],
        [],
        id="stripped-continuation",
    ),
    pytest.param(
        "<ref>a</ref><box>[[10, 10, 10, 20]]</box>",
        "norm1000",
        K,
        [("a", [10, 10, 10, 20])],
        ["degenerate_box"],
        id="degenerate",
    ),
    pytest.param("<ref>a</ref><box></box>", "norm1000", K, [("a", None)], ["box_without_list"], id="empty-box-tag"),
    pytest.param("</box> hello </ref>", "norm1000", K, [], ["stray_tag", "stray_tag"], id="stray-closing-tags"),
    pytest.param(
        "<box>[[1, 2, 3, 4]]]</box>",
        "norm1000",
        K,
        [(None, [1, 2, 3, 4])],
        [],
        id="extra-closing-bracket",
    ),
    pytest.param(
        "<box>[1, 2, 3, 4], [5, 6, 7, 8]</box>",
        "norm1000",
        K,
        [(None, [1, 2, 3, 4]), (None, [5, 6, 7, 8])],
        [],
        id="single-bracket-lists-in-box",
    ),
    pytest.param(
        "<ref>item [2]</ref><box>[[1, 2, 3, 4]]</box>",
        "norm1000",
        K,
        [("item [2]", [1, 2, 3, 4])],
        [],
        id="brackets-inside-label",
    ),
    pytest.param(
        "<ref>a</ref><box>[[1e2, 2.5E2, 3., .4]]</box>",
        "norm1000",
        K,
        [("a", [3, 0.4, 100, 250])],
        ["reversed_corners"],
        id="float-syntax",
    ),
    pytest.param(
        "<REF>a</REF><BOX>[[1, 2, 3, 4]]</BOX>",
        "norm1000",
        K,
        [("a", [1, 2, 3, 4])],
        [],
        id="upper-case-tags",
    ),
]


@pytest.mark.parametrize(("text", "coords", "size", "expected", "warning_codes"), TABLE)
def test_real_looking_answers(text, coords, size, expected, warning_codes):
    result = parse_grounding(text, size, coords=coords)
    got = [(obj.label, list(box.xyxy)) for obj in result.objects for box in obj.boxes]
    want = [(label, pytest.approx(box, abs=1e-9)) for label, box in expected if box is not None]
    assert got == want
    # Objects that exist without boxes (a ref the model never boxed) are kept too.
    assert [obj.label for obj in result.objects if not obj.boxes] == [lb for lb, box in expected if box is None]
    assert codes(result) == Counter(warning_codes)
    for w in result.warnings:
        assert 0 <= w.start <= w.end <= len(text)
        assert w.message


def test_warning_says_what_and_where():
    text = "<ref>a</ref><box>[[1, 2, 3]]</box>"
    (warning,) = parse_grounding(text, K).warnings
    assert warning.code == "wrong_count"
    assert text[warning.start : warning.end] == "[1, 2, 3]"
    assert "3 number" in warning.message and "offset 18" in warning.message


def test_warning_points_at_runaway_number():
    text = "<box>[[1, 2, 3, 123456789012]]</box>"
    (warning,) = parse_grounding(text, K).warnings
    assert warning.code == "runaway_number"
    assert "123456789012" in warning.message and text[warning.start : warning.end] == "[1, 2, 3, 123456789012]"


def test_repeated_labels_stay_separate_and_by_label_merges():
    text = (
        "<ref>a</ref><box>[[1, 1, 2, 2]]</box><ref>b</ref><box>[[3, 3, 4, 4]]</box>"
        "<ref>a</ref><box>[[5, 5, 6, 6]]</box>"
    )
    result = parse_grounding(text, K)
    assert [o.label for o in result.objects] == ["a", "b", "a"]
    groups = result.by_label()
    assert list(groups) == ["a", "b"]
    assert [b.xyxy for b in groups["a"]] == [(1, 1, 2, 2), (5, 5, 6, 6)]


def test_caller_errors_are_typed():
    for bad in [(0, 10), (10, -1), (1.5, 2), "10x10", None, (10,), (True, 3)]:
        with pytest.raises(ConfigError):
            parse_grounding("<box>[[1, 2, 3, 4]]</box>", bad)
    with pytest.raises(ConfigError):
        parse_grounding("x", K, coords="auto")


def test_non_string_text_never_raises():
    assert parse_grounding(None, K).boxes == []
    assert xyxy(parse_grounding(b"<box>[[1, 2, 3, 4]]</box>", K)) == [[1, 2, 3, 4]]


# ---------------------------------------------------------------------------------------------------------------
# Property-based: round trip and robustness
# ---------------------------------------------------------------------------------------------------------------


@st.composite
def image_and_box(draw_):
    width = draw_(st.integers(1, 5000))
    height = draw_(st.integers(1, 5000))
    xs = sorted(draw_(st.floats(0, width, allow_nan=False)) for _ in range(2))
    ys = sorted(draw_(st.floats(0, height, allow_nan=False)) for _ in range(2))
    return (width, height), BoundingBox(x1=xs[0], y1=ys[0], x2=xs[1], y2=ys[1])


@settings(max_examples=300, deadline=None)
@given(image_and_box(), st.sampled_from(["the red car", "猫", "a b", "x"]), st.booleans())
def test_round_trip_within_one_scale_unit(size_and_box, label, strip_tags):
    size, box = size_and_box
    text = f"<ref>{label}</ref>{format_box(box, size)}"
    if strip_tags:
        text = text.replace("<ref>", "").replace("</ref>", "").replace("<box>", "").replace("</box>", "")
    result = parse_grounding(text, size)
    assert result.warnings == [] or all(w.code == "degenerate_box" for w in result.warnings)
    (back,) = result.boxes
    unit_x, unit_y = size[0] / 1000, size[1] / 1000
    for got, want, unit in zip(back.xyxy, box.xyxy, (unit_x, unit_y, unit_x, unit_y), strict=True):
        assert abs(got - want) <= unit + 1e-9
    assert result.labels == [label]


@st.composite
def results(draw_):
    width, height = draw_(st.integers(1, 3000)), draw_(st.integers(1, 3000))
    objects = []
    for _ in range(draw_(st.integers(0, 4))):
        label = draw_(st.one_of(st.none(), st.text("abcxyz 猫-", min_size=1, max_size=8).filter(str.strip)))
        boxes = []
        for _ in range(draw_(st.integers(1, 3))):
            xs = sorted(draw_(st.floats(0, width)) for _ in range(2))
            ys = sorted(draw_(st.floats(0, height)) for _ in range(2))
            boxes.append(BoundingBox(x1=xs[0], y1=ys[0], x2=xs[1], y2=ys[1]))
        objects.append(GroundedObject(label=label.strip() if label else None, boxes=boxes))
    return GroundingResult(objects=objects, image_size=(width, height))


@settings(max_examples=150, deadline=None)
@given(results())
def test_format_then_parse_round_trips(result):
    back = parse_grounding(format_grounding(result), result.image_size)
    assert len(back.boxes) == len(result.boxes)
    assert back.labels == result.labels
    ux, uy = result.image_size[0] / 1000, result.image_size[1] / 1000
    for got, want in zip(back.boxes, result.boxes, strict=True):
        assert np.allclose(got.xyxy, want.xyxy, atol=max(ux, uy) + 1e-9)


def check_invariants(text: str, result: GroundingResult) -> None:
    width, height = result.image_size
    for box in result.boxes:
        assert 0 <= box.x1 <= box.x2 <= width and 0 <= box.y1 <= box.y2 <= height
        assert all(math.isfinite(v) for v in box.xyxy)
    for w in result.warnings:
        assert 0 <= w.start <= w.end <= len(text)
    assert len(result.warnings) <= 101
    assert result.raw_text == text


@settings(max_examples=400, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.text(), st.sampled_from(["norm1000", "norm1", "pixel"]))
def test_any_text_parses_without_raising(text, coords):
    check_invariants(text, parse_grounding(text, (640, 480), coords=coords))


@settings(max_examples=600, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.text(alphabet="<>[]/refbox0123456789,. \n-", max_size=300))
def test_dense_grammar_fuzz_never_raises(text):
    check_invariants(text, parse_grounding(text, (333, 777)))


@settings(max_examples=200, deadline=None)
@given(
    st.lists(
        st.sampled_from(
            [
                "<ref>",
                "</ref>",
                "<box>",
                "</box>",
                "[",
                "]",
                "[[",
                "]]",
                ", ",
                "1",
                "250",
                "999",
                "-3",
                "1e9",
                "nan",
                "9999999999",
                "cat",
                "\n",
                " ",
                "，",
                "［",
                "0.5",
                "Sure, I will detect",
            ]
        ),
        max_size=60,
    )
)
def test_token_soup_never_raises(pieces):
    text = "".join(pieces)
    check_invariants(text, parse_grounding(text, (100, 50)))


@pytest.mark.parametrize(
    "make",
    [
        pytest.param(lambda n: "9" * n, id="one-runaway-number"),
        pytest.param(lambda n: "[" * n, id="open-brackets"),
        pytest.param(lambda n: ("<ref>a" + "[1" * n)[:n], id="unclosed-ref-then-list"),
        pytest.param(lambda n: ("<ref>x</ref><box>[[1, 2, 3, 4]]</box>\n" * n)[:n], id="many-boxes"),
        pytest.param(lambda n: "".join(random.Random(0).choices("<>[]/refbox0123456789,. \n-", k=n)), id="noise"),
    ],
)
def test_megabyte_input_is_linear_and_fast(make):
    text = make(1_000_000)
    started = time.perf_counter()
    result = parse_grounding(text, (640, 480))
    elapsed = time.perf_counter() - started
    check_invariants(text, result)
    # Linear time: ~1 s per MB here even for the worst token densities; a quadratic scan would take hours.
    assert elapsed < 8, elapsed


# ---------------------------------------------------------------------------------------------------------------
# Models: geometry, validation, JSON
# ---------------------------------------------------------------------------------------------------------------

finite = st.floats(-1e4, 1e4, allow_nan=False)
boxes = st.builds(BoundingBox, x1=finite, y1=finite, x2=finite, y2=finite)


@settings(max_examples=300, deadline=None)
@given(boxes, boxes)
def test_iou_is_symmetric_and_bounded(a, b):
    assert a.iou(b) == pytest.approx(b.iou(a))
    assert 0.0 <= a.iou(b) <= 1.0
    if a.area > 1e-6:
        assert a.iou(a) == pytest.approx(1.0)


def test_geometry_by_hand():
    a = BoundingBox(x1=0, y1=0, x2=10, y2=10)
    b = BoundingBox(x1=5, y1=0, x2=15, y2=10)
    assert a.iou(b) == pytest.approx(50 / 150)
    assert a.iou(BoundingBox(x1=20, y1=20, x2=30, y2=30)) == 0.0
    assert (a.width, a.height, a.area, a.center, a.xywh) == (10, 10, 100, (5, 5), (0, 0, 10, 10))
    assert BoundingBox(x1=10, y1=10, x2=0, y2=0) == a  # corners reordered
    assert BoundingBox.from_xywh([5, 0, 10, 10]) == b
    assert BoundingBox.from_normalized([500, 0, 1000, 1000], (30, 10)).xyxy == (15, 0, 30, 10)


@settings(max_examples=200, deadline=None)
@given(boxes, st.integers(1, 4000), st.integers(1, 4000))
def test_clamp_stays_inside_and_is_idempotent(box, width, height):
    inside = box.clamp((width, height))
    assert 0 <= inside.x1 <= inside.x2 <= width and 0 <= inside.y1 <= inside.y2 <= height
    assert inside.clamp((width, height)) == inside
    if box.x1 >= 0 and box.x2 <= width and box.y1 >= 0 and box.y2 <= height:
        assert inside == box


@pytest.mark.parametrize("bad", [float("nan"), float("inf"), "abc"])
def test_box_refuses_non_finite(bad):
    with pytest.raises(ValidationError):
        BoundingBox(x1=bad, y1=0, x2=1, y2=1)


def test_json_schema_and_json_round_trip():
    schema = GroundingResult.model_json_schema()
    assert set(schema["properties"]) >= {"objects", "image_size", "raw_text", "warnings", "coords"}
    assert "BoundingBox" in json.dumps(schema) and "GroundingWarning" in json.dumps(schema)
    text = V3DET + "<ref>ghost</ref>\n<ref>x</ref><box>[[1, 2, 3]]</box>"
    result = parse_grounding(text, (800, 600)).with_image(Image.new("RGB", (800, 600)))
    dumped = result.model_dump_json()
    assert "_image" not in dumped
    again = GroundingResult.model_validate_json(dumped)
    assert again.model_dump() == result.model_dump()
    assert again == parse_grounding(text, (800, 600))  # equal once the (private) image is left out
    assert again.image is None
    assert [w.code for w in again.warnings] == ["ref_without_box", "wrong_count"]
    assert isinstance(again.warnings[0], GroundingWarning)


def test_result_validates_its_image_size():
    with pytest.raises(ValueError, match="image_size"):
        GroundingResult(image_size=(0, 5))


# ---------------------------------------------------------------------------------------------------------------
# Prompts
# ---------------------------------------------------------------------------------------------------------------


def test_prompts():
    assert grounding_prompt("the lady with the blue shirt") == (
        "Please provide the bounding box coordinate of the region this sentence describes: "
        "<ref>the lady with the blue shirt</ref>"
    )
    assert detection_prompt() == "Please detect and label all objects in the following image and mark their positions."
    assert "<ref>cat</ref>, <ref>dog</ref>" in detection_prompt(["cat", "dog"])
    assert region_prompt([100, 200, 300, 400], LADY).endswith("<box>[[234, 312, 703, 625]]</box>.")
    assert region_prompt(BoundingBox(x1=0, y1=0, x2=427, y2=640), LADY, "What is this?") == (
        "What is this? <box>[[0, 0, 1000, 1000]]</box>"
    )
    assert region_prompt([0, 0, 427, 640], LADY, "Is {box} a person?") == "Is <box>[[0, 0, 1000, 1000]]</box> a person?"
    assert "<ref>" in grounded_ocr_prompt() and grounded_ocr_prompt("zh") == "请识别图中所有文字，并输出坐标框"


@pytest.mark.parametrize(
    "call",
    [
        lambda: grounding_prompt(""),
        lambda: grounding_prompt("<ref>x</ref>"),
        lambda: detection_prompt([]),
        lambda: region_prompt([1, 2, 3], LADY),
        lambda: region_prompt([1, 2, 3, 4], (0, 0)),
        lambda: grounded_ocr_prompt("fr"),
    ],
)
def test_prompt_caller_errors(call):
    with pytest.raises(ConfigError):
        call()


def test_region_prompt_box_parses_back():
    box = BoundingBox(x1=12.5, y1=40, x2=300, y2=610)
    (back,) = parse_grounding(region_prompt(box, LADY), LADY).boxes
    assert np.allclose(back.xyxy, box.xyxy, atol=0.64)


# ---------------------------------------------------------------------------------------------------------------
# Drawing
# ---------------------------------------------------------------------------------------------------------------


def outline_band(box: BoundingBox, width: int, shape: tuple[int, int], slack: int = 1) -> np.ndarray:
    """Pixels within ``width`` (+ slack) of the edges of the box's pixel rectangle, inside it (+ slack outside)."""
    h, w = shape
    x1, y1 = math.floor(box.x1), math.floor(box.y1)
    x2, y2 = math.ceil(box.x2) - 1, math.ceil(box.y2) - 1
    yy, xx = np.mgrid[0:h, 0:w]
    outer = (xx >= x1 - slack) & (xx <= x2 + slack) & (yy >= y1 - slack) & (yy <= y2 + slack)
    t = width + slack
    inner = (xx >= x1 + t) & (xx <= x2 - t) & (yy >= y1 + t) & (yy <= y2 - t)
    return outer & ~inner


DRAW_TEXT = (
    "<ref>cat</ref><box>[[100, 100, 400, 500]]</box>\n"
    "<ref>dog</ref><box>[[550, 300, 900, 900], [50, 700, 300, 950]]</box>\n<box>[[600, 50, 700, 150]]</box>"
)


@pytest.mark.parametrize("background", ["uniform", "noise"])
def test_draw_changes_only_outlines_without_labels(background):
    size = (320, 240)
    if background == "uniform":
        image = Image.new("RGB", size, (128, 128, 128))
    else:
        image = Image.fromarray(np.random.default_rng(0).integers(0, 256, (240, 320, 3), dtype=np.uint8))
    result = parse_grounding(DRAW_TEXT, size)
    drawn = draw(image, result, width=3, show_labels=False)
    assert drawn.size == image.size and drawn is not image
    diff = np.any(np.asarray(drawn) != np.asarray(image.convert("RGB")), axis=-1)
    allowed = np.zeros_like(diff)
    for box in result.boxes:
        band = outline_band(box, 3, diff.shape)
        allowed |= band
        assert diff[band].sum() > 0.5 * band.sum(), "every outline is drawn"
    assert not (diff & ~allowed).any(), "nothing but the outlines changes"
    assert np.array_equal(np.asarray(image.convert("RGB")), np.asarray(image.convert("RGB")))  # input untouched


def test_draw_labels_stay_next_to_their_boxes():
    size = (320, 240)
    image = Image.new("RGB", size, (128, 128, 128))
    result = parse_grounding(DRAW_TEXT, size)
    font_size = 12
    drawn = draw(image, result, width=2, font_size=font_size)
    diff = np.any(np.asarray(drawn) != np.asarray(image), axis=-1)
    allowed = np.zeros_like(diff)
    yy, xx = np.mgrid[0 : size[1], 0 : size[0]]
    for label, box in zip(result.labels, result.boxes, strict=True):
        allowed |= outline_band(box, 2, diff.shape)
        if label:
            # A label rectangle starts at the box's left edge, just above the box or just inside its top.
            x1, y1 = math.floor(box.x1), math.floor(box.y1)
            w, h = len(label) * font_size + 8, 2 * font_size + 4
            region = (xx >= x1 - w) & (xx <= x1 + w) & (yy >= y1 - h) & (yy <= y1 + h)
            assert diff[region & ~outline_band(box, 2, diff.shape)].sum() > 0, f"label {label!r} is drawn"
            allowed |= region
    assert not (diff & ~allowed).any()
    # Unlabelled boxes get no label: the area above the fourth box (label None) only changes at its outline.
    assert result.labels[3] is None


def test_draw_colours_are_distinct_per_label_and_deterministic():
    size = (200, 200)
    image = Image.new("RGB", size, (128, 128, 128))
    result = parse_grounding(DRAW_TEXT, size)
    first = np.asarray(draw(image, result, show_labels=False))
    again = np.asarray(draw(image, result, show_labels=False))
    assert np.array_equal(first, again)
    colour = {}
    for label, box in zip(result.labels, result.boxes, strict=True):
        colour.setdefault(label, set()).add(tuple(first[math.floor(box.y1), math.floor(box.x1) + 5]))
    assert all(len(c) == 1 for c in colour.values())  # one colour per label
    assert len({next(iter(c)) for c in colour.values()}) == len(colour)  # distinct labels, distinct colours
    custom = np.asarray(draw(image, result, palette=["red"], show_labels=False))
    box = result.boxes[0]
    assert tuple(custom[math.floor(box.y1), math.floor(box.x1) + 5]) == (255, 0, 0)


def test_draw_scales_to_a_resized_image_and_handles_modes():
    result = parse_grounding("<ref>a</ref><box>[[250, 250, 750, 750]]</box>", (400, 400))
    small = draw(Image.new("L", (100, 100), 128), result, width=1, show_labels=False)
    arr = np.asarray(small)
    assert small.mode == "RGB"
    assert (arr[25, 30] != 128).any() and (arr[50, 50] == 128).all()


def test_notebook_display():
    result = parse_grounding("<ref>a</ref><box>[[250, 250, 750, 750]]</box>", (64, 64))
    assert result._repr_png_() is None
    png = result.with_image(Image.new("RGB", (64, 64), "white"))._repr_png_()
    assert png is not None and png.startswith(b"\x89PNG")
    assert Image.open(io.BytesIO(png)).size == (64, 64)
    with pytest.raises(ConfigError):
        parse_grounding("", (4, 4)).draw()


# ---------------------------------------------------------------------------------------------------------------
# Exports
# ---------------------------------------------------------------------------------------------------------------


def test_to_coco():
    result = parse_grounding(
        "<ref>cat</ref><box>[[0, 0, 500, 500]]</box><ref>dog</ref><box>[[500, 500, 1000, 1000]]</box>"
        "\n<box>[[0, 500, 100, 1000]]</box><ref>cat</ref><box>[[100, 100, 200, 200]]</box>",
        (200, 100),
    )
    coco = result.to_coco(image_id=7)
    assert coco["images"] == [{"id": 7, "width": 200, "height": 100}]
    assert coco["categories"] == [{"id": 1, "name": "cat"}, {"id": 2, "name": "dog"}, {"id": 3, "name": "object"}]
    anns = coco["annotations"]
    assert [a["category_id"] for a in anns] == [1, 2, 3, 1]
    assert anns[0]["bbox"] == [0, 0, 100, 50] and anns[0]["area"] == 5000 and anns[0]["image_id"] == 7
    assert [a["id"] for a in anns] == [1, 2, 3, 4]
    fixed = result.to_coco(categories=["dog", "bird"])
    assert [c["name"] for c in fixed["categories"]] == ["dog", "bird", "cat", "object"]


def test_to_supervision():
    result = parse_grounding(
        "<ref>cat</ref><box>[[0, 0, 500, 500], [500, 0, 1000, 500]]</box>\n<box>[[1, 2, 3, 4]]</box>", (200, 100)
    )
    xyxy_arr, names = result.to_supervision()
    assert xyxy_arr.dtype == np.float32 and xyxy_arr.shape == (3, 4)
    assert np.allclose(xyxy_arr[1], [100, 0, 200, 50])
    assert names == ["cat", "cat", "object"]
    empty, none = parse_grounding("", (5, 5)).to_supervision()
    assert empty.shape == (0, 4) and none == []


def test_to_detections_needs_supervision():
    try:
        import supervision  # noqa: F401
    except ImportError:
        with pytest.raises(DependencyMissingError, match="pip install supervision"):
            parse_grounding("", (5, 5)).to_detections()
    else:  # pragma: no cover - only where supervision is installed
        det = parse_grounding("<ref>a</ref><box>[[0, 0, 500, 500]]</box>", (10, 10)).to_detections()
        assert len(det) == 1 and list(det.data["class_name"]) == ["a"]


def test_internvl_record_matches_the_docs_refcoco_example():
    # InternVL docs, chat_data_format "Grounding / Detection Data": the RefCOCO line for this image.
    box = BoundingBox.from_normalized([243, 469, 558, 746], LADY)
    lady = GroundedObject(label="the lady with the blue shirt", boxes=[box])
    result = GroundingResult(objects=[lady], image_size=LADY)
    record = result.to_internvl_jsonl_record("COCO_train2014_000000581857.jpg", record_id=2324)
    assert record == {
        "id": 2324,
        "image": "COCO_train2014_000000581857.jpg",
        "width": 427,
        "height": 640,
        "conversations": [
            {
                "from": "human",
                "value": "<image>\nPlease provide the bounding box coordinate of the region this sentence describes: "
                "<ref>the lady with the blue shirt</ref>",
            },
            {"from": "gpt", "value": "<ref>the lady with the blue shirt</ref><box>[[243, 469, 558, 746]]</box>"},
        ],
    }


def test_internvl_record_for_detection_uses_the_official_exchange():
    result = parse_grounding(V3DET, (800, 800))
    record = to_internvl_record(result, "images/x.jpg")
    human, gpt = record["conversations"]
    assert human["value"] == "<image>\n" + detection_prompt()
    first_line = "<ref>Bulletproof Helmet</ref><box>[[1, 2, 269, 235]]</box>\n"
    assert gpt["value"].startswith(DETECTION_ANSWER_PREFACE + "\n\n" + first_line)
    assert "<ref>Wireless Walkie-Talkie</ref><box>[[295, 2, 370, 226], [374, 0, 447, 226]]</box>" in gpt["value"]
    # The answer parses back to the same boxes.
    assert np.allclose(xyxy(parse_grounding(gpt["value"], (800, 800))), xyxy(result))
    custom = to_internvl_record(result, "x.jpg", question="<image>\nFind the weapons.")
    assert custom["conversations"][0]["value"] == "<image>\nFind the weapons."
    assert not custom["conversations"][1]["value"].startswith("Sure")


def test_swift_record():
    result = parse_grounding(
        "<ref>cat</ref><box>[[0, 0, 500, 500], [500, 0, 1000, 500]]</box>\n"
        "<ref>dog</ref><box>[[0, 500, 250, 1000]]</box>",
        (200, 100),
    )
    record = to_swift_record(result, "/data/a.jpg")
    assert record["images"] == ["/data/a.jpg"]
    user, assistant = record["messages"]
    assert user == {"role": "user", "content": "<image>" + detection_prompt()}
    assert assistant["role"] == "assistant"
    assert assistant["content"] == DETECTION_ANSWER_PREFACE + "\n\n<ref-object><bbox><bbox>\n<ref-object><bbox>\n"
    assert record["objects"] == {
        "ref": ["cat", "dog"],
        "bbox": [[0, 0, 100, 50], [100, 0, 200, 50], [0, 50, 50, 100]],
        "bbox_type": "real",
        "image_id": [0, 0, 0],
    }
    # Placeholders and objects line up: one <ref-object> per ref, one <bbox> per box.
    assert assistant["content"].count("<ref-object>") == len(record["objects"]["ref"])
    assert assistant["content"].count("<bbox>") == len(record["objects"]["bbox"])


def test_write_jsonl_round_trip(tmp_path):
    a = parse_grounding("<ref>cat</ref><box>[[10, 20, 30, 40]]</box>", (640, 480))
    b = parse_grounding(V3DET, (800, 800))
    path = tmp_path / "train.jsonl"
    assert write_jsonl([(a, "a.jpg"), (b, "b.jpg")], path) == 2
    lines = [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines()]
    assert [rec["id"] for rec in lines] == [0, 1]
    for rec, original in zip(lines, (a, b), strict=True):
        back = parse_grounding(rec["conversations"][1]["value"], (rec["width"], rec["height"]))
        assert np.allclose(xyxy(back), xyxy(original)) and back.labels == original.labels
    assert write_jsonl([(a, "a.jpg")], tmp_path / "s.jsonl", format="swift") == 1
    swift = json.loads((tmp_path / "s.jsonl").read_text(encoding="utf-8"))
    assert swift["objects"]["bbox_type"] == "real"
    with pytest.raises(ConfigError):
        write_jsonl([], tmp_path / "x.jsonl", format="coco")
