"""Page records as Ray Data rows: the fields of :class:`~internvl_tools.documents.PageResult` plus ``source`` and
``document_id``, with a fixed Arrow schema so every block (and every Parquet file) has the same columns.

Structured fields (``data``, ``grounding``, ``blocks``, ``usage``) travel as JSON text; :func:`page_result` turns a
row back into a ``PageResult``. ``page == 0`` marks a document that could not be opened (corrupt, encrypted): its
``error`` / ``error_type`` say why and it has no pages.

>>> from internvl_tools.documents.models import PageResult
>>> row = record_row(PageResult(page=2, label="2", task="ocr", text="hi"), source="a.pdf", document_id="d1")
>>> row["ok"], row["document_id"], page_result(row).text
(True, 'd1', 'hi')
"""

from __future__ import annotations

import io
import json
from typing import Any

from internvl_tools.documents.models import PageResult
from internvl_tools.documents.render import RenderedPage

__all__ = [
    "JSON_FIELDS",
    "document_failure_row",
    "page_result",
    "record_row",
    "record_schema",
    "rendered_page",
    "rendered_row",
]

#: PageResult fields stored as JSON text in rows and Parquet.
JSON_FIELDS = ("data", "grounding", "blocks", "usage")


def record_schema() -> Any:
    """The Arrow schema of a page record (pyarrow is imported here, never at import time)."""
    import pyarrow as pa

    return pa.schema(
        [
            ("document_id", pa.string()),
            ("source", pa.string()),
            ("page", pa.int64()),
            ("label", pa.string()),
            ("task", pa.string()),
            ("ok", pa.bool_()),
            ("text", pa.string()),
            ("error", pa.string()),
            ("error_type", pa.string()),
            ("finish_reason", pa.string()),
            ("question", pa.string()),
            ("model", pa.string()),
            ("image_size", pa.list_(pa.int64())),
            ("page_size_pt", pa.list_(pa.float64())),
            ("dpi", pa.float64()),
            ("relevance", pa.float64()),
            ("warnings", pa.list_(pa.string())),
            ("elapsed", pa.float64()),
            *[(name, pa.string()) for name in JSON_FIELDS],
        ]
    )


def record_row(result: PageResult, *, source: str, document_id: str) -> dict[str, Any]:
    """One page record: ``result``'s fields, with ``source`` and ``document_id``."""
    dumped = result.model_dump(mode="json")
    row = {name: dumped.get(name) for name in record_schema().names if name not in ("document_id", "source")}
    for name in JSON_FIELDS:
        row[name] = None if dumped.get(name) is None else json.dumps(dumped[name])
    return {"document_id": document_id, "source": source, **row}


def document_failure_row(*, source: str, document_id: str, task: str, error_type: str, error: str) -> dict[str, Any]:
    """The record of a document that could not be opened (``page == 0``, not ok)."""
    row = dict.fromkeys(record_schema().names)
    row.update(
        document_id=document_id,
        source=source,
        page=0,
        label="",
        task=task,
        ok=False,
        error=f"{source}: {error_type}: {error}",
        error_type=error_type,
        warnings=[],
        elapsed=0.0,
    )
    return row


def page_result(row: dict[str, Any]) -> PageResult:
    """A page record row back as a :class:`~internvl_tools.documents.PageResult` (not for ``page == 0`` rows)."""
    fields = {k: v for k, v in row.items() if k not in ("document_id", "source", "ok")}
    for name in JSON_FIELDS:
        if fields.get(name) is not None:
            fields[name] = json.loads(fields[name])
    return PageResult.model_validate(fields)


def rendered_row(page: RenderedPage) -> dict[str, Any]:
    """A rendered page for the inference stage: its geometry and the image as PNG (lossless: same pixels)."""
    png = None
    if page.image is not None:
        buf = io.BytesIO()
        page.image.save(buf, format="PNG", compress_level=1)
        png = buf.getvalue()
    return {
        "page": page.number,
        "label": page.label,
        "width_pt": page.width_pt,
        "height_pt": page.height_pt,
        "scale": page.scale,
        "rotation": page.rotation,
        "png": png,
        "render_error": page.error,
        "render_error_type": page.error_type,
    }


def rendered_page(row: dict[str, Any]) -> RenderedPage:
    """:func:`rendered_row` back as a :class:`~internvl_tools.documents.render.RenderedPage`."""
    from PIL import Image

    image = None
    if row.get("png") is not None:
        image = Image.open(io.BytesIO(row["png"]))
        image.load()
    return RenderedPage(
        number=int(row["page"]),
        label=row["label"],
        width_pt=row["width_pt"],
        height_pt=row["height_pt"],
        scale=row["scale"],
        rotation=int(row["rotation"] or 0),
        image=image,
        error=row.get("render_error"),
        error_type=row.get("render_error_type"),
    )
