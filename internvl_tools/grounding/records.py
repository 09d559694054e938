"""Grounding results written back out: InternVL's ``<ref>…</ref><box>[[…]]</box>`` syntax and fine-tuning records.

:func:`format_grounding` writes a result in the model's own syntax; :func:`to_internvl_record` and
:func:`to_swift_record` write one line of InternVL or ms-swift fine-tuning data (corrected boxes can be trained on);
:func:`write_jsonl` writes many. Everything here is also importable from :mod:`internvl_tools.grounding`.

>>> from internvl_tools.grounding import parse_grounding
>>> r = parse_grounding("<ref>cat</ref><box>[[0, 0, 500, 500]]</box>", (200, 100))
>>> to_internvl_record(r, "cat.jpg")["conversations"][1]["value"]
'<ref>cat</ref><box>[[0, 0, 500, 500]]</box>'
"""

from __future__ import annotations

import json
from collections.abc import Iterable
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

from internvl_tools.constants import DETECTION_PROMPT, IMAGE_PLACEHOLDER
from internvl_tools.errors import ConfigError
from internvl_tools.grounding.prompts import DETECTION_ANSWER_PREFACE, format_box_list, grounding_prompt
from internvl_tools.grounding.types import GroundedObject

if TYPE_CHECKING:  # pragma: no cover - GroundingResult's export methods call into this module, so only read its type
    from internvl_tools.grounding.result import GroundingResult

__all__ = ["format_grounding", "to_internvl_record", "to_swift_record", "write_jsonl"]


def _object_line(obj: GroundedObject, image_size: tuple[int, int]) -> str:
    ref = f"<ref>{obj.label}</ref>" if obj.label is not None else ""
    return f"{ref}<box>{format_box_list(obj.boxes, image_size)}</box>"


def format_grounding(result: GroundingResult) -> str:
    """The result in InternVL's syntax, one line per object; objects with no boxes are left out.

    >>> from internvl_tools.grounding import parse_grounding
    >>> r = parse_grounding("<ref>a</ref><box>[[1, 2, 3, 4],[5, 6, 7, 8]]</box>", (1000, 1000))
    >>> format_grounding(r)
    '<ref>a</ref><box>[[1, 2, 3, 4], [5, 6, 7, 8]]</box>'
    """
    return "\n".join(_object_line(obj, result.image_size) for obj in result.objects if obj.boxes)


def _default_exchange(result: GroundingResult, question: str | None) -> tuple[str, list[GroundedObject], bool]:
    """(question, objects to write, whether the answer gets the detection preface)."""
    objects = [obj for obj in result.objects if obj.boxes]
    if question is not None:
        if not isinstance(question, str) or not question.strip():
            raise ConfigError(f"question must be a non-empty string or None, got {question!r}")
        return question, objects, False
    labels = {obj.label for obj in objects}
    if len(labels) == 1 and None not in labels:
        # One phrase: the referring-expression form, its boxes merged into one <box> as InternVL writes them.
        label = objects[0].label
        assert label is not None
        merged = GroundedObject(label=label, boxes=[b for obj in objects for b in obj.boxes])
        return grounding_prompt(label), [merged], False
    return DETECTION_PROMPT, objects, True


def to_internvl_record(
    result: GroundingResult, image_path: str | Path, question: str | None = None, *, record_id: int = 0
) -> dict[str, Any]:
    """One line of InternVL fine-tuning data (its docs' ``chat_data_format``, "Grounding / Detection Data").

    Without ``question``: a result with one label becomes the official referring-expression exchange, anything
    else the official detection exchange (answer starting with :data:`DETECTION_ANSWER_PREFACE`). Boxes are
    written on the 0–1000 scale with ``round(x / W * 1000)``.

    >>> from internvl_tools.grounding import parse_grounding
    >>> r = parse_grounding("<ref>the lady</ref><box>[[243, 469, 558, 746]]</box>", (427, 640))
    >>> rec = to_internvl_record(r, "coco/581857.jpg", record_id=2324)
    >>> rec["width"], rec["height"], rec["conversations"][1]["value"]
    (427, 640, '<ref>the lady</ref><box>[[243, 469, 558, 746]]</box>')
    """
    question, objects, preface = _default_exchange(result, question)
    lines = "\n".join(_object_line(obj, result.image_size) for obj in objects)
    answer = f"{DETECTION_ANSWER_PREFACE}\n\n{lines}\n" if preface else lines
    human = question if IMAGE_PLACEHOLDER in question else f"{IMAGE_PLACEHOLDER}\n{question}"
    width, height = result.image_size
    return {
        "id": record_id,
        "image": str(image_path),
        "width": width,
        "height": height,
        "conversations": [{"from": "human", "value": human}, {"from": "gpt", "value": answer}],
    }


