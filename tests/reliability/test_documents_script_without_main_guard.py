"""The README's resume pattern works as written in a plain script (issue 14, "spawn worker re-imports __main__").

A script without ``if __name__ == "__main__":`` reads a 70-page PDF (more than the page count at which rendering
may move to a worker process) and appends each page to a JSONL file. Its body must run once, the run must finish,
and every page must be recorded exactly once; a second run of the same script resumes and adds nothing.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
from PIL import Image

from internvl_tools.documents import iter_jsonl, load_results

ROOT = Path(__file__).resolve().parents[2]
PAGES = 70
LIMIT_S = 300  # a finishing run takes seconds; a script that re-runs itself per worker never ends

SCRIPT = textwrap.dedent(
    """
    import sys

    from internvl_tools import InternVL
    from internvl_tools.documents import write_jsonl

    pdf, out, runs = sys.argv[1:4]
    with open(runs, "a") as fh:  # one line each time this body runs
        fh.write("ran\\n")
    vlm = InternVL.from_pretrained("tiny")
    pages = vlm.read_pdf(pdf, task="ocr", max_new_tokens=2, dpi=18, progress=False, resume_from=out)
    for result in pages:
        write_jsonl([result], out, append=True)
    print(pages.summary)
    """
)


@pytest.fixture(scope="module")
def pdf(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("noguard") / "seventy.pdf"
    pages = [Image.new("RGB", (100, 140), (255 - i, 250, 245)) for i in range(PAGES)]
    pages[0].save(path, "PDF", save_all=True, append_images=pages[1:], resolution=72.0)
    return path


def run_script(script: Path, *args: str) -> subprocess.CompletedProcess:
    env = dict(
        os.environ,
        HF_HUB_OFFLINE="1",
        OMP_NUM_THREADS="1",
        TOKENIZERS_PARALLELISM="false",
        INTERNVL_TOOLS_PROGRESS="0",
        INTERNVL_TOOLS_CACHE=os.environ.get("INTERNVL_TOOLS_CACHE", str(ROOT / ".cache")),
    )
    env.pop("INTERNVL_TOOLS_MODEL", None)
    proc = subprocess.Popen(
        [sys.executable, str(script), *args],
        cwd=script.parent,
        env=env,
        text=True,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        start_new_session=True,
    )
    try:
        out, err = proc.communicate(timeout=LIMIT_S)
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)  # the script and any worker it started
        out, err = proc.communicate()
        pytest.fail(f"the script did not finish within {LIMIT_S} s; stderr tail:\n{err[-3000:]}")
    return subprocess.CompletedProcess(proc.args, proc.returncode, out, err)


@pytest.mark.slow
def test_a_plain_script_without_a_main_guard_reads_every_page_once_and_resumes(pdf, tiny_engine, tmp_path):
    script, out, runs = tmp_path / "read_scan.py", tmp_path / "scan.jsonl", tmp_path / "runs.txt"
    script.write_text(SCRIPT)

    first = run_script(script, str(pdf), str(out), str(runs))
    assert first.returncode == 0, first.stderr[-3000:]
    assert runs.read_text().count("ran") == 1, "the script's body ran again (a worker re-imported __main__)"
    assert sorted(r.page for r in iter_jsonl(out)) == list(range(1, PAGES + 1))
    assert f"{PAGES} of {PAGES} pages ok" in first.stdout

    second = run_script(script, str(pdf), str(out), str(runs))
    assert second.returncode == 0, second.stderr[-3000:]
    assert runs.read_text().count("ran") == 2
    assert f"{PAGES} skipped" in second.stdout
    assert [r.page for r in load_results(out)] == list(range(1, PAGES + 1))
    assert len(out.read_text().splitlines()) == PAGES
