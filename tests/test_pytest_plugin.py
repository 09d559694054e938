"""``internvl_tools.pytest_plugin`` in a user's project: a fresh pytest run in a temporary folder uses its fixtures."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

USER_TESTS = """
import pytest


def test_receipts_come_with_their_truth(internvl_receipts_pdf):
    path, pages = internvl_receipts_pdf(pages=2, seed=3)
    assert path.read_bytes().startswith(b"%PDF") and len(pages) == 2
    assert all(p.text and p.words for p in pages)
    with pytest.raises(ValueError, match="pages must be >= 1"):
        internvl_receipts_pdf(pages=0)


def test_tiny_engine_runs_the_pipeline(internvl_tiny_engine, internvl_scanned_pdf, tmp_path):
    pdf = tmp_path / "solid.pdf"
    pdf.write_bytes(internvl_scanned_pdf(2))
    results = list(internvl_tiny_engine.read_pdf(pdf, progress=False, max_new_tokens=2))
    assert [r.page for r in results] == [1, 2]


def test_demo_engine_reads_a_receipt(internvl_demo_engine, internvl_receipts_pdf):
    from internvl_tools.demo.evaluate import char_accuracy

    path, pages = internvl_receipts_pdf(pages=1, seed=5)
    [result] = internvl_demo_engine.read_pdf(path, progress=False, max_new_tokens=160)
    assert char_accuracy(result.text, pages[0].text) > 0.3


def test_session_is_offline_and_single_threaded():
    import os

    import torch

    assert os.environ["HF_HUB_OFFLINE"] == "1" and torch.get_num_threads() == 1
"""


def test_user_project_gets_the_fixtures(tmp_path: Path) -> None:
    (tmp_path / "conftest.py").write_text('pytest_plugins = ["internvl_tools.pytest_plugin"]\n')
    (tmp_path / "test_user.py").write_text(USER_TESTS)
    env = {k: v for k, v in os.environ.items() if k not in ("OMP_NUM_THREADS", "HF_HUB_OFFLINE")}
    env["PYTEST_ADDOPTS"] = ""
    proc = subprocess.run(
        [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", str(tmp_path)],
        capture_output=True,
        text=True,
        cwd=tmp_path,
        env=env,
        timeout=600,
    )
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "4 passed" in proc.stdout
