"""Preprocessing speed: the InternVL reference pipeline vs internvl_tools.tiling (fast and exact), one core.

Run: ``.venv/bin/python benchmarks/preprocess.py [--runs N]``

Inputs are synthetic and built here (no files needed): an A4 page at 300 DPI (2480×3508, black text on white
with scanner noise) and a 1920×1080 photo-like image (smooth gradients, shapes and sensor noise). The three
pipelines run interleaved round-robin in one process with torch pinned to 1 thread; the table shows the median
(and min) of N runs, the speed-up of each path over the reference, and the max |Δ| of its pixel values vs the
reference (0.0175 ≈ 1 uint8 level after ImageNet normalisation).

The reference is written from the model card's ``load_image``: ``convert('RGB')``, ``dynamic_preprocess`` (PIL
bicubic resize of the whole image, row-major crops, PIL thumbnail), and per tile the torchvision
``T.Compose([convert, Resize((448, 448), BICUBIC), ToTensor(), Normalize(ImageNet)])``, then ``torch.stack``.
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np
import torch
from PIL import Image, ImageDraw, ImageFilter, ImageFont

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from internvl_tools.tiling import tile_image

MEAN, STD = (0.485, 0.456, 0.406), (0.229, 0.224, 0.225)
S = 448
MAX_NUM = 12


# --- the reference pipeline, as in the model card ---------------------------------------------------------------


def build_transform(input_size: int):
    import torchvision.transforms as T
    from torchvision.transforms.functional import InterpolationMode

    return T.Compose(
        [
            T.Lambda(lambda img: img.convert("RGB") if img.mode != "RGB" else img),
            T.Resize((input_size, input_size), interpolation=InterpolationMode.BICUBIC),
            T.ToTensor(),
            T.Normalize(mean=MEAN, std=STD),
        ]
    )


def find_closest_aspect_ratio(aspect_ratio, target_ratios, width, height, image_size):
    best_ratio_diff = float("inf")
    best_ratio = (1, 1)
    area = width * height
    for ratio in target_ratios:
        target_aspect_ratio = ratio[0] / ratio[1]
        ratio_diff = abs(aspect_ratio - target_aspect_ratio)
        if ratio_diff < best_ratio_diff:
            best_ratio_diff = ratio_diff
            best_ratio = ratio
        elif ratio_diff == best_ratio_diff:  # noqa: SIM102 - the model card's structure, kept verbatim
            if area > 0.5 * image_size * image_size * ratio[0] * ratio[1]:
                best_ratio = ratio
    return best_ratio


def dynamic_preprocess(image, min_num=1, max_num=12, image_size=448, use_thumbnail=False):
    orig_width, orig_height = image.size
    aspect_ratio = orig_width / orig_height
    target_ratios = {
        (i, j)
        for n in range(min_num, max_num + 1)
        for i in range(1, n + 1)
        for j in range(1, n + 1)
        if min_num <= i * j <= max_num
    }
    target_ratios = sorted(target_ratios, key=lambda x: x[0] * x[1])
    cols, rows = find_closest_aspect_ratio(aspect_ratio, target_ratios, orig_width, orig_height, image_size)
    target_width, target_height = image_size * cols, image_size * rows
    blocks = cols * rows
    resized_img = image.resize((target_width, target_height))
    processed = []
    for i in range(blocks):
        box = (
            (i % (target_width // image_size)) * image_size,
            (i // (target_width // image_size)) * image_size,
            ((i % (target_width // image_size)) + 1) * image_size,
            ((i // (target_width // image_size)) + 1) * image_size,
        )
        processed.append(resized_img.crop(box))
    if use_thumbnail and len(processed) != 1:
        processed.append(image.resize((image_size, image_size)))
    return processed


def reference_load_image(image: Image.Image, input_size: int = S, max_num: int = MAX_NUM) -> torch.Tensor:
    image = image.convert("RGB")  # load_image: Image.open(file).convert('RGB')
    transform = build_transform(input_size)
    images = dynamic_preprocess(image, image_size=input_size, use_thumbnail=True, max_num=max_num)
    return torch.stack([transform(im) for im in images])


# --- synthetic inputs -------------------------------------------------------------------------------------------


def make_a4_page(seed: int = 0) -> Image.Image:
    """A 2480×3508 'scan': dark text lines on off-white paper, a table, blur and noise."""
    rng = np.random.default_rng(seed)
    w, h = 2480, 3508
    page = Image.new("L", (w, h), 245)
    draw = ImageDraw.Draw(page)
    try:
        font = ImageFont.load_default(size=38)
    except TypeError:  # very old Pillow
        font = ImageFont.load_default()
    words = [
        "invoice",
        "total",
        "amount",
        "due",
        "tax",
        "net",
        "gross",
        "item",
        "quantity",
        "price",
        "date",
        "reference",
        "account",
    ]
    y = 200
    while y < h - 250:
        x = 180
        while x < w - 400:
            word = words[int(rng.integers(len(words)))]
            draw.text((x, y), word, fill=int(rng.integers(0, 60)), font=font)
            x += 40 + 22 * len(word)
        y += 62
    for k in range(8):  # a ruled table
        draw.line((180, 2400 + 90 * k, w - 180, 2400 + 90 * k), fill=30, width=3)
    page = page.filter(ImageFilter.GaussianBlur(0.6))
    arr = np.asarray(page, dtype=np.int16) + rng.normal(0, 6, (h, w)).astype(np.int16)
    arr = np.clip(arr, 0, 255).astype(np.uint8)
    rgb = np.stack([arr, arr, np.clip(arr.astype(np.int16) - 3, 0, 255).astype(np.uint8)], axis=2)
    return Image.fromarray(rgb, "RGB")


def make_photo(seed: int = 1, w: int = 1920, h: int = 1080) -> Image.Image:
    """A 1920×1080 photo-like image: sky/ground gradients, soft shapes, texture and sensor noise."""
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[0:h, 0:w].astype(np.float32)
    r = 90 + 120 * (yy / h) + 20 * np.sin(xx / 37.0)
    g = 140 + 60 * np.cos(xx / 211.0) * (yy / h)
    b = 220 - 150 * (yy / h) + 15 * np.sin((xx + yy) / 53.0)
    img = np.stack([r, g, b], axis=2)
    for _ in range(12):  # blurred discs: objects with soft edges
        cx, cy, rad = rng.uniform(0, w), rng.uniform(0, h), rng.uniform(40, 220)
        mask = np.clip((rad - np.hypot(xx - cx, yy - cy)) / 6.0, 0, 1)[..., None]
        img = img * (1 - mask) + rng.uniform(0, 255, 3).astype(np.float32) * mask
    img += rng.normal(0, 8, img.shape).astype(np.float32)
    return Image.fromarray(np.clip(img, 0, 255).astype(np.uint8), "RGB")


# --- timing -----------------------------------------------------------------------------------------------------


def bench(cases: dict[str, Callable[[], torch.Tensor]], runs: int) -> dict[str, list[float]]:
    times: dict[str, list[float]] = {name: [] for name in cases}
    for fn in cases.values():  # warm-up: allocator, lazy imports, PIL/torch kernels
        fn()
    for _ in range(runs):
        for name, fn in cases.items():  # round-robin, so drift and noise hit every path alike
            t0 = time.perf_counter()
            fn()
            times[name].append((time.perf_counter() - t0) * 1e3)
    return times


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--runs", type=int, default=15, help="timed runs per pipeline and input (default 15)")
    args = parser.parse_args()

    torch.set_num_threads(1)
    os.environ.setdefault("OMP_NUM_THREADS", "1")
    inputs = {"A4 page 2480x3508": make_a4_page(), "photo 1920x1080": make_photo()}

    print(f"torch {torch.__version__}, Pillow {Image.__version__}, threads {torch.get_num_threads()}, runs {args.runs}")
    header = (
        f"{'input':<20} {'pipeline':<10} {'tiles':>5} {'median ms':>10} {'min ms':>8} {'speed-up':>9} {'max|Δ|':>9}"
    )
    print(header)
    print("-" * len(header))
    for label, image in inputs.items():
        cases = {
            "reference": lambda im=image: reference_load_image(im),
            "fast": lambda im=image: tile_image(im, MAX_NUM).pixel_values,
            "exact": lambda im=image: tile_image(im, MAX_NUM, mode="exact").pixel_values,
        }
        ref = cases["reference"]()
        outputs = {name: fn() for name, fn in cases.items()}
        times = bench(cases, args.runs)
        ref_median = statistics.median(times["reference"])
        for name, ts in times.items():
            median = statistics.median(ts)
            diff = (outputs[name] - ref).abs().max().item() if outputs[name].shape == ref.shape else float("nan")
            print(
                f"{label:<20} {name:<10} {outputs[name].shape[0]:>5} {median:>10.1f} {min(ts):>8.1f} "
                f"{ref_median / median:>8.2f}x {diff:>9.4f}"
            )
    print("speed-up = reference median / pipeline median (same process, same thread count, interleaved).")


if __name__ == "__main__":
    main()
