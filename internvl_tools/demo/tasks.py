"""The demo model's tasks: its prompt format (template, system message), the questions it is trained and evaluated
on, and :func:`make_example`, which draws one (sample, question, answer) from the synthetic documents.

Training (:mod:`internvl_tools.demo.train`) and evaluation (:mod:`internvl_tools.demo.evaluate`) both read them
from here, so a question changes in one place.

>>> import random
>>> sample, question, answer = make_example("chart_value", random.Random(0))
>>> question.startswith("What is the value of "), answer.isdigit()
(True, True)
"""

from __future__ import annotations

import random

from internvl_tools.demo import synth
from internvl_tools.documents.blocks import LAYOUT_PROMPT
from internvl_tools.documents.tasks import OCR_PROMPT
from internvl_tools.grounding.prompts import GROUNDED_OCR_PROMPT, grounding_prompt

__all__ = [
    "MIXTURE",
    "SYSTEM_MESSAGE",
    "TABLE_QUESTION",
    "TEMPLATE",
    "VALUE_QUESTION",
    "box_answer",
    "draw_task",
    "grounding_question",
    "line_boxes_answer",
    "make_example",
    "mixture_with",
    "ocr_prompt",
]

TEMPLATE = "internvl2_5"
#: The checkpoint's ``system_message`` (config.json): short, so prompts stay short; the engine uses it by default.
SYSTEM_MESSAGE = "You are a small demo model that reads synthetic documents."
VALUE_QUESTION = "What is the value of {} in the chart?"
TABLE_QUESTION = "Convert the chart to a table."
#: Task mixture (name, weight).
MIXTURE = (
    ("easy_ocr", 0.05),
    ("ocr", 0.15),
    ("table_ocr", 0.06),
    ("ground", 0.15),
    ("page_ground", 0.04),
    ("chart_value", 0.14),
    ("chart_table", 0.06),
    ("page_ocr", 0.14),
    ("line_ground", 0.11),
    ("page_line_ground", 0.10),
    # Training-only: a tile's word that starts inside an image token's cell, not on a line-start column (the
    # grounding the demo model misses most, docs/tiny_trained_vlm.md); off unless ``--mix`` gives it a weight.
    ("ground_in_cell", 0.0),
)


def ocr_prompt() -> str:
    """The engine's page-OCR prompt (``read_pdf(task="ocr")``), also used for single tiles."""
    return OCR_PROMPT


def grounding_question(phrase: str) -> str:
    """The official grounding prompt, as ``engine.ground`` sends it."""
    return grounding_prompt(phrase)


def box_answer(word: synth.Word) -> str:
    """The grounding answer: ``<ref>W</ref><box>[[x1, y1, x2, y2]]</box>`` on the 0-1000 scale."""
    x1, y1, x2, y2 = word.box_1000
    return f"<ref>{word.text}</ref><box>[[{x1}, {y1}, {x2}, {y2}]]</box>"


def line_boxes_answer(sample: synth.Sample) -> str:
    """The grounded-OCR answer: one ``<ref>line</ref><box>[[x1, y1, x2, y2]]</box>`` per line, in reading order."""
    return "\n".join(
        f"<ref>{line.text}</ref><box>[[{', '.join(str(v) for v in line.box_1000)}]]</box>" for line in sample.line_boxes
    )


def _unique_word(sample: synth.Sample, rng: random.Random, inside_cell: bool = False) -> synth.Word | None:
    counts: dict[str, int] = {}
    for w in sample.words:
        counts[w.text] = counts.get(w.text, 0) + 1
    unique = [w for w in sample.words if counts[w.text] == 1]
    if inside_cell:
        unique = [w for w in unique if not synth.starts_on_grid_column(w.box[0])]
    return rng.choice(unique) if unique else None


