"""The prompts that ask InternVL for boxes, and boxes written the way InternVL reads them.

Official wordings (grounding, detection) are byte-identical to InternVL's training and eval data; where InternVL has
no official prompt (region description, grounded OCR, detection of named categories) the wording is ours and says
so. Boxes go into prompts in pixels of the original image and come out as ``<box>[[x1, y1, x2, y2]]</box>`` on
InternVL's 0–1000 scale (``round(x / W * 1000)``, see ``docs/internvl_reference.md`` §4).

>>> grounding_prompt("the lady")
'Please provide the bounding box coordinate of the region this sentence describes: <ref>the lady</ref>'
>>> format_box([100, 200, 300, 400], (427, 640))
'<box>[[234, 312, 703, 625]]</box>'
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Literal

from internvl_tools.constants import DETECTION_PROMPT, GROUNDING_PROMPT
from internvl_tools.errors import ConfigError
from internvl_tools.grounding.types import BoundingBox

__all__ = [
    "DETECTION_ANSWER_PREFACE",
    "GROUNDED_OCR_PROMPT",
    "GROUNDED_OCR_PROMPT_ZH",
    "REGION_PROMPT",
    "detection_prompt",
    "format_box",
    "grounded_ocr_prompt",
    "grounding_prompt",
    "region_prompt",
]

#: How InternVL's detection data begins every answer (InternVL docs, chat_data_format, V3Det example).
DETECTION_ANSWER_PREFACE = "Sure, I will detect and label all objects in the image and mark their positions."

#: Our wording for the reverse task (box -> description). InternVL has no official prompt or eval for it; only
#: the input syntax ``<box>[[x1, y1, x2, y2]]</box>`` on the 0–1000 scale is implied. The phrasing mirrors the
#: official grounding prompt ("…the region this sentence describes"). ``{box}`` is replaced by the box.
REGION_PROMPT = "Please provide a short description of the region {box}."

#: Our wording for grounded OCR in English. There is no official prompt; some InternVL OCR data has
#: ``<ref>text</ref><box>[[…]]</box>`` lines, so we ask for exactly that, which :func:`parse_grounding` reads.
GROUNDED_OCR_PROMPT = (
    "Please recognize all the text in the image. For each line of text, output the text and its position "
    "as <ref>text</ref><box>[[x1, y1, x2, y2]]</box>."
)
#: The Chinese prompt a maintainer suggested for text with boxes (InternVL issue #239).
GROUNDED_OCR_PROMPT_ZH = "请识别图中所有文字，并输出坐标框"


def _check_phrase(phrase: str, what: str) -> str:
    if not isinstance(phrase, str) or not phrase.strip():
        raise ConfigError(f"{what} must be a non-empty string, got {phrase!r}")
    lowered = phrase.lower()
    if any(tag in lowered for tag in ("<ref>", "</ref>", "<box>", "</box>")):
        raise ConfigError(f"{what} {phrase!r} contains a <ref>/<box> tag; pass the plain phrase, the tags are added")
    return phrase.strip()


def grounding_prompt(phrase: str) -> str:
    """The official referring-expression prompt (InternVL's RefCOCO eval and training data).

    >>> grounding_prompt("the red car")
    'Please provide the bounding box coordinate of the region this sentence describes: <ref>the red car</ref>'
    """
    return GROUNDING_PROMPT.format(_check_phrase(phrase, "phrase"))


def detection_prompt(labels: Sequence[str] | None = None) -> str:
    """The official detection prompt; with ``labels``, our wording that names the categories.

    Without labels this is byte-identical to InternVL's detection data. With labels there is no official
    wording; we wrap each category in ``<ref>`` so the model echoes it as ``<ref>cat</ref><box>…</box>``.

    >>> detection_prompt()
    'Please detect and label all objects in the following image and mark their positions.'
    >>> detection_prompt(["cat", "dog"]).split(": ")[1]
    '<ref>cat</ref>, <ref>dog</ref>.'
    """
    if labels is None:
        return DETECTION_PROMPT
    if isinstance(labels, str):
        labels = [labels]
    names = [_check_phrase(label, "label") for label in labels]
    if not names:
        raise ConfigError("labels is empty; pass None for the open detection prompt or at least one category name")
    joined = ", ".join(f"<ref>{name}</ref>" for name in names)
    return f"Please detect all instances of the following categories in the image and mark their positions: {joined}."


def _as_box(box: BoundingBox | Sequence[float]) -> BoundingBox:
    if isinstance(box, BoundingBox):
        return box
    try:
        return BoundingBox.from_xyxy(box)
    except (TypeError, ValueError) as exc:
        raise ConfigError(f"box must be a BoundingBox or (x1, y1, x2, y2) in pixels, got {box!r}") from exc


def format_box_list(boxes: Sequence[BoundingBox], image_size: tuple[int, int]) -> str:
    """Pixel boxes as the bracketed list inside one ``<box>``, on the 0–1000 scale (shared with the records).

    >>> boxes = [BoundingBox(x1=0, y1=0, x2=100, y2=50), BoundingBox(x1=100, y1=50, x2=200, y2=100)]
    >>> format_box_list(boxes, (200, 100))
    '[[0, 0, 500, 500], [500, 500, 1000, 1000]]'
    """
    inner = ", ".join("[" + ", ".join(str(v) for v in box.to_normalized(image_size)) + "]" for box in boxes)
    return f"[{inner}]"


def format_box(box: BoundingBox | Sequence[float], image_size: tuple[int, int]) -> str:
    """A pixel box as InternVL writes it: ``<box>[[x1, y1, x2, y2]]</box>`` on the 0–1000 scale.

    >>> format_box([100, 200, 300, 400], (427, 640))
    '<box>[[234, 312, 703, 625]]</box>'
    """
    return f"<box>{format_box_list([_as_box(box)], image_size)}</box>"


def region_prompt(box: BoundingBox | Sequence[float], image_size: tuple[int, int], question: str | None = None) -> str:
    """A question about one region, the box given in pixels and written on InternVL's 0–1000 scale.

    ``question`` may hold ``{box}`` where the box goes; otherwise the box is appended. Without a question,
    :data:`REGION_PROMPT` (our wording; InternVL has none) asks for a short description.

    >>> region_prompt([100, 200, 300, 400], (427, 640))
    'Please provide a short description of the region <box>[[234, 312, 703, 625]]</box>.'
    >>> region_prompt([0, 0, 427, 640], (427, 640), "What colour is {box}?")
    'What colour is <box>[[0, 0, 1000, 1000]]</box>?'
    """
    box_text = format_box(box, image_size)
    template = REGION_PROMPT if question is None else question
    if not isinstance(template, str) or not template.strip():
        raise ConfigError(f"question must be a non-empty string or None, got {question!r}")
    if "{box}" in template:
        return template.replace("{box}", box_text)
    return f"{template.rstrip()} {box_text}"


def grounded_ocr_prompt(language: Literal["en", "zh"] = "en") -> str:
    """A prompt asking for all text with boxes (no official wording exists; see :data:`GROUNDED_OCR_PROMPT`).

    >>> grounded_ocr_prompt("zh")
    '请识别图中所有文字，并输出坐标框'
    """
    if language == "en":
        return GROUNDED_OCR_PROMPT
    if language == "zh":
        return GROUNDED_OCR_PROMPT_ZH
    raise ConfigError(f"language must be 'en' or 'zh', got {language!r}")
