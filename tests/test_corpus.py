"""Whole corpora on Ray Data (internvl_tools.corpus): every page once, bad files recorded, resume without inference,
a killed worker replaced. A local Ray instance (2 CPUs) lives for this module only; each test is time-bounded."""

from __future__ import annotations

import io
import json
import os
import random
import subprocess
import sys
from collections import Counter
from pathlib import Path
from typing import Any

import pytest

ray = pytest.importorskip("ray")

from internvl_tools.corpus import expand_inputs, ingest, page_result  # noqa: E402
from internvl_tools.demo import synth  # noqa: E402
from internvl_tools.demo.metrics import char_accuracy  # noqa: E402
from internvl_tools.documents import read_pdf  # noqa: E402


@pytest.fixture(scope="module")
def local_ray() -> Any:
    ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False, configure_logging=False)
    yield ray
    ray.shutdown()


@pytest.fixture(scope="module")
def corpus(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("corpus")
    for i, pages in enumerate((2, 3, 1)):
        rng = random.Random(100 + i)
        synth.write_pdf([synth.page(rng) for _ in range(pages)], root / f"doc{i}.pdf")
    (root / "corrupt.pdf").write_bytes(b"%PDF-1.4\n1 0 obj << /Type /Catalog >> garbage")
    pypdf = pytest.importorskip("pypdf")
    writer = pypdf.PdfWriter(clone_from=io.BytesIO((root / "doc2.pdf").read_bytes()))
    writer.encrypt(user_password="s3cret", owner_password="owner", algorithm="RC4-128")
    with open(root / "encrypted.pdf", "wb") as fh:
        writer.write(fh)
    return root


def counting_engine(counter: Path, kill_marker: Path | None = None) -> Any:
    """A factory (built inside each actor) of the demo engine whose every batch leaves a file in ``counter``; with
    ``kill_marker``, the first batch anywhere kills its own actor with ray.kill (once per run)."""

    def factory() -> Any:
        import uuid

        import ray

        from internvl_tools.engines.local import InternVL

        engine = InternVL.from_pretrained("demo")
        inner = engine.batch

        def batch(*args: Any, **kwargs: Any) -> Any:
            if kill_marker is not None and not kill_marker.exists():
                kill_marker.touch()
                ray.kill(ray.get_runtime_context().current_actor, no_restart=False)
            (counter / uuid.uuid4().hex).touch()
            return inner(*args, **kwargs)

        engine.batch = batch
        return engine

    return factory


def records(out: Path) -> list[dict[str, Any]]:
    rows = []
    for path in sorted(out.glob("*.jsonl")):
        rows += [json.loads(line) for line in path.read_text().splitlines()]
    return rows


@pytest.fixture(scope="module")
def expected(corpus: Path) -> dict[tuple[str, int], str]:
    from internvl_tools.engines.local import InternVL

    engine = InternVL.from_pretrained("demo").load()
    texts = {}
    for i in range(3):
        path = corpus / f"doc{i}.pdf"
        for r in read_pdf(engine, path, progress=False):
            assert r.ok
            texts[(str(path), r.page)] = r.text
    return texts


def same_page(text: str, key: tuple[str, int], expected: dict[tuple[str, int], str]) -> bool:
    """``text`` is page ``key``'s ``read_pdf`` text, allowing a flipped near-tie: the corpus batches pages of
    different documents together, and a row's batch neighbours change the float rounding of its greedy decode. The
    text must still be far closer to its own page than to any other page, so a mix-up of pages fails."""
    if text == expected[key]:
        return True
    scores = {other: char_accuracy(text, want) for other, want in expected.items()}
    return scores[key] >= 0.9 and all(score < scores[key] - 0.2 for other, score in scores.items() if other != key)


def check_complete(out: Path, expected: dict[tuple[str, int], str]) -> None:
    rows = records(out)
    pages = [(r["source"], r["page"]) for r in rows if r["page"]]
    assert Counter(pages) == Counter(list(expected))  # every page of every good PDF, exactly once
    for r in rows:
        if r["page"]:
            assert r["ok"], r
            assert same_page(r["text"], (r["source"], r["page"]), expected)
            assert page_result({**r, "usage": json.dumps(r["usage"])}).page == r["page"]
    failed = {Path(r["source"]).name: r["error_type"] for r in rows if r["page"] == 0}
    assert failed == {"corrupt.pdf": "DocumentError", "encrypted.pdf": "PasswordError"}
    assert not (out / ".parts").exists() or not any((out / ".parts").iterdir())


def test_expand_inputs_takes_files_directories_and_globs(corpus: Path) -> None:
    assert len(expand_inputs([corpus])) == 5
    assert expand_inputs([str(corpus / "doc*.pdf")]) == [str(corpus / f"doc{i}.pdf") for i in range(3)]
    with pytest.raises(FileNotFoundError, match="no such file"):
        expand_inputs([corpus / "nope.pdf"])


@pytest.mark.timeout(90)
def test_every_page_once_with_read_pdf_text_bad_files_recorded_and_rerun_does_no_inference(
    local_ray: Any, corpus: Path, expected: dict, tmp_path: Path
) -> None:
    out, counter = tmp_path / "out", tmp_path / "calls"
    counter.mkdir()
    summary = ingest([corpus], out, model=counting_engine(counter), workers=2, batch_size=2)
    check_complete(out, expected)
    assert (summary.documents, summary.documents_failed, summary.pages_ok, summary.pages_failed) == (5, 2, 6, 0)
    assert summary.failures[str(corpus / "encrypted.pdf")] == "PasswordError"
    calls = len(list(counter.iterdir()))
    assert calls > 0

    again = ingest([corpus], out, model=counting_engine(counter), workers=2, batch_size=2)
    assert len(list(counter.iterdir())) == calls  # no inference at all
    assert (again.pages_ok, again.pages_skipped, again.documents_failed) == (0, 6, 2)
    check_complete(out, expected)


@pytest.mark.timeout(90)
def test_a_killed_actor_is_replaced_and_its_pages_retried(
    local_ray: Any, corpus: Path, expected: dict, tmp_path: Path
) -> None:
    out, counter, marker = tmp_path / "out", tmp_path / "calls", tmp_path / "killed"
    counter.mkdir()
    summary = ingest([corpus], out, model=counting_engine(counter, marker), workers=2, batch_size=2)
    assert marker.exists()
    check_complete(out, expected)
    assert summary.pages_ok == 6


@pytest.mark.timeout(90)
def test_a_document_cut_mid_way_keeps_its_written_pages(
    local_ray: Any, corpus: Path, expected: dict, tmp_path: Path
) -> None:
    out, counter = tmp_path / "out", tmp_path / "calls"
    counter.mkdir()
    ingest([corpus / "doc1.pdf"], out, model="demo", pages="1-2", batch_size=1)
    # as if the driver was killed before merging: the document's page files stay in .parts
    (done,) = list(out.glob("*.jsonl"))
    rows = [json.loads(line) for line in done.read_text().splitlines()]
    parts = out / ".parts" / done.stem
    parts.mkdir(parents=True)
    for row in rows:
        (parts / f"page-{row['page']:06d}.json").write_text(json.dumps({**row, "usage": json.dumps(row["usage"])}))
    done.unlink()
    summary = ingest([corpus], out, model=counting_engine(counter), workers=1, batch_size=4)
    assert summary.pages_skipped == 2 and summary.pages_ok == 4
    check_complete(out, expected)


@pytest.mark.timeout(120)
def test_cli_ocr_with_ray_writes_the_corpus(corpus: Path, tmp_path: Path) -> None:
    exe = Path(sys.executable).with_name("internvl-tools")
    out = tmp_path / "out"
    args = [str(exe), "ocr", str(corpus), "--out", str(out), "--ray", "--workers", "2", "--model", "demo"]
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "RAY_ADDRESS": ""}
    proc = subprocess.run(args, capture_output=True, text=True, timeout=110, env=env)
    assert proc.returncode == 1, proc.stderr[-2000:]  # two documents failed
    assert "5 documents (2 failed), 6 pages ok" in proc.stderr
    rows = records(out)
    assert sorted(r["page"] for r in rows) == [0, 0, 1, 1, 1, 2, 2, 3]