def make_example(task: str, rng: random.Random) -> tuple[synth.Sample, str, str]:
    """One training example: (sample, question, answer) for ``task``."""
    if task == "easy_ocr":
        s = synth.text_tile(rng, easy=True)
        return s, ocr_prompt(), s.text
    if task == "ocr":
        s = synth.text_tile(rng)
        if rng.random() < 0.3:
            s.image = synth.scan(s.image, rng, strength=0.6)
        return s, ocr_prompt(), s.text
    if task == "table_ocr":
        s = synth.table_tile(rng)
        return s, ocr_prompt(), s.text
    if task in ("ground", "page_ground", "ground_in_cell"):
        while True:
            if task == "page_ground":
                s = synth.page(rng)
            else:
                s = synth.text_tile(rng) if rng.random() < 0.8 else synth.table_tile(rng)
            word = _unique_word(s, rng, inside_cell=task == "ground_in_cell")
            if word is not None:
                if task != "page_ground" and rng.random() < 0.3:
                    s.image = synth.scan(s.image, rng, strength=0.6)
                return s, grounding_question(word.text), box_answer(word)
    if task == "line_ground":
        s = synth.text_tile(rng) if rng.random() < 0.75 else synth.table_tile(rng)
        if rng.random() < 0.3:
            s.image = synth.scan(s.image, rng, strength=0.6)
        return s, rng.choice((GROUNDED_OCR_PROMPT, LAYOUT_PROMPT)), line_boxes_answer(s)
    if task == "page_line_ground":
        s = synth.page(rng)
        return s, rng.choice((GROUNDED_OCR_PROMPT, LAYOUT_PROMPT)), line_boxes_answer(s)
    if task == "chart_value":
        s = synth.chart_tile(rng)
        label, value = rng.choice(s.chart)
        return s, VALUE_QUESTION.format(label), str(value)
    if task == "chart_table":
        s = synth.chart_tile(rng)
        return s, TABLE_QUESTION, synth.chart_table(s.chart)
    if task == "page_ocr":
        s = synth.page(rng)
        return s, ocr_prompt(), s.text
    raise ValueError(f"unknown task {task!r}")


def draw_task(rng: random.Random, mixture: tuple[tuple[str, float], ...] = MIXTURE) -> str:
    """Pick a task from ``mixture`` (default :data:`MIXTURE`)."""
    r = rng.random()
    acc = 0.0
    for name, weight in mixture:
        acc += weight
        if r < acc:
            return name
    # Rounded weights can sum to a hair under 1: the remainder goes to the last task that may be drawn at all.
    return next(name for name, weight in reversed(mixture) if weight > 0)


def mixture_with(overrides: str) -> tuple[tuple[str, float], ...]:
    """:data:`MIXTURE` with some weights replaced (``"task=weight,..."``), scaled back to a sum of 1.

    >>> dict(mixture_with("ground=0.25,page_line_ground=0.0"))["ground"]
    0.25
    >>> mixture_with("grounding=1")
    Traceback (most recent call last):
    ...
    ValueError: unknown task 'grounding' in the mixture; the tasks are easy_ocr, ocr, table_ocr, ground, \
page_ground, chart_value, chart_table, page_ocr, line_ground, page_line_ground, ground_in_cell
    """
    weights = dict(MIXTURE)
    for item in filter(None, (part.strip() for part in overrides.split(","))):
        name, _, value = item.partition("=")
        name = name.strip()
        if name not in weights:
            raise ValueError(f"unknown task {name!r} in the mixture; the tasks are {', '.join(weights)}")
        try:
            weights[name] = float(value)
        except ValueError:
            raise ValueError(f"mixture weight for {name!r} must be a number, got {value!r}") from None
        if weights[name] < 0:
            raise ValueError(f"mixture weight for {name!r} must be >= 0, got {value!r}")
    total = sum(weights.values())
    if total <= 0:
        raise ValueError("the mixture's weights sum to 0; give at least one task a positive weight")
    return tuple((name, round(weight / total, 6)) for name, weight in weights.items())
