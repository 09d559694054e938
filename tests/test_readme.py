"""The README's examples are true: its Python blocks and CLI lines run as written, offline, with the tiny model."""

from __future__ import annotations

import os
import re
import shlex
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
README = (ROOT / "README.md").read_text()


def _blocks(language: str) -> list[str]:
    return re.findall(rf"```{language}\n(.*?)```", README, flags=re.S)


def test_readme_opens_with_the_two_commands() -> None:
    first = _blocks("bash")[0].splitlines()
    assert [line.split("#")[0].strip() for line in first] == ["make demo", "make test"]


@pytest.mark.timeout(600)
def test_python_examples_run_as_written(tmp_path: Path) -> None:
    # The server example needs a running server (tests/test_server.py covers it); the corpus example a Ray cluster
    # and an archive (tests/test_corpus.py runs the same call on generated PDFs).
    blocks = [b for b in _blocks("python") if "from_server" not in b and "internvl_tools.corpus" not in b]
    assert len(blocks) >= 5
    script = tmp_path / "readme_examples.py"
    script.write_text("\n\n".join(blocks))
    env = {**os.environ, "HF_HUB_OFFLINE": "1"}
    proc = subprocess.run([sys.executable, str(script)], cwd=ROOT, env=env, capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stderr[-3000:]

    # Then the CLI lines of the "Command line" section, which use the PDF the Python examples wrote.
    cli = next(b for b in _blocks("bash") if "internvl-tools" in b and " serve " not in b)
    for line in cli.strip().splitlines():
        args = shlex.split(line)
        args[0] = str(Path(sys.executable).with_name("internvl-tools"))
        run = subprocess.run(args, cwd=ROOT, env=env, capture_output=True, text=True, timeout=300)
        assert run.returncode == 0, f"{line}\n{run.stderr[-2000:]}"
