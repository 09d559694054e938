"""The ``internvl-tools`` command line, run as users run it: ``python -m internvl_tools`` in a subprocess.

Commands that generate use the offline tiny checkpoint (``--model tiny``), whose answers are random text, so the
tests check the shape of the output (JSON fields, files, page records, exit codes), not the words. The last test
uses the trained demo model (``--model demo``) on generated documents and checks the words against ground truth.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import types
from pathlib import Path

import pytest
from PIL import Image

from internvl_tools import cli

ROOT = Path(__file__).resolve().parent.parent
TINY = ["--model", "tiny", "--max-new-tokens", "3"]
DEMO_PAGE_FLOOR = 0.75  # measured 0.85 with the shipped demo model on the two generated pages below


def _env(**extra: str) -> dict[str, str]:
    env = dict(os.environ)
    env.pop("INTERNVL_TOOLS_MODEL", None)
    env.update(
        HF_HUB_OFFLINE="1",
        INTERNVL_TOOLS_CACHE=os.environ.get("INTERNVL_TOOLS_CACHE", str(ROOT / ".cache")),
        OMP_NUM_THREADS="1",
        TOKENIZERS_PARALLELISM="false",
        INTERNVL_TOOLS_PROGRESS="0",
    )
    env.update(extra)
    return env


def run_cli(*args: str, env: dict[str, str] | None = None, timeout: float = 120) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "internvl_tools", *args],
        capture_output=True,
        text=True,
        env=env or _env(),
        timeout=timeout,
        cwd=ROOT,
    )


def run_in_process(capsys: pytest.CaptureFixture[str], *args: str) -> tuple[int, str, str]:
    """``main(args)`` in this process: variants of a command already run once in a subprocess, without paying
    another interpreter start and model load (the engine registry shares the session's tiny weights)."""
    code = cli.main(list(args))
    out, err = capsys.readouterr()
    return code, out, err


def one_error_line(proc: subprocess.CompletedProcess) -> str:
    """The CLI's failure output: exactly one 'error:' line and no traceback."""
    assert "Traceback" not in proc.stderr, proc.stderr
    lines = [line for line in proc.stderr.splitlines() if "error:" in line]
    assert len(lines) == 1, proc.stderr
    return lines[0]


# --------------------------------------------------------------------------------------------------- inputs


@pytest.fixture(scope="module")
def files(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    from pypdf import PdfWriter

    root = tmp_path_factory.mktemp("cli")
    png = root / "picture.png"
    Image.new("RGB", (96, 64), (200, 30, 30)).save(png)
    pdf = root / "two_pages.pdf"
    Image.new("RGB", (200, 260), "white").save(
        pdf, save_all=True, append_images=[Image.new("RGB", (400, 200), "gray")], resolution=72
    )
    encrypted = root / "encrypted.pdf"
    writer = PdfWriter(clone_from=pdf)
    writer.encrypt("secret")
    writer.write(encrypted)
    # A two-page TIFF cut short: page 1 decodes, page 2 fails, so a run has exactly one failed page.
    tiff = root / "two.tif"
    Image.new("RGB", (120, 90), "white").save(tiff, save_all=True, append_images=[Image.new("RGB", (120, 90), "gray")])
    broken_tiff = root / "broken.tif"
    broken_tiff.write_bytes(tiff.read_bytes()[:-20000])
    not_a_model = root / "not_a_model"
    not_a_model.mkdir()
    (not_a_model / "config.json").write_text(json.dumps({"model_type": "bert"}))
    return {
        "png": png,
        "pdf": pdf,
        "encrypted": encrypted,
        "broken_tiff": broken_tiff,
        "not_a_model": not_a_model,
        "root": root,
    }


# ------------------------------------------------------------------------------------- help and bad usage


@pytest.mark.parametrize("command", ["", "ask", "ground", "ocr", "info"])
def test_every_help_has_examples_and_exit_codes(command: str) -> None:
    proc = run_cli(*([command] if command else []), "--help")
    assert proc.returncode == 0, proc.stderr
    assert "examples:" in proc.stdout
    for code in (cli.EXIT_OK, cli.EXIT_PAGES_FAILED, cli.EXIT_BAD_INPUT, cli.EXIT_LOAD, cli.EXIT_GENERATION):
        assert f"\n  {code} " in proc.stdout, f"exit code {code} undocumented in {command or 'top-level'} --help"
    if command:
        assert f"internvl-tools {command} " in proc.stdout


@pytest.mark.parametrize(
    ("args", "expected"),
    [
        (["ask", "{png}"], "QUESTION"),  # missing question
        (["ocr"], "PDF"),
        (["frobnicate"], "invalid choice"),
        (["ask", "{png}", "hi", "--max-tiles", "many"], "--max-tiles"),
        (["ocr", "{pdf}", "--task", "poetry"], "--task"),
    ],
)
def test_usage_errors_exit_2(files: dict[str, Path], args: list[str], expected: str) -> None:
    proc = run_cli(*(a.format(**files) for a in args))
    assert proc.returncode == cli.EXIT_BAD_INPUT
    assert expected in proc.stderr
    assert "Traceback" not in proc.stderr


@pytest.mark.parametrize(
    ("args", "expected"),
    [
        (["ask", "{root}/missing.png", "What?"], "missing.png"),
        (["ground", "{root}/missing.png", "a cat"], "missing.png"),
        (["ocr", "{root}/missing.pdf"], "missing.pdf"),
        (["ask", "{root}", "What?"], "not a file"),
        (["ask", "{encrypted}", "What?"], "--password"),
        (["ocr", "{encrypted}", "--out", "{root}/enc.jsonl"], "--password"),
        (["ask", "{encrypted}", "What?", "--password", "wrong"], "password"),
        (["ask", "{pdf}", "What?", "--page", "3"], "2 page(s)"),
        (["ask", "{pdf}", "What?", "--page", "0"], "--page"),
        (["ocr", "{pdf}", "--pages", "2-1"], "backwards"),
        (["ocr", "{pdf}", "--pages", "5"], "2 page(s)"),
        (["ocr", "{pdf}", "--out", "{root}/pages.txt"], ".jsonl"),
        (["ocr", "{pdf}", "--out", "{root}/no_such_dir/pages.jsonl"], "does not exist"),
        (["ocr", "{pdf}", "--resume"], "--resume needs --out"),
        (["ground", "{png}", "a cat", "--out", "{root}/boxes.nope"], "--out"),
        (["ask", "{png}", "   "], "QUESTION is empty"),
    ],
)
def test_bad_input_exits_2_with_one_line_before_loading_a_model(
    files: dict[str, Path], args: list[str], expected: str
) -> None:
    # No --model tiny: a model load would fail with exit 3 (offline, not cached), so exit 2 proves the input was
    # checked first.
    env = _env(HF_HOME=str(files["root"] / "empty_hf_home"))
    proc = run_cli(*(a.format(**files) for a in args), env=env)
    assert proc.returncode == cli.EXIT_BAD_INPUT, proc.stderr
    assert expected in one_error_line(proc)


# -------------------------------------------------------------------------------------------- model loading


def test_unknown_model_exits_3(files: dict[str, Path]) -> None:
    proc = run_cli(
        "ask",
        str(files["png"]),
        "What?",
        "--model",
        "nobody/no-such-model",
        env=_env(HF_HOME=str(files["root"] / "empty_hf_home")),
    )
    assert proc.returncode == cli.EXIT_LOAD, proc.stderr
    assert "nobody/no-such-model" in one_error_line(proc)


def test_info_on_a_directory_that_is_not_an_internvl_checkpoint_exits_3(files: dict[str, Path]) -> None:
    proc = run_cli("info", str(files["not_a_model"]))
    assert proc.returncode == cli.EXIT_LOAD
    assert "bert" in one_error_line(proc)


def test_default_model_comes_from_the_env_then_internvl3_1b(files: dict[str, Path]) -> None:
    # Nothing cached and the hub offline: the default model cannot be read, and the error names it.
    proc = run_cli("info", env=_env(HF_HOME=str(files["root"] / "empty_hf_home")))
    assert proc.returncode == cli.EXIT_LOAD
    assert "OpenGVLab/InternVL3-1B-hf" in one_error_line(proc)


def test_info_reads_the_config_only(tiny_native: Path) -> None:
    from internvl_tools.checkpoints import read_checkpoint_info

    proc = run_cli("info", "--json", "--dtype", "bfloat16", "--max-tiles", "3", env=_env(INTERNVL_TOOLS_MODEL="tiny"))
    assert proc.returncode == 0, proc.stderr
    assert "meaningless" in proc.stderr  # the tiny-model warning
    data = json.loads(proc.stdout)
    expected = read_checkpoint_info(tiny_native)
    assert Path(data["path"]).resolve() == tiny_native.resolve()
    assert data["model"] == "tiny"
    assert data["template"] == expected.template
    assert data["image_size"] == expected.image_size
    assert data["tokens_per_tile"] == expected.tokens_per_tile
    assert data["context_length"] == expected.context_length
    assert data["max_tiles"] == 3
    assert data["max_image_tokens"] == expected.tokens_per_tile * (3 + int(expected.use_thumbnail))
    assert data["family"].startswith("InternVL")
    assert (data["device"], data["dtype"]) == ("cpu", "bfloat16")
    assert data["weights_loaded"] is False
    assert "Loading weights" not in proc.stderr


def test_info_bad_device_is_bad_input() -> None:
    proc = run_cli("info", "tiny", "--device", "tpu")
    assert proc.returncode == cli.EXIT_BAD_INPUT
    assert "tpu" in one_error_line(proc)


# ------------------------------------------------------------------------------------------------ commands


def test_ask_streams_an_answer_for_an_image(files: dict[str, Path]) -> None:
    proc = run_cli("ask", str(files["png"]), "What colour is this?", *TINY)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.endswith("\n") and proc.stdout.strip()
    assert "meaningless" in proc.stderr
    assert "error" not in proc.stderr


def test_ask_json_on_a_pdf_page(files: dict[str, Path], tiny_engine: object, capsys: pytest.CaptureFixture) -> None:
    code, out, err = run_in_process(
        capsys, "ask", str(files["pdf"]), "What is on this page?", "--page", "2", "--max-tiles", "2", "--json", *TINY
    )
    assert code == 0, err
    data = json.loads(out)
    assert isinstance(data["answer"], str)
    assert data["finish_reason"] in {"stop", "length"}
    assert 1 <= data["usage"]["completion_tokens"] <= 3
    # Page 2 is 2:1 landscape: a 2-tile budget gives a 2x1 grid plus the thumbnail (page 1 would give 1 tile).
    assert data["usage"]["num_tiles"] == 3


def test_ground_prints_boxes_as_json_and_writes_the_picture(files: dict[str, Path]) -> None:
    out = files["root"] / "annotated.png"
    proc = run_cli("ground", str(files["png"]), "the red square", "--out", str(out), "--json", *TINY)
    assert proc.returncode == 0, proc.stderr
    data = json.loads(proc.stdout)
    assert data["phrase"] == "the red square"
    assert tuple(data["image_size"]) == (96, 64)
    assert isinstance(data["objects"], list) and isinstance(data["raw_text"], str)
    with Image.open(out) as drawn:
        assert drawn.size == (96, 64)


def test_ocr_jsonl_then_resume_does_only_the_missing_pages(
    files: dict[str, Path], tiny_engine: object, capsys: pytest.CaptureFixture
) -> None:
    from internvl_tools.documents import load_results

    out = files["root"] / "pages.jsonl"
    first = run_cli("ocr", str(files["pdf"]), "--out", str(out), "--pages", "2", *TINY)
    assert first.returncode == 0, first.stderr
    assert [(r.page, r.ok) for r in load_results(out)] == [(2, True)]
    assert "1 of 1 pages ok" in first.stderr  # the summary

    code, stdout, stderr = run_in_process(
        capsys, "ocr", str(files["pdf"]), "--out", str(out), "--resume", "--json", *TINY
    )
    assert code == 0, stderr
    summary = json.loads(stdout)
    assert (summary["total"], summary["skipped"], summary["succeeded"], summary["failed"]) == (2, 1, 1, 0)
    lines = out.read_text().splitlines()
    assert [json.loads(line)["page"] for line in lines] == [2, 1]  # appended, page 2 not redone


def test_ocr_markdown_with_a_failed_page_exits_1(
    files: dict[str, Path], tiny_engine: object, capsys: pytest.CaptureFixture
) -> None:
    out = files["root"] / "doc.md"
    proc = run_cli("ocr", str(files["broken_tiff"]), "--out", str(out), *TINY)
    assert proc.returncode == cli.EXIT_PAGES_FAILED, proc.stderr
    text = out.read_text()
    assert "<!-- page 1 label=1 -->" in text and "<!-- page 2 label=2 -->" in text
    assert text.count("<!-- error:") == 1
    assert "1 failed" in proc.stderr and "--resume" in proc.stderr

    # With --resume the page records are kept beside the Markdown (FILE.md.jsonl), which is rebuilt from them.
    out.unlink()
    code, _, err = run_in_process(capsys, "ocr", str(files["broken_tiff"]), "--out", str(out), "--resume", *TINY)
    assert code == cli.EXIT_PAGES_FAILED, err
    records = [json.loads(line) for line in Path(f"{out}.jsonl").read_text().splitlines()]
    assert [(r["page"], r["ok"]) for r in records] == [(1, True), (2, False)]
    assert out.read_text().count("<!-- error:") == 1


# ----------------------------------------------------------------------------------- exit codes and serve


@pytest.mark.parametrize(
    ("error", "stage", "code"),
    [
        ("MediaNotFoundError", "input", 2),
        ("PasswordError", "generate", 2),
        ("PageSelectionError", "input", 2),
        ("PathNotAllowedError", "generate", 2),
        ("ConfigError", "input", 2),
        ("TemplateError", "generate", 2),
        ("ContextLengthError", "generate", 2),
        ("ModelLoadError", "generate", 3),
        ("ConfigError", "load", 3),  # e.g. a directory that is not an InternVL checkpoint
        ("GenerationError", "generate", 4),
        ("DependencyMissingError", "load", 5),
    ],
)
def test_exit_code_by_error_type(error: str, stage: str, code: int) -> None:
    from internvl_tools import errors

    assert cli.exit_code_for(getattr(errors, error)("x"), stage) == code


@pytest.mark.parametrize(
    ("exc", "stage", "code"),
    [
        (RuntimeError("CUDA error"), "generate", 4),
        (OSError("disk"), "load", 3),
        (OSError("unreadable"), "input", 2),
        (KeyboardInterrupt(), "generate", 130),
    ],
)
def test_exit_code_for_untyped_errors_follows_the_stage(exc: BaseException, stage: str, code: int) -> None:
    assert cli.exit_code_for(exc, stage) == code


class _FailingEngine:
    def stream(self, messages: object, **gen: object):
        yield "partial"
        raise RuntimeError("device-side assert triggered")


def test_generation_failure_exits_4_with_one_line(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str], files: dict[str, Path]
) -> None:
    def fake_engine(args: object, stage: cli.exits.Stage) -> _FailingEngine:
        stage.name = "generate"
        return _FailingEngine()

    monkeypatch.setattr(cli.commands, "_engine", fake_engine)
    assert cli.main(["ask", str(files["png"]), "What?"]) == cli.EXIT_GENERATION
    out, err = capsys.readouterr()
    assert out == "partial\n"
    assert "device-side assert" in err and "Traceback" not in err
    assert cli.main(["ask", str(files["png"]), "What?", "--debug"]) == cli.EXIT_GENERATION
    assert "Traceback" in capsys.readouterr().err


def test_serve_delegates_everything_after_serve(monkeypatch: pytest.MonkeyPatch) -> None:
    seen: list[list[str]] = []
    stub = types.ModuleType("internvl_tools.server")
    stub.main = lambda argv: seen.append(list(argv)) or 7  # type: ignore[attr-defined]
    monkeypatch.setitem(sys.modules, "internvl_tools.server", stub)
    assert cli.main(["serve", "tiny", "--port", "8123", "--help"]) == 7
    assert seen == [["tiny", "--port", "8123", "--help"]]


def test_serve_help_works_without_the_server(monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture) -> None:
    monkeypatch.setitem(sys.modules, "internvl_tools.server", None)  # import fails as if the module were absent
    assert cli.main(["serve", "--help"]) == 0
    assert "serve MODEL" in capsys.readouterr().out
    assert cli.main(["serve", "tiny"]) == cli.EXIT_DEPENDENCY
    assert "internvl-tools[server]" in capsys.readouterr().err


def test_serve_help_in_a_subprocess() -> None:
    proc = run_cli("serve", "--help")
    assert proc.returncode == 0, proc.stderr
    assert "serve" in proc.stdout.lower()


def test_import_of_the_cli_stays_light() -> None:
    code = (
        "import sys, internvl_tools.cli; print(sorted(m for m in ('torch', 'transformers', 'pypdfium2') "
        "if m in sys.modules))"
    )
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=_env(), timeout=60)
    assert proc.stdout.strip() == "[]", proc.stderr


