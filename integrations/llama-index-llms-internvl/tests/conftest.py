"""Fixtures: internvl-tools' pytest plugin (tiny engine, generated PDFs) plus this package's LLM and images."""

from __future__ import annotations

import io
import os
from pathlib import Path

import pytest

# Share the core's cache of tiny checkpoints (built once per machine).
os.environ.setdefault("INTERNVL_TOOLS_CACHE", str(Path(__file__).resolve().parents[3] / ".cache"))

pytest_plugins = ["internvl_tools.pytest_plugin"]


@pytest.fixture
def llm(internvl_tiny_path: str):
    from llama_index.llms.internvl import InternVL

    return InternVL(model=internvl_tiny_path, max_new_tokens=6, max_tiles=2)


@pytest.fixture(scope="session")
def png_bytes() -> bytes:
    from PIL import Image

    buf = io.BytesIO()
    Image.new("RGB", (96, 64), (200, 30, 30)).save(buf, format="PNG")
    return buf.getvalue()


@pytest.fixture
def png_path(tmp_path: Path, png_bytes: bytes) -> Path:
    path = tmp_path / "red.png"
    path.write_bytes(png_bytes)
    return path
