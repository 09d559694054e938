"""Side by side with plain transformers: the engine against ``AutoProcessor`` + ``InternVLForConditionalGeneration``.

Both run in this process on the same checkpoint (the tiny random one by default; ``--model demo`` for the trained
demo model, ``--model PATH`` for any transformers-native InternVL directory), one torch thread, fp32, greedy, the
same messages. The engine uses the checkpoint's own chat template (``prompt_format="checkpoint"``) so both build
the same prompt; every row says whether the generated tokens matched.

Rows (median of ``--runs``, interleaved so both sides see the same machine):

* ``ask``: one image file (an A4 PNG scan and a 1080p JPEG photo) and a question, decoding included;
* ``first token``: the same A4 call with ``max_new_tokens=1`` (prefill + one token);
* ``batch of 8``: eight image files in one left-padded batch;
* ``read_pdf 20 pages``: a 20-page scanned PDF; the peer renders each page with pypdfium2 at the size the engine
  chose and runs the processor + ``generate`` in batches of 4; a pure-Python busy loop runs in a second thread
  the whole time (the second core is busy, and it holds the GIL whenever it can), as in a web server or notebook.

Targets (issue #20): ask A4 and 1080p <= 0.70x the peer, batch of 8 <= 0.65x, read_pdf <= 0.80x, tokens identical.

Run: ``.venv/bin/python benchmarks/peer.py [--runs 5] [--model tiny|demo|PATH]``
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import tempfile
import threading
import time
from collections.abc import Callable
from pathlib import Path

os.environ.setdefault("OMP_NUM_THREADS", "1")
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import numpy as np
import torch
from PIL import Image, ImageDraw, ImageFilter

from internvl_tools.documents.tasks import OCR_PROMPT

QUESTION = "What is written here?"


# --- inputs ------------------------------------------------------------------------------------------------------


def a4_scan(dpi: int = 150, seed: int = 0) -> Image.Image:
    """An A4 page of text lines with scanner noise."""
    w, h = int(8.27 * dpi), int(11.69 * dpi)
    rng = np.random.default_rng(seed)
    page = Image.new("RGB", (w, h), "white")
    draw = ImageDraw.Draw(page)
    for k, y in enumerate(range(80, h - 80, 28)):
        draw.text((70, y), f"{k:03d} Invoice total 1,234.56 due 2024-03-14 " * 3, fill=(20, 20, 20))
    noisy = np.asarray(page).astype(np.int16) + rng.normal(0, 6, (h, w, 3)).astype(np.int16)
    return Image.fromarray(np.clip(noisy, 0, 255).astype(np.uint8))


def photo(w: int = 1920, h: int = 1080, seed: int = 1) -> Image.Image:
    rng = np.random.default_rng(seed)
    x = np.linspace(0, 255, w)[None, :, None]
    y = np.linspace(0, 255, h)[:, None, None]
    base = np.concatenate([x + 0 * y, y + 0 * x, (x + y) / 2], axis=2) + rng.normal(0, 10, (h, w, 3))
    return Image.fromarray(np.clip(base, 0, 255).astype(np.uint8)).filter(ImageFilter.GaussianBlur(1.5))


def scan_pdf(path: Path, pages: int) -> Path:
    frames = [a4_scan(100, seed=k) for k in range(pages)]
    frames[0].save(path, "PDF", save_all=True, append_images=frames[1:], resolution=100.0, quality=85)
    return path


# --- the peer: plain transformers --------------------------------------------------------------------------------


class Peer:
    """``AutoProcessor`` + ``InternVLForConditionalGeneration.generate``, as the transformers docs show."""

    def __init__(self, model_dir: str) -> None:
        from transformers import AutoProcessor, InternVLForConditionalGeneration

        self.processor = AutoProcessor.from_pretrained(model_dir)
        self.processor.tokenizer.padding_side = "left"
        self.model = InternVLForConditionalGeneration.from_pretrained(model_dir).eval()

    def generate(self, conversations: list[list[dict]], max_new_tokens: int) -> list[list[int]]:
        inputs = self.processor.apply_chat_template(
            conversations,
            add_generation_prompt=True,
            tokenize=True,
            return_dict=True,
            return_tensors="pt",
            processor_kwargs={"padding": True},
        )
        with torch.inference_mode():
            out = self.model.generate(**inputs, max_new_tokens=max_new_tokens, do_sample=False)
        width = inputs["input_ids"].shape[1]
        return [self._strip(row[width:].tolist()) for row in out]

    def _strip(self, ids: list[int]) -> list[int]:
        eos = self.model.generation_config.eos_token_id
        eos = set(eos if isinstance(eos, list) else [eos])
        pad = self.processor.tokenizer.pad_token_id
        kept = []
        for t in ids:
            if t in eos:
                break
            if t != pad:
                kept.append(t)
        return kept

    def read_pages(self, pdf: Path, scales: list[float], max_new_tokens: int, batch: int) -> list[list[int]]:
        """Render with pypdfium2 at the engine's scales, then processor + generate in batches."""
        import pypdfium2 as pdfium

        doc = pdfium.PdfDocument(str(pdf))
        results: list[list[int]] = []
        try:
            for start in range(0, len(doc), batch):
                images = []
                for index in range(start, min(start + batch, len(doc))):
                    page = doc[index]
                    images.append(page.render(scale=scales[index]).to_pil().convert("RGB"))
                    page.close()
                convs = [message(im, OCR_PROMPT) for im in images]  # what read_pdf(task="ocr") asks
                results += self.generate(convs, max_new_tokens)
        finally:
            doc.close()
        return results


