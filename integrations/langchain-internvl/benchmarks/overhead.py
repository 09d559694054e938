"""Wrapper overhead: ``ChatInternVL.invoke`` / ``.stream`` versus the same request sent to the engine directly.

Both paths run side by side in one process, interleaved (ABAB...) so drift hits both equally, on the same
engine (shared weights), image and greedy settings. Prints medians and the overhead ratio.

    python integrations/langchain-internvl/benchmarks/overhead.py                 # tiny random checkpoint, CPU
    python integrations/langchain-internvl/benchmarks/overhead.py --model OpenGVLab/InternVL3-1B-hf --device cuda
"""

from __future__ import annotations

import argparse
import base64
import io
import os
import statistics
import time

os.environ.setdefault("OMP_NUM_THREADS", "1")
os.environ.setdefault("HF_HUB_OFFLINE", "1")


def _image_b64(size: tuple[int, int]) -> str:
    from PIL import Image, ImageDraw

    im = Image.new("RGB", size, "white")
    ImageDraw.Draw(im).rectangle([size[0] // 4, size[1] // 4, size[0] // 2, size[1] // 2], fill=(200, 30, 30))
    buf = io.BytesIO()
    im.save(buf, format="PNG")
    return base64.b64encode(buf.getvalue()).decode()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", default="tiny")
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--max-tokens", type=int, default=64)
    parser.add_argument("--reps", type=int, default=30)
    parser.add_argument("--image", default="448x448", help="WxH of the test image")
    args = parser.parse_args()

    from langchain_core.messages import HumanMessage

    from langchain_internvl import ChatInternVL

    width, height = (int(v) for v in args.image.split("x"))
    b64 = _image_b64((width, height))
    question = "Describe the image."
    llm = ChatInternVL(model=args.model, device=args.device, max_tokens=args.max_tokens, temperature=0)
    engine = llm.get_engine()
    lc_messages = [HumanMessage([{"type": "image", "base64": b64, "mime_type": "image/png"}, question])]
    core_messages = [{"role": "user", "content": [{"type": "image", "image": f"data:image/png;base64,{b64}"},
                                                  {"type": "text", "text": question}]}]  # fmt: skip
    gen = {"max_new_tokens": args.max_tokens, "temperature": 0}

    def direct() -> str:
        return engine.chat(core_messages, **gen).text

    def wrapped() -> str:
        return str(llm.invoke(lc_messages).content)

    def direct_stream() -> str:
        return "".join(engine.stream(core_messages, **gen))

    def wrapped_stream() -> str:
        return "".join(str(c.content) for c in llm.stream(lc_messages))

    assert direct() == wrapped(), "the wrapper must send the same request"  # also warms up
    direct_stream(), wrapped_stream()

    def timed(fn) -> float:
        start = time.perf_counter()
        fn()
        return time.perf_counter() - start

    for label, a, b in [("invoke", direct, wrapped), ("stream", direct_stream, wrapped_stream)]:
        ta, tb = [], []
        for i in range(args.reps):
            # Alternate which goes first so neither path always runs on a warmer cache.
            if i % 2:
                tb.append(timed(b))
                ta.append(timed(a))
            else:
                ta.append(timed(a))
                tb.append(timed(b))
        ma, mb = statistics.median(ta), statistics.median(tb)
        print(
            f"{label:6s} direct {ma * 1000:8.2f} ms   ChatInternVL {mb * 1000:8.2f} ms   "
            f"overhead {(mb - ma) * 1000:+.2f} ms ({(mb / ma - 1) * 100:+.2f}%)   "
            f"[{args.model}, {args.device}, {width}x{height} image, {args.max_tokens} new tokens, {args.reps} reps]"
        )


if __name__ == "__main__":
    main()
