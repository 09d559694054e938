"""The training command end to end, a few steps from random weights: what it records, and that a segment resumes.

Each run is about 10 s on one thread (10 steps plus the selection set's quick evaluation).
"""

from __future__ import annotations

import csv
import json
import subprocess
import sys

import pytest


def _train(out, *args: str) -> subprocess.CompletedProcess:
    command = [sys.executable, "-m", "internvl_tools.demo.train", "--out", str(out), "--steps", "30"]
    # One thread: the suite runs on 2 cores beside other workers (Ray's corpus tests bound their time), and two
    # spinning training threads would starve them.
    command += ["--ckpt-minutes", "60", "--allocator", "system", "--threads", "1", *args]
    done = subprocess.run(command, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-2000:]
    return done


def _curves(out) -> list[dict[str, str]]:
    with (out / "curves.csv").open() as f:
        return list(csv.DictReader(f))


@pytest.fixture(scope="module")
def edge_run(tmp_path_factory):
    out = tmp_path_factory.mktemp("edge") / "run"
    settings = ("--edge-aux", "20", "--carry-first", "2", "--box-frame", "tile", "--place-aux", "0.5")
    _train(out, *settings, "--until", "10")
    first = json.loads((out / "summary.json").read_text())
    _train(out, *settings, "--until", "20", "--resume")
    return out, first


def test_a_run_records_its_settings_steps_and_best_checkpoint(edge_run):
    out, first = edge_run
    assert first["steps_done"] == 10 and first["edge_aux_weight"] == 20.0 and first["carry_first"] == 2.0
    assert first["look_first"] == 0.0  # the attention's first query keeps its default
    assert first["box_frame"] == "tile" and first["place_aux_weight"] == 0.5
    assert first["allocator"] == "system"
    assert (out / "best" / "config.json").is_file()
    assert json.loads((out / "best" / "score.json").read_text())["step"] in (10, 20)


def test_a_resumed_segment_continues_the_same_curves_with_the_edge_and_place_losses(edge_run):
    import math

    out, _ = edge_run
    rows = _curves(out)
    assert [int(r["step"]) for r in rows] == [10, 20]
    for loss in ("edge_aux_loss", "place_loss"):
        assert all(math.isfinite(float(r[loss])) and float(r[loss]) > 0 for r in rows), loss
    assert json.loads((out / "summary.json").read_text())["steps_done"] == 20


def test_the_edge_and_place_heads_are_trained_and_saved_only_when_weighted(edge_run, tmp_path):
    import torch

    out, _ = edge_run
    saved = torch.load(out / "state.pt", weights_only=False)["aux"]
    assert "edges.weight" in saved and "place.weight" in saved
    plain = tmp_path / "plain"
    _train(plain, "--until", "10")
    state = torch.load(plain / "state.pt", weights_only=False)
    assert not any(key.startswith(("edges.", "place.")) for key in state["aux"])
    assert [(float(r["edge_aux_loss"]), float(r["place_loss"])) for r in _curves(plain)] == [(0.0, 0.0)]
    assert json.loads((plain / "summary.json").read_text())["box_frame"] == "image"  # the default, as runs 1-11
    _train(plain, "--until", "20", "--resume")  # a state without the head resumes as it was saved
    assert json.loads((plain / "summary.json").read_text())["steps_done"] == 20