def message(image: object, question: str = QUESTION) -> list[dict]:
    kind = {"type": "image", "path": image} if isinstance(image, str) else {"type": "image", "image": image}
    return [{"role": "user", "content": [kind, {"type": "text", "text": question}]}]


# --- comparing answers ------------------------------------------------------------------------------------------


def visible(tokenizer, text: str) -> str:
    """Text as ``decode(..., skip_special_tokens=True)`` shows it (the engine keeps ``<box>``-like tokens)."""
    return tokenizer.decode(tokenizer(text, add_special_tokens=False)["input_ids"], skip_special_tokens=True)


def same_answers(peer: Peer, ours: list[str], theirs: list[list[int]]) -> bool:
    tok = peer.processor.tokenizer
    return [visible(tok, t) for t in ours] == [tok.decode(ids, skip_special_tokens=True) for ids in theirs]


# --- measuring ---------------------------------------------------------------------------------------------------


class BusyCore:
    """A pure-Python busy loop in a second thread (holds the GIL whenever the scheduler lets it)."""

    def __enter__(self) -> BusyCore:
        self.stop = threading.Event()
        self.loops = 0

        def spin() -> None:
            n = 0
            while not self.stop.is_set():
                n += 1
            self.loops = n

        self.thread = threading.Thread(target=spin, daemon=True)
        self.thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop.set()
        self.thread.join()


def side_by_side(ours: Callable[[], object], theirs: Callable[[], object], runs: int) -> tuple[float, float]:
    ours(), theirs()  # warm-up (lazy imports, allocator)
    a, b = [], []
    for _ in range(runs):
        t0 = time.perf_counter()
        ours()
        a.append(time.perf_counter() - t0)
        t0 = time.perf_counter()
        theirs()
        b.append(time.perf_counter() - t0)
    return statistics.median(a), statistics.median(b)


