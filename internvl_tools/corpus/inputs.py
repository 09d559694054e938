"""What a corpus is made of: paths, directories and globs expanded to document paths, and each document's stable id.

>>> document_id(b"%PDF-1.4 ...") == document_id(b"%PDF-1.4 ...")
True
>>> len(document_id(b"x"))
32
"""

from __future__ import annotations

import glob
import hashlib
import os
from collections.abc import Iterable
from pathlib import Path
from typing import Any

from internvl_tools.errors import ConfigError, MediaNotFoundError

__all__ = ["DOCUMENT_SUFFIXES", "document_id", "expand_inputs"]

#: Files a directory contributes to a corpus (a path or glob given explicitly is taken whatever its suffix).
DOCUMENT_SUFFIXES = (".pdf", ".tif", ".tiff", ".png", ".jpg", ".jpeg", ".webp", ".bmp")


def document_id(data: bytes) -> str:
    """A document's stable id: the first 128 bits of its bytes' SHA-256, in hex (same bytes, same id, any path)."""
    return hashlib.sha256(data).hexdigest()[:32]


def _as_list(inputs: Any) -> list[Any]:
    if isinstance(inputs, (str, os.PathLike)):
        return [inputs]
    if isinstance(inputs, Iterable):
        return list(inputs)
    raise ConfigError(f"inputs must be paths, directories, globs or a ray.data.Dataset, got {type(inputs).__name__}.")


def expand_inputs(inputs: Any) -> list[str]:
    """Document paths, sorted and without repeats: files as given, directories walked (by
    :data:`DOCUMENT_SUFFIXES`), globs (``*``, ``?``, ``[``, ``**``) expanded. A path that matches nothing raises
    :class:`~internvl_tools.errors.MediaNotFoundError` naming it, before any work starts."""
    found: list[str] = []
    for item in _as_list(inputs):
        text = os.fspath(item)
        path = Path(text).expanduser()
        if path.is_dir():
            found.extend(
                str(p) for p in sorted(path.rglob("*")) if p.is_file() and p.suffix.lower() in DOCUMENT_SUFFIXES
            )
        elif path.is_file():
            found.append(str(path))
        elif any(c in text for c in "*?["):
            matches = sorted(p for p in glob.glob(os.path.expanduser(text), recursive=True) if os.path.isfile(p))
            if not matches:
                raise MediaNotFoundError(f"{text}: the pattern matches no file; check the path or quote the glob.")
            found.extend(matches)
        else:
            raise MediaNotFoundError(f"{text}: no such file or directory; pass files, directories or globs.")
    return list(dict.fromkeys(os.path.abspath(p) for p in found))
