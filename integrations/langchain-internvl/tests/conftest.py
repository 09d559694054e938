"""Shared test set-up: offline, single-threaded tiny models, generated media (nothing downloaded)."""

from __future__ import annotations

import io
import os
from pathlib import Path

import pytest

os.environ.setdefault("OMP_NUM_THREADS", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
os.environ.setdefault("HF_HUB_OFFLINE", "1")
# Share the core's cache of tiny checkpoints (built once per machine).
os.environ.setdefault("INTERNVL_TOOLS_CACHE", str(Path(__file__).resolve().parents[3] / ".cache"))

# Generated clips, receipts and the demo engine (see internvl_tools/pytest_plugin.py).
pytest_plugins = ["internvl_tools.pytest_plugin"]


def make_png(size: tuple[int, int] = (64, 48), color: tuple[int, int, int] = (200, 30, 30)) -> bytes:
    """A small PNG with a coloured rectangle on white."""
    from PIL import Image, ImageDraw

    image = Image.new("RGB", size, "white")
    ImageDraw.Draw(image).rectangle([size[0] // 4, size[1] // 4, size[0] // 2, size[1] // 2], fill=color)
    buf = io.BytesIO()
    image.save(buf, format="PNG")
    return buf.getvalue()


def make_scanned_pdf(pages: int = 2, size: tuple[int, int] = (160, 200)) -> bytes:
    """A PDF whose pages are raster images of text (a 'scan': no text layer)."""
    from PIL import Image, ImageDraw

    images = []
    for n in range(pages):
        im = Image.new("RGB", size, "white")
        draw = ImageDraw.Draw(im)
        draw.text((10, 10), f"Invoice {n + 1}", fill="black")
        draw.text((10, 40), f"Total: {(n + 1) * 42}.00 EUR", fill="black")
        images.append(im)
    buf = io.BytesIO()
    images[0].save(buf, format="PDF", save_all=True, append_images=images[1:], resolution=72)
    return buf.getvalue()


@pytest.fixture
def media_dir(tmp_path: Path) -> Path:
    """An allowed folder with an image, a two-page scanned PDF, and a secret outside it."""
    root = tmp_path / "allowed"
    root.mkdir()
    (root / "street.png").write_bytes(make_png())
    (root / "scan.pdf").write_bytes(make_scanned_pdf(2))
    (tmp_path / "secret.png").write_bytes(make_png(color=(0, 0, 255)))
    return root