def resolve_model(name: str) -> str:
    if name == "tiny":
        from internvl_tools.testing import tiny_checkpoint

        return str(tiny_checkpoint("qwen2", "native"))
    if name == "demo":
        return str(Path(__file__).resolve().parents[1] / "internvl_tools" / "demo" / "model")
    return name


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--runs", type=int, default=5)
    parser.add_argument("--model", default="tiny")
    parser.add_argument("--pages", type=int, default=20)
    parser.add_argument("--new-tokens", type=int, default=16)
    parser.add_argument("--device", default="cpu", help="cpu or cuda (the GPU script passes cuda)")
    args = parser.parse_args(argv)
    torch.set_num_threads(1)
    from internvl_tools import InternVL

    model_dir = resolve_model(args.model)
    engine = InternVL.from_pretrained(model_dir, prompt_format="checkpoint", device=args.device).load()
    peer = Peer(model_dir)
    if args.device != "cpu":
        peer.model.to(args.device)
    n = args.new_tokens
    rows: list[tuple[str, float, float, bool]] = []
    with tempfile.TemporaryDirectory() as tmp:
        tmpdir = Path(tmp)
        a4 = tmpdir / "a4.png"
        a4_scan().save(a4)
        jpg = tmpdir / "photo.jpg"
        photo().save(jpg, quality=90)
        for label, path in (("ask A4 PNG scan", a4), ("ask 1080p JPEG photo", jpg)):
            conv = [message(str(path))]
            same = same_answers(peer, [engine.chat(conv[0], max_new_tokens=n).text], peer.generate(conv, n))
            t_ours, t_peer = side_by_side(
                lambda c=conv: engine.chat(c[0], max_new_tokens=n), lambda c=conv: peer.generate(c, n), args.runs
            )
            rows.append((label, t_ours, t_peer, same))
        conv = [message(str(a4))]
        same = same_answers(peer, [engine.chat(conv[0], max_new_tokens=1).text], peer.generate(conv, 1))
        t_ours, t_peer = side_by_side(
            lambda: engine.chat(conv[0], max_new_tokens=1), lambda: peer.generate(conv, 1), args.runs
        )
        rows.append(("first token, A4", t_ours, t_peer, same))
        files = []
        for k in range(8):
            path = tmpdir / f"b{k}.jpg"
            photo(1280, 960, seed=10 + k).save(path, quality=88) if k % 2 else a4_scan(100, seed=k).save(
                path.with_suffix(".png")
            )
            files.append(str(path if k % 2 else path.with_suffix(".png")))
        convs = [message(f) for f in files]
        ours = [r.text for r in engine.batch(convs, batch_size=8, max_new_tokens=n)]
        same = same_answers(peer, ours, peer.generate(convs, n))
        t_ours, t_peer = side_by_side(
            lambda: engine.batch(convs, batch_size=8, max_new_tokens=n), lambda: peer.generate(convs, n), args.runs
        )
        rows.append(("batch of 8 (files)", t_ours, t_peer, same))
        pdf = scan_pdf(tmpdir / "scan.pdf", args.pages)
        results = list(engine.read_pdf(str(pdf), batch_size=4, max_new_tokens=n, progress=False))
        from internvl_tools.documents import render_pages
        from internvl_tools.documents.sizing import tile_grid_for

        # The peer renders each page at the scale the engine chose for it (so both read the same pixels).
        scales = [p.scale for p in render_pages(str(pdf), tile_grid=tile_grid_for(engine), backend="thread")]
        same = same_answers(peer, [r.text or "" for r in results], peer.read_pages(pdf, scales, n, 4))
        with BusyCore():
            t_ours, t_peer = side_by_side(
                lambda: list(engine.read_pdf(str(pdf), batch_size=4, max_new_tokens=n, progress=False)),
                lambda: peer.read_pages(pdf, scales, n, 4),
                max(1, args.runs // 2),
            )
        rows.append((f"read_pdf {args.pages} pages, 2nd core busy", t_ours, t_peer, same))
    print(f"== internvl-tools vs plain transformers ({args.model}, {args.device}, 1 thread, {n} new tokens) ==")
    print(f"{'case':<36} {'ours ms':>9} {'peer ms':>9} {'ratio':>7}  tokens")
    for label, t_ours, t_peer, same in rows:
        print(
            f"{label:<36} {t_ours * 1000:9.1f} {t_peer * 1000:9.1f} {t_ours / t_peer:6.2f}x  "
            f"{'identical' if same else 'DIFFER'}"
        )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
