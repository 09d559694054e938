"""Generation benchmark on the tiny random checkpoint, measured side by side in one run.

Prints:
* throughput of ``batch()`` at batch 8 versus the same 8 conversations one by one (target: >= 3x);
* the engine's own overhead per call: wall time of ``chat()`` minus the time spent inside the model's forward
  passes (target: <= 5 ms), split into preparation (messages -> prompt -> token ids and pixels) and the rest.

Run: ``.venv/bin/python benchmarks/generate.py`` (single-threaded torch, fp32, CPU).
"""

from __future__ import annotations

import statistics
import time

import torch
from PIL import Image


def _image(seed: int) -> Image.Image:
    g = torch.Generator().manual_seed(seed)
    return Image.fromarray(torch.randint(0, 256, (96, 128, 3), generator=g, dtype=torch.uint8).numpy())


def main() -> None:
    from internvl_tools import InternVL
    from internvl_tools.testing import tiny_checkpoint

    torch.set_num_threads(1)
    vlm = InternVL.from_pretrained(str(tiny_checkpoint("qwen2", "native"))).load()
    conversations = [
        [{"role": "user", "content": [{"type": "image", "image": _image(i)}, {"type": "text", "text": f"Q{i}?"}]}]
        for i in range(8)
    ]
    new_tokens = 32
    opts = {"max_new_tokens": new_tokens}
    vlm.batch(conversations, **opts)  # warm-up
    one, many = [], []
    for _ in range(5):
        t0 = time.perf_counter()
        singles = [vlm.chat(c, **opts) for c in conversations]
        one.append(time.perf_counter() - t0)
        t0 = time.perf_counter()
        batched = vlm.batch(conversations, batch_size=8, **opts)
        many.append(time.perf_counter() - t0)
    same = [a.text for a in singles] == [b.text for b in batched]
    tokens = sum(r.usage.completion_tokens for r in batched)
    t_one, t_many = statistics.median(one), statistics.median(many)
    print("== Batched vs one-by-one (8 conversations, one image each, greedy) ==")
    print(f"one by one : {t_one * 1000:8.1f} ms  ({tokens / t_one:7.1f} tokens/s)")
    print(f"batch of 8 : {t_many * 1000:8.1f} ms  ({tokens / t_many:7.1f} tokens/s)")
    print(f"speed-up   : {t_one / t_many:.2f}x (target >= 3x); same answers: {same}")

    # Engine overhead: time outside the model's forward passes.
    model = vlm.model
    inside = [0.0]
    started: list[float] = []

    def pre(_module, _args, _kwargs):
        started.append(time.perf_counter())

    def post(_module, _args, _kwargs, _out):
        inside[0] += time.perf_counter() - started.pop()

    h1 = model.register_forward_pre_hook(pre, with_kwargs=True)
    h2 = model.register_forward_hook(post, with_kwargs=True)
    state = vlm._state()
    overheads, preps, forwards = [], [], []
    try:
        for i in range(30):
            c = conversations[i % 8]
            inside[0] = 0.0
            t0 = time.perf_counter()
            vlm._prepare(c, state)
            t1 = time.perf_counter()
            vlm.chat(c, max_new_tokens=8)
            t2 = time.perf_counter()
            preps.append(t1 - t0)
            forwards.append(inside[0])
            overheads.append((t2 - t1) - inside[0])
    finally:
        h1.remove()
        h2.remove()
    med = statistics.median
    print()
    print("== Engine overhead per chat() call (8 new tokens) ==")
    print(f"total call         : {med(overheads) * 1000 + med(forwards) * 1000:6.2f} ms")
    print(f"model forwards     : {med(forwards) * 1000:6.2f} ms")
    print(f"outside forwards   : {med(overheads) * 1000:6.2f} ms (target <= 5 ms)")
    print(f"  of which prepare : {med(preps) * 1000:6.2f} ms (image load, tiling, prompt, tokenise)")


if __name__ == "__main__":
    main()
