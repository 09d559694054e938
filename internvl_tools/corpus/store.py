"""The output folder of a corpus run, which is also its memory: a resumed run reads it to skip finished work.

Layout (``FORMAT`` is ``jsonl`` or ``parquet``)::

    OUT/{document_id}.FORMAT               one file per document, all its page records, written atomically
    OUT/.parts/{document_id}/manifest.json  the document's selected pages (or why it could not be opened)
    OUT/.parts/{document_id}/{page}.json    one page record, written atomically as soon as it is read

Every file is written to a temporary name in the same folder and renamed into place, so a reader (or a run killed
at any moment) sees a whole file or none. A page written twice (a retried batch) replaces itself: nothing twice.
:meth:`CorpusStore.finalize` merges a document's page files into its one file and removes them.
"""

from __future__ import annotations

import json
import os
import shutil
import uuid
from pathlib import Path
from typing import Any

from internvl_tools.corpus.records import JSON_FIELDS, document_failure_row, record_schema
from internvl_tools.errors import ConfigError

__all__ = ["FORMATS", "CorpusStore", "atomic_write"]

FORMATS = ("jsonl", "parquet")
_PARTS = ".parts"


def atomic_write(path: Path, data: bytes) -> None:
    """Write ``data`` to ``path`` through a temporary file in the same folder and a rename (all or nothing)."""
    tmp = path.with_name(f".{path.name}.{uuid.uuid4().hex}.tmp")
    try:
        with open(tmp, "wb") as fh:
            fh.write(data)
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)


def _to_json_line(row: dict[str, Any]) -> str:
    out = dict(row)
    for name in JSON_FIELDS:
        if out.get(name) is not None:
            out[name] = json.loads(out[name])
    return json.dumps(out, ensure_ascii=False)


def _from_json(obj: dict[str, Any]) -> dict[str, Any]:
    row = {name: obj.get(name) for name in record_schema().names}
    for name in JSON_FIELDS:
        if row[name] is not None and not isinstance(row[name], str):
            row[name] = json.dumps(row[name])
    return row


class CorpusStore:
    """One output folder: per-document files, per-page parts, manifests; see the module docstring."""

    def __init__(self, root: str | os.PathLike, format: str = "jsonl") -> None:
        if format not in FORMATS:
            raise ConfigError(f"format must be one of {FORMATS}, got {format!r}.")
        self.root = Path(root)
        self.format = format
        self.root.mkdir(parents=True, exist_ok=True)

    # -- paths -------------------------------------------------------------------------------------------------
    def document_path(self, doc_id: str) -> Path:
        return self.root / f"{doc_id}.{self.format}"

    def parts_dir(self, doc_id: str) -> Path:
        return self.root / _PARTS / doc_id

    def document_paths(self) -> list[Path]:
        return sorted(p for p in self.root.glob(f"*.{self.format}") if not p.name.startswith("."))

    # -- reading -----------------------------------------------------------------------------------------------
    def read_file(self, path: Path) -> list[dict[str, Any]]:
        """The records of one document file (rows as :mod:`.records` defines them)."""
        if self.format == "parquet":
            import pyarrow.parquet as pq

            return pq.read_table(path).to_pylist()
        with open(path, encoding="utf-8") as fh:
            return [_from_json(json.loads(line)) for line in fh if line.strip()]

    def read_document(self, doc_id: str) -> list[dict[str, Any]]:
        path = self.document_path(doc_id)
        return self.read_file(path) if path.exists() else []

    def read_parts(self, doc_id: str) -> dict[int, dict[str, Any]]:
        folder = self.parts_dir(doc_id)
        parts: dict[int, dict[str, Any]] = {}
        if folder.is_dir():
            for path in folder.glob("page-*.json"):
                row = json.loads(path.read_text(encoding="utf-8"))
                parts[int(row["page"])] = row
        return parts

    def done_pages(self, doc_id: str, task: str) -> set[int]:
        """Pages of ``doc_id`` already read (ok) for ``task``, in its file or its parts."""
        rows = [*self.read_document(doc_id), *self.read_parts(doc_id).values()]
        return {int(r["page"]) for r in rows if r["ok"] and r["page"] and r["task"] == task}

    def read_manifest(self, doc_id: str) -> dict[str, Any] | None:
        path = self.parts_dir(doc_id) / "manifest.json"
        return json.loads(path.read_text(encoding="utf-8")) if path.exists() else None

    # -- writing -----------------------------------------------------------------------------------------------
    def write_manifest(self, doc_id: str, manifest: dict[str, Any]) -> None:
        folder = self.parts_dir(doc_id)
        folder.mkdir(parents=True, exist_ok=True)
        atomic_write(folder / "manifest.json", json.dumps(manifest).encode())

    def write_page(self, row: dict[str, Any]) -> None:
        folder = self.parts_dir(row["document_id"])
        folder.mkdir(parents=True, exist_ok=True)
        atomic_write(folder / f"page-{int(row['page']):06d}.json", json.dumps(row).encode())

    def _write_document(self, doc_id: str, rows: list[dict[str, Any]]) -> None:
        path = self.document_path(doc_id)
        if self.format == "parquet":
            import pyarrow as pa
            import pyarrow.parquet as pq

            buf = pa.BufferOutputStream()
            pq.write_table(pa.Table.from_pylist(rows, schema=record_schema()), buf)
            atomic_write(path, buf.getvalue().to_pybytes())
        else:
            atomic_write(path, "".join(_to_json_line(r) + "\n" for r in rows).encode("utf-8"))

    def finalize(self, doc_id: str, *, lost_error: str) -> list[dict[str, Any]]:
        """Merge ``doc_id``'s file and page parts into its one file (newer parts win; a page that was selected but
        has no record is recorded failed with ``lost_error``), then remove the parts. Returns the records."""
        manifest = self.read_manifest(doc_id) or {}
        rows = {int(r["page"]): r for r in self.read_document(doc_id)}
        parts = self.read_parts(doc_id)
        rows.update(parts)
        if manifest.get("failure") is not None:
            rows = {0: manifest["failure"]}
        else:
            rows.pop(0, None)
            source, task = manifest.get("source", ""), manifest.get("task", "")
            for number in manifest.get("pages", []):
                if number not in rows:
                    row = document_failure_row(
                        source=source, document_id=doc_id, task=task, error_type="WorkerLostError", error=lost_error
                    )
                    row.update(page=number, label=str(number), error=f"page {number}: WorkerLostError: {lost_error}")
                    rows[number] = row
        ordered = [rows[n] for n in sorted(rows)]
        if ordered:
            self._write_document(doc_id, ordered)
        shutil.rmtree(self.parts_dir(doc_id), ignore_errors=True)
        return ordered

    def pending(self) -> list[str]:
        """Documents with parts or a manifest not yet merged into their file."""
        folder = self.root / _PARTS
        return sorted(p.name for p in folder.iterdir() if p.is_dir()) if folder.is_dir() else []