# --- with the trained demo model: the answers are checked against the generator's ground truth -------------------


def test_cli_with_the_demo_model_reads_pages_and_points_at_words(tmp_path: Path) -> None:
    import random

    from internvl_tools.demo import synth
    from internvl_tools.demo.evaluate import char_accuracy, iou

    rng = random.Random(838383)
    pages = [synth.page(rng, 2), synth.page(rng, 3)]
    pdf = synth.write_pdf(pages, tmp_path / "receipts.pdf")
    out = tmp_path / "pages.jsonl"
    proc = run_cli("ocr", str(pdf), "--model", "demo", "--out", str(out), "--max-new-tokens", "160")
    assert proc.returncode == 0, proc.stderr
    records = [json.loads(line) for line in out.read_text().splitlines()]
    assert [r["page"] for r in records] == [1, 2]
    scores = [char_accuracy(r["text"], p.text) for r, p in zip(records, pages, strict=True)]
    assert sum(scores) / 2 >= DEMO_PAGE_FLOOR, (scores, [r["text"] for r in records])

    tile = synth.text_tile(rng)
    texts = [w.text for w in tile.words]
    word = next(w for w in tile.words if texts.count(w.text) == 1)
    tile.image.save(tmp_path / "tile.png")
    proc = run_cli("ground", str(tmp_path / "tile.png"), word.text, "--model", "demo", "--json")
    assert proc.returncode == 0, proc.stderr
    data = json.loads(proc.stdout)
    assert data["phrase"] == word.text and tuple(data["image_size"]) == (128, 128)
    assert data["raw_text"].startswith(f"<ref>{word.text}</ref><box>[[")
    box = data["objects"][0]["boxes"][0]
    assert iou((box["x1"], box["y1"], box["x2"], box["y2"]), word.box) >= 0.5, (data, word.box)  # measured 0.99


def test_ocr_layout_writes_blocks_in_jsonl_and_markdown_from_blocks(
    files: dict[str, Path], tiny_engine: object, capsys: pytest.CaptureFixture
) -> None:
    from internvl_tools.documents import blocks_markdown, load_results

    out = files["root"] / "layout.jsonl"
    code, _, err = run_in_process(
        capsys, "ocr", str(files["pdf"]), "--out", str(out), "--pages", "1", "--task", "layout", *TINY
    )
    assert code == 0, err
    [record] = load_results(out)
    assert record.task == "layout" and record.blocks is not None  # the tiny model's text: blocks, maybe box-less
    assert record.text == blocks_markdown(record.blocks)
    md = files["root"] / "layout.md"
    code, _, err = run_in_process(
        capsys, "ocr", str(files["pdf"]), "--out", str(md), "--pages", "1", "--task", "layout", *TINY
    )
    assert code == 0, err
    assert record.text.strip() in md.read_text()
