"""Shared fixtures: tiny random checkpoints are built once per machine (cached on disk) and shared by tests."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

# Tiny models run faster single-threaded, and two xdist workers share two cores.
os.environ.setdefault("OMP_NUM_THREADS", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("INTERNVL_TOOLS_CACHE", str(Path(__file__).resolve().parent.parent / ".cache"))


def pytest_configure(config: pytest.Config) -> None:
    import torch

    torch.set_num_threads(1)


@pytest.fixture(scope="session")
def tiny_native() -> Path:
    from internvl_tools.testing import tiny_checkpoint

    return tiny_checkpoint("qwen2", "native")


@pytest.fixture(scope="session")
def tiny_engine(tiny_native: Path):
    from internvl_tools import InternVL

    return InternVL.from_pretrained(str(tiny_native)).load()


@pytest.fixture(scope="session")
def sample_page() -> Path:
    from internvl_tools.demo.sample import SAMPLE_PAGE

    return SAMPLE_PAGE
