"""The training command's allocator choice: jemalloc when asked for or available, never a silent downgrade from an
explicit request, other preloads kept, and a planned environment that really loads jemalloc.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest

from internvl_tools.demo import allocator
from internvl_tools.demo.allocator import AllocatorNotFound, find_jemalloc, plan

FOUND = "libjemalloc.so.2"


@pytest.mark.parametrize(
    ("requested", "env", "library", "preload"),
    [
        ("auto", {}, FOUND, FOUND),
        ("jemalloc", {}, FOUND, FOUND),
        ("auto", {"LD_PRELOAD": "libasan.so"}, FOUND, f"libasan.so:{FOUND}"),
        ("auto", {}, None, None),  # nothing to load: go on with glibc (the command warns)
        ("system", {}, FOUND, None),
        ("auto", {"LD_PRELOAD": "/opt/libjemalloc.so"}, FOUND, None),  # already on jemalloc: no second exec
        ("jemalloc", {"LD_PRELOAD": "libjemalloc.so.2"}, None, None),
    ],
)
def test_plan_names_the_preload_to_restart_with_or_none(requested, env, library, preload):
    planned = plan(requested, {"HOME": "/h", **env}, find=lambda: library)
    if preload is None:
        assert planned is None
    else:
        assert planned["LD_PRELOAD"] == preload
        assert planned["HOME"] == "/h"  # the rest of the environment is kept


def test_asking_for_jemalloc_without_it_names_the_fix():
    with pytest.raises(AllocatorNotFound, match="apt install libjemalloc2"):
        plan("jemalloc", {}, find=lambda: None)


def test_an_unknown_allocator_is_refused():
    with pytest.raises(ValueError, match="auto, jemalloc, system"):
        plan("tcmalloc", {}, find=lambda: FOUND)


@pytest.mark.parametrize(
    ("found", "says"),
    [
        (None, ["apt install libjemalloc2"]),  # the machine has none
        (FOUND, ["run the command instead", f"LD_PRELOAD={FOUND}"]),  # a call from Python cannot switch to it
    ],
)
def test_the_command_refuses_jemalloc_it_cannot_train_on_before_training(tmp_path, capsys, monkeypatch, found, says):
    from internvl_tools.demo.train import main

    monkeypatch.setattr(allocator, "find_jemalloc", lambda: found)
    monkeypatch.delenv("LD_PRELOAD", raising=False)
    with pytest.raises(SystemExit) as exc:
        main(["--out", str(tmp_path / "run"), "--allocator", "jemalloc"])
    assert exc.value.code == 2
    err = capsys.readouterr().err
    assert all(text in err for text in says), err
    assert not (tmp_path / "run").exists()


@pytest.mark.skipif(find_jemalloc() is None, reason="this machine has no libjemalloc (apt install libjemalloc2)")
def test_the_planned_environment_loads_jemalloc_into_the_process(tmp_path):
    env = plan("auto", {k: v for k, v in os.environ.items() if k != "LD_PRELOAD"})
    assert env is not None
    script = "import json; print(json.dumps(['jemalloc' in line for line in open('/proc/self/maps')].count(True)))"
    out = subprocess.run([sys.executable, "-c", script], env=env, capture_output=True, text=True, check=True)
    assert json.loads(out.stdout) > 0
    plain = subprocess.run(
        [sys.executable, "-c", script],
        env={k: v for k, v in env.items() if k != "LD_PRELOAD"},
        capture_output=True,
        text=True,
        check=True,
    )
    assert json.loads(plain.stdout) == 0
