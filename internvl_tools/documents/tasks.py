"""The per-page tasks and their prompts, kept in one place.

Why these wordings: the research notes record no official OCR or chart prompt for InternVL chat models
(``research/internvl_reference.md`` §4 lists only the grounded-OCR prompt from issue #239, which
:func:`internvl_tools.grounding.grounded_ocr_prompt` provides, and the VQA eval suffix). InternVL's document and
chart SFT data are instructions in plain imperative English with the image first, so the prompts are short
imperatives naming the output format, placed after the page image exactly as the official ``chat()`` lays a
single-image turn out. They ask for Markdown because that is what downstream chunkers (LangChain, LlamaIndex)
split on, and for tables as Markdown tables so a table survives as rows and columns. The chart prompt ends with a
table request in the spirit of the "Convert chart to table." instruction used by docling's chart models, and asks
for a fixed sentinel when there is no chart so non-chart pages are cheap and machine-detectable.

>>> parse_markdown_table("| a | b |\\n|---|---|\\n| 1 | 2 |")
{'columns': ['a', 'b'], 'rows': [['1', '2']]}
"""

from __future__ import annotations

import re
from typing import Any

__all__ = [
    "CHART_PROMPT",
    "DEFAULT_MAX_NEW_TOKENS",
    "NO_CHART",
    "OCR_PROMPT",
    "RELEVANCE_PROMPT",
    "REPETITION_RETRY",
    "SCHEMA_PROMPT",
    "TEXT_TASKS",
    "parse_chart_answer",
    "parse_markdown_table",
]

#: Faithful transcription of one page as Markdown.
OCR_PROMPT = (
    "Convert the text on this page to Markdown. Transcribe every word exactly as written, in reading order. "
    "Use # for headings, - for list items and Markdown tables for tables. "
    "Do not summarise, translate, explain or add anything."
)

#: What the chart task answers when the page shows no chart.
NO_CHART = "No chart."

#: A chart page: one short description, then the plotted data as a Markdown table.
CHART_PROMPT = (
    "Describe the chart on this page in one or two sentences: its type, title, axes and main trend. "
    "Then convert the chart to a Markdown table of its data, with a header row. "
    f"If the page has no chart, answer exactly: {NO_CHART}"
)

#: Prefix of the per-page prompt for schema (structured) extraction; the JSON schema follows it.
SCHEMA_PROMPT = "Extract the information requested by the JSON schema from this page."

#: Screening prompt used to pick the most relevant pages for a question when a page has no text layer.
RELEVANCE_PROMPT = "Does this page contain information that answers the question: {question} Answer yes or no."

#: The tasks answered with free text (the rest take a schema).
TEXT_TASKS = ("ocr", "chart", "grounded_ocr", "qa", "layout")

#: Per-task default of max_new_tokens: a dense page of OCR runs to 1-2k tokens; answers are short.
#: A layout page spends about 15 tokens per line on its box, hence twice the OCR budget.
DEFAULT_MAX_NEW_TOKENS = {
    "ocr": 2048,
    "grounded_ocr": 2048,
    "layout": 4096,
    "chart": 1024,
    "qa": 256,
    "schema": 1024,
}

#: What a page whose answer fell into a loop (``finish_reason="repetition"``) is read again with, once. Greedy
#: decoding loops because the loop is its fixed point; a repetition penalty of 1.1 (transformers' CTRL-style
#: penalty on every token already in the sequence) lowers the loop's tokens just enough to leave it, and is mild
#: enough that words a page really repeats ("the", table separators) still come out. The engines support it
#: locally and on every server (vLLM, LMDeploy, ``internvl-tools serve``); ``no_repeat_ngram_size`` would forbid
#: legitimate repeats (table rows of equal cells) and is not offered by the servers.
REPETITION_RETRY = {"repetition_penalty": 1.1}

_ROW = re.compile(r"^\s*\|(.*)\|\s*$")
_RULE_CELL = re.compile(r"^\s*:?-{1,}:?\s*$")


def _cells(line: str) -> list[str] | None:
    match = _ROW.match(line)
    if match is None:
        return None
    return [c.strip() for c in re.split(r"(?<!\\)\|", match.group(1))]


def parse_markdown_table(text: str) -> dict[str, Any] | None:
    """The first pipe table in ``text`` as ``{"columns": [...], "rows": [[...], ...]}``, or None if there is none.

    Rows are padded or cut to the header's width, so a ragged model answer still gives a rectangular table.

    >>> parse_markdown_table("no table here") is None
    True
    """
    lines = text.splitlines()
    for i in range(len(lines) - 1):
        header, rule = _cells(lines[i]), _cells(lines[i + 1])
        if header is None or rule is None or not all(_RULE_CELL.match(c) for c in rule):
            continue
        rows: list[list[str]] = []
        for line in lines[i + 2 :]:
            cells = _cells(line)
            if cells is None:
                break
            rows.append((cells + [""] * len(header))[: len(header)])
        return {"columns": header, "rows": rows}
    return None


def parse_chart_answer(text: str) -> dict[str, Any]:
    """Split a chart-task answer into ``has_chart``, ``description`` (prose before the table) and ``table``.

    >>> parse_chart_answer("No chart.")["has_chart"]
    False
    """
    stripped = text.strip()
    if not stripped or stripped.rstrip(".").lower() == NO_CHART.rstrip(".").lower():
        return {"has_chart": False, "description": "", "table": None}
    table = parse_markdown_table(stripped)
    prose = [line for line in stripped.splitlines() if _cells(line) is None]
    return {"has_chart": True, "description": "\n".join(prose).strip(), "table": table}