def to_swift_record(result: GroundingResult, image_path: str | Path, question: str | None = None) -> dict[str, Any]:
    """One line of ms-swift grounding data: ``messages`` + ``images`` + ``objects`` with ``bbox_type="real"``.

    The assistant turn uses ms-swift's placeholders: ``<ref-object>`` takes the next ``objects["ref"]`` and
    ``<bbox>`` the next ``objects["bbox"]`` (pixel boxes; ms-swift normalises them to 0–1000 with its InternVL
    template, which prints each as ``<box>[[x1, y1, x2, y2]]</box>``). One ``<bbox>`` per box, so a phrase
    with two boxes trains as ``<ref>a</ref><box>[[…]]</box><box>[[…]]</box>`` rather than one shared ``<box>``.

    >>> from internvl_tools.grounding import parse_grounding
    >>> r = parse_grounding("<ref>cat</ref><box>[[0, 0, 500, 500]]</box>", (200, 100))
    >>> rec = to_swift_record(r, "cat.jpg")
    >>> rec["messages"][1]["content"], rec["objects"]
    ('<ref-object><bbox>', {'ref': ['cat'], 'bbox': [[0.0, 0.0, 100.0, 50.0]], 'bbox_type': 'real', 'image_id': [0]})
    """
    question, objects, preface = _default_exchange(result, question)
    refs: list[str] = []
    bboxes: list[list[float]] = []
    lines = []
    for obj in objects:
        head = ""
        if obj.label is not None:
            refs.append(obj.label)
            head = "<ref-object>"
        bboxes.extend([round(v, 3) for v in box.xyxy] for box in obj.boxes)
        lines.append(head + "<bbox>" * len(obj.boxes))
    body = "\n".join(lines)
    answer = f"{DETECTION_ANSWER_PREFACE}\n\n{body}\n" if preface else body
    user = question if IMAGE_PLACEHOLDER in question else f"{IMAGE_PLACEHOLDER}{question}"
    return {
        "messages": [{"role": "user", "content": user}, {"role": "assistant", "content": answer}],
        "images": [str(image_path)],
        "objects": {"ref": refs, "bbox": bboxes, "bbox_type": "real", "image_id": [0] * len(bboxes)},
    }


def write_jsonl(
    items: Iterable[tuple[GroundingResult, str | Path]],
    path: str | Path,
    *,
    format: Literal["internvl", "swift"] = "internvl",
    question: str | None = None,
) -> int:
    """Write ``(result, image_path)`` pairs as fine-tuning JSONL; returns the number of lines written.

    ``format="internvl"`` writes InternVL's conversation records (ids count from 0); ``"swift"`` writes
    ms-swift's ``objects`` form. UTF-8, one JSON object per line, non-ASCII kept as is.

    >>> import tempfile, os
    >>> from internvl_tools.grounding import parse_grounding
    >>> r = parse_grounding("<ref>cat</ref><box>[[0, 0, 500, 500]]</box>", (200, 100))
    >>> with tempfile.TemporaryDirectory() as d:
    ...     write_jsonl([(r, "a.jpg"), (r, "b.jpg")], os.path.join(d, "train.jsonl"), format="swift")
    2
    """
    if format not in ("internvl", "swift"):
        raise ConfigError(f"format must be 'internvl' or 'swift', got {format!r}")
    count = 0
    with Path(path).open("w", encoding="utf-8") as handle:
        for result, image_path in items:
            if format == "internvl":
                record = to_internvl_record(result, image_path, question, record_id=count)
            else:
                record = to_swift_record(result, image_path, question)
            handle.write(json.dumps(record, ensure_ascii=False) + "\n")
            count += 1
    return count
