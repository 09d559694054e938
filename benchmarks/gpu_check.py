"""CUDA answers against CPU fp32, and CUDA speed, on checkpoints built offline (run by ``benchmarks/gpu.sh``).

For the tiny random checkpoint and the shipped demo model: the same prompts (one image each, greedy) are answered
on the CPU in float32 (the reference), then on CUDA with every dtype x attention combination available (bfloat16
and float16 with SDPA; flash-attention 2 when ``flash_attn`` imports; float32 + SDPA as a control). Each row says
how many answers are token-identical to the CPU reference (fp32 must match; half precisions may differ where
logits are close, and the row then shows the first differing answer), and the batch throughput.

Run: ``python benchmarks/gpu_check.py`` (exits 2 when no CUDA device is visible).
"""

from __future__ import annotations

import statistics
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import torch


def prompts(kind: str) -> list[list[dict]]:
    import random

    from internvl_tools.demo import synth
    from internvl_tools.demo.tasks import make_example

    rng = random.Random(31337)
    out = []
    for k in range(8):
        if kind == "demo":
            sample, question, _ = make_example(("ocr", "ground", "chart_value", "line_ground")[k % 4], rng)
            image = sample.image
        else:
            image = synth.page(rng).image
            question = "What is written here?"
        content = [{"type": "image", "image": image}, {"type": "text", "text": question}]
        out.append([{"role": "user", "content": content}])
    return out


def combos() -> list[tuple[str, str]]:
    rows = [("float32", "sdpa"), ("bfloat16", "sdpa"), ("float16", "sdpa"), ("bfloat16", "eager")]
    try:
        import flash_attn  # noqa: F401

        rows += [("bfloat16", "flash_attention_2"), ("float16", "flash_attention_2")]
    except ImportError:
        pass
    return rows


def main() -> int:
    if not torch.cuda.is_available():
        print("no CUDA device visible: nothing to check (this script is for a GPU machine)")
        return 2
    from internvl_tools import InternVL
    from internvl_tools.testing import tiny_checkpoint

    models = {
        "tiny": str(tiny_checkpoint("qwen2", "native")),
        "demo": str(Path(__file__).resolve().parents[1] / "internvl_tools" / "demo" / "model"),
    }
    print(f"== CUDA vs CPU fp32 ({torch.cuda.get_device_name(0)}, torch {torch.__version__}) ==")
    head = f"{'model':<6} {'dtype':<9} {'attention':<18} {'same tokens':>11} {'batch-8 ms':>10} {'x CPU':>7}"
    print(head + "  first difference")
    failed = False
    for name, path in models.items():
        convs = prompts(name)
        cpu = InternVL.from_pretrained(path, device="cpu", dtype="float32").load()
        reference = [r.text for r in cpu.batch(convs, batch_size=8, max_new_tokens=32)]
        t_cpu = _time(lambda e=cpu, c=convs: e.batch(c, batch_size=8, max_new_tokens=32))
        del cpu
        for dtype, attn in combos():
            try:
                gpu = InternVL.from_pretrained(path, device="cuda", dtype=dtype, attn_implementation=attn).load()
                answers = [r.text for r in gpu.batch(convs, batch_size=8, max_new_tokens=32)]
                t_gpu = _time(lambda e=gpu, c=convs: e.batch(c, batch_size=8, max_new_tokens=32), sync=True)
            except Exception as exc:  # an unsupported combination is a row, not the end of the check
                print(f"{name:<6} {dtype:<9} {attn:<18} {'error':>11}  {type(exc).__name__}: {exc}"[:160])
                failed |= dtype == "float32"
                continue
            same = sum(a == b for a, b in zip(answers, reference, strict=True))
            diff = next(((a, b) for a, b in zip(answers, reference, strict=True) if a != b), None)
            shown = "" if diff is None else f"{diff[0][:30]!r} vs {diff[1][:30]!r}"
            print(
                f"{name:<6} {dtype:<9} {attn:<18} {same:>5} of {len(reference):<3} {t_gpu * 1000:10.1f} "
                f"{t_cpu / t_gpu:6.1f}x  {shown}"
            )
            failed |= dtype == "float32" and same != len(reference)
            del gpu
            torch.cuda.empty_cache()
    return 1 if failed else 0


def _time(fn, sync: bool = False, runs: int = 5) -> float:
    fn()
    times = []
    for _ in range(runs):
        if sync:
            torch.cuda.synchronize()
        t0 = time.perf_counter()
        fn()
        if sync:
            torch.cuda.synchronize()
        times.append(time.perf_counter() - t0)
    return statistics.median(times)


if __name__ == "__main__":
    raise SystemExit(main())
