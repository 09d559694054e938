"""Corpus ingestion: pages/s of single-process ``read_pdf`` vs ``ingest`` on Ray Data with 1 and 2 workers, and the
fixed cost of a Ray run, on the same generated corpus and the demo model, measured side by side in one run.

Run: ``.venv/bin/python benchmarks/ingest.py [DOCS] [PAGES_PER_DOC]`` (default 6 documents of 4 pages).
On a 2-core machine the win is small (rendering and inference share the same two cores); what scales is the
number of actors: each holds one engine, so N GPUs (or N vLLM replicas) read about N times the pages per second
once the fixed cost below is paid.
"""

from __future__ import annotations

import os
import random
import sys
import tempfile
import time
from pathlib import Path

os.environ.setdefault("OMP_NUM_THREADS", "1")


def main() -> None:
    import ray

    from internvl_tools import InternVL
    from internvl_tools.corpus import ingest
    from internvl_tools.demo import synth

    docs = int(sys.argv[1]) if len(sys.argv) > 1 else 6
    per_doc = int(sys.argv[2]) if len(sys.argv) > 2 else 4
    root = Path(tempfile.mkdtemp())
    rng = random.Random(7)
    (root / "corpus").mkdir()
    (root / "one").mkdir()
    for i in range(docs):
        synth.write_pdf([synth.page(rng) for _ in range(per_doc)], root / "corpus" / f"doc{i}.pdf")
    one = root / "one"
    synth.write_pdf([synth.page(rng)], one / "one.pdf")
    pages = docs * per_doc

    engine = InternVL.from_pretrained("demo").load()
    start = time.perf_counter()
    for pdf in sorted((root / "corpus").glob("*.pdf")):
        for _ in engine.read_pdf(pdf, batch_size=4, progress=False):
            pass
    single = pages / (time.perf_counter() - start)

    ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False)
    try:
        start = time.perf_counter()
        ingest([one], root / "out-one", model="demo", workers=1, batch_size=4)
        fixed = time.perf_counter() - start  # one page: mostly actor start (torch import + weights) and scheduling
        rates = {}
        for workers in (1, 2):
            start = time.perf_counter()
            summary = ingest([root / "corpus"], root / f"out-{workers}", model="demo", workers=workers, batch_size=4)
            rates[workers] = summary.pages_ok / (time.perf_counter() - start)
    finally:
        ray.shutdown()

    print(f"corpus: {docs} documents x {per_doc} pages, demo model, batch 4, 2 CPUs")
    print(f"{'single-process read_pdf':32s} {single:6.2f} pages/s   1.00x")
    for workers, rate in rates.items():
        print(f"{f'ingest, Ray, {workers} worker(s)':32s} {rate:6.2f} pages/s   {rate / single:4.2f}x")
    print(f"{'fixed cost of a Ray run':32s} {fixed:6.2f} s (a 1-page document: actor start, weights, scheduling)")


if __name__ == "__main__":
    main()
