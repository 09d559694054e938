"""Pytest fixtures for code built on internvl-tools, offline and fast. Opt in from a ``conftest.py``::

    pytest_plugins = ["internvl_tools.pytest_plugin"]

    def test_my_pipeline(internvl_tiny_engine, internvl_receipts_pdf):
        path, truth = internvl_receipts_pdf(pages=2)
        results = list(internvl_tiny_engine.read_pdf(path, progress=False, max_new_tokens=4))
        assert [r.page for r in results] == [1, 2]

Fixtures:

- ``internvl_tiny_path`` (session): a tiny random InternVL checkpoint directory, built offline once per machine and
  cached (``$INTERNVL_TOOLS_CACHE``, default ``~/.cache/internvl-tools``). Its answers are meaningless: use it to test
  plumbing (types, pages, errors, callbacks), never content.
- ``internvl_tiny_engine`` (session): a loaded :class:`~internvl_tools.InternVL` on it (``max_tiles=2``).
- ``internvl_demo_engine`` (session): the shipped demo model, loaded. It really reads the documents of
  :mod:`internvl_tools.demo.synth` (see its model card), so tests can assert content against ground truth.
- ``internvl_scanned_pdf`` (factory): ``internvl_scanned_pdf(pages, size=(120, 160))`` → bytes of an image-only PDF
  with one solid-colour page image per page (distinct colours).
- ``internvl_receipts_pdf`` (factory): ``internvl_receipts_pdf(pages=2, seed=0)`` → ``(path, samples)``: a generated
  scanned PDF of receipt pages the demo model was trained to read, with each page's true text and word boxes.
- ``internvl_video_clip`` (factory): ``internvl_video_clip(frames=20, fps=10)`` → path of a small MPEG-4 clip whose
  frame ``i`` is a solid colour that encodes ``i`` (needs PyAV: ``internvl-tools[video]``).

Loading the plugin makes the session offline (``HF_HUB_OFFLINE=1``) and single-threaded (``OMP_NUM_THREADS=1``,
one torch thread), because tiny models run fastest that way and parallel test workers share the cores; variables
already set are respected.
"""

from __future__ import annotations

import io
import os
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

os.environ.setdefault("OMP_NUM_THREADS", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
os.environ.setdefault("HF_HUB_OFFLINE", "1")


def pytest_configure(config: pytest.Config) -> None:
    import torch

    threads = os.environ.get("OMP_NUM_THREADS", "")
    if threads.isdigit() and int(threads) > 0:
        torch.set_num_threads(int(threads))


@pytest.fixture(scope="session")
def internvl_tiny_path() -> str:
    """A tiny random native checkpoint (qwen2 language model), cached on disk."""
    from internvl_tools.testing.checkpoints import tiny_checkpoint

    return str(tiny_checkpoint("qwen2", "native"))


@pytest.fixture(scope="session")
def internvl_tiny_engine(internvl_tiny_path: str) -> Any:
    """A loaded engine on the tiny checkpoint, at most two tiles per image."""
    from internvl_tools.engines.local import InternVL

    return InternVL.from_pretrained(internvl_tiny_path, max_tiles=2).load()


@pytest.fixture(scope="session")
def internvl_demo_engine() -> Any:
    """A loaded engine on the demo model shipped in the package."""
    from internvl_tools.engines.local import InternVL

    return InternVL.from_pretrained("demo").load()


def _solid_pdf(pages: int, size: tuple[int, int] = (120, 160)) -> bytes:
    from PIL import Image

    images = [Image.new("RGB", size, (40 * i % 256, 255 - 30 * i % 256, 90)) for i in range(pages)]
    buf = io.BytesIO()
    images[0].save(buf, format="PDF", save_all=True, append_images=images[1:], resolution=72)
    return buf.getvalue()


@pytest.fixture(scope="session")
def internvl_scanned_pdf() -> Callable[..., bytes]:
    """Factory for image-only PDFs of solid-colour pages: ``internvl_scanned_pdf(3)``."""
    return _solid_pdf


@pytest.fixture
def internvl_receipts_pdf(tmp_path: Path) -> Callable[..., tuple[Path, list[Any]]]:
    """Factory for generated scanned receipt PDFs with ground truth: ``path, samples = internvl_receipts_pdf(2)``."""
    import random

    from internvl_tools.demo import synth

    def make(pages: int = 2, seed: int = 0, name: str = "receipts.pdf") -> tuple[Path, list[Any]]:
        if pages < 1:
            raise ValueError(f"pages must be >= 1, got {pages}")
        rng = random.Random(seed)
        samples = [synth.page(rng) for _ in range(pages)]
        return synth.write_pdf(samples, tmp_path / name), samples

    return make


@pytest.fixture
def internvl_video_clip(tmp_path: Path) -> Callable[..., Path]:
    """Factory for small generated MPEG-4 clips: ``path = internvl_video_clip(frames=20, fps=10)``."""

    def make(frames: int = 20, fps: int = 10, size: tuple[int, int] = (64, 48), name: str = "clip.mp4") -> Path:
        import numpy as np

        try:
            import av
        except ImportError as exc:
            raise pytest.UsageError("internvl_video_clip needs PyAV: pip install 'internvl-tools[video]'") from exc
        path = tmp_path / name
        with av.open(str(path), mode="w") as out:
            stream = out.add_stream("mpeg4", rate=fps)
            stream.width, stream.height, stream.pix_fmt = size[0], size[1], "yuv420p"
            for i in range(frames):
                pixels = np.empty((size[1], size[0], 3), np.uint8)
                pixels[:] = ((i * 37) % 256, (i * 91) % 256, (255 - i * 13) % 256)
                for packet in stream.encode(av.VideoFrame.from_ndarray(pixels, format="rgb24")):
                    out.mux(packet)
            for packet in stream.encode():
                out.mux(packet)
        return path

    return make
