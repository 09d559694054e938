"""Fixtures: one tiny random InternVL checkpoint (built offline, cached on disk) shared by every test."""

from __future__ import annotations

import io
import os
from pathlib import Path

import pytest

os.environ.setdefault("OMP_NUM_THREADS", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("INTERNVL_TOOLS_CACHE", str(Path(__file__).resolve().parents[3] / ".cache"))


def pytest_configure(config: pytest.Config) -> None:
    import torch

    torch.set_num_threads(1)


@pytest.fixture(scope="session")
def tiny_path() -> str:
    from internvl_tools import tiny_checkpoint

    return str(tiny_checkpoint("qwen2", "native"))


@pytest.fixture(scope="session")
def tiny_engine(tiny_path: str):
    from internvl_tools import InternVL as Engine

    return Engine.from_pretrained(tiny_path, max_tiles=2).load()


@pytest.fixture
def llm(tiny_path: str):
    from llama_index.llms.internvl import InternVL

    return InternVL(model=tiny_path, max_new_tokens=6, max_tiles=2)


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


def _make_pdf(pages: int, size: tuple[int, int] = (120, 160)) -> bytes:
    """A scanned-style PDF: one solid page image per page (Pillow's PDF writer), distinct grey levels."""
    from PIL import Image

    images = [Image.new("RGB", size, (40 * i % 256, 255 - 30 * i % 256, 90)) for i in range(pages)]
    buf = io.BytesIO()
    images[0].save(buf, format="PDF", save_all=True, append_images=images[1:], resolution=72)
    return buf.getvalue()


@pytest.fixture(scope="session")
def make_pdf():
    return _make_pdf
