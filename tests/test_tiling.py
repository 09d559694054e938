"""Specification of internvl_tools.tiling: the InternVL grid rule and the exact / fast pixel paths.

The grid rule and the pixel pipeline are restated here from the InternVL model card
(research/internvl_reference.md §2.1), independently of the implementation, and our code is compared with them.
"""

from __future__ import annotations

import itertools
import math

import numpy as np
import pytest
import torch
import torchvision.transforms as T
from hypothesis import given, settings
from hypothesis import strategies as st
from PIL import Image, ImageDraw
from torchvision.transforms.functional import InterpolationMode

from internvl_tools.errors import ConfigError, ImageTooSmallError, UnsupportedSourceError
from internvl_tools.tiling import (
    TiledImage,
    candidate_grids,
    concat_tiles,
    num_tiles_for,
    select_grid,
    split_tile_budget,
    tile_image,
    tile_images,
)

S = 448
MEAN, STD = (0.485, 0.456, 0.406), (0.229, 0.224, 0.225)
ONE_LEVEL = 1 / 255 / min(STD)  # one uint8 level after normalisation, ~0.0175
# ``fast`` may differ from PIL by up to 2 uint8 levels (rarely: a few values per million). Two levels are
# 0.03425 / 0.03501 / 0.03486 in the R / G / B channels after ImageNet normalisation, so "0.035" is checked per
# channel as "2 levels", plus float32 rounding.
MAX_LEVELS = 2
FAST_TOL = 0.035 + 2e-5


# --- the reference, restated from the model card ----------------------------------------------------------------


def ref_candidates(min_num: int, max_num: int) -> list[tuple[int, int]]:
    target_ratios = set(
        (i, j)
        for n in range(min_num, max_num + 1)
        for i in range(1, n + 1)
        for j in range(1, n + 1)
        if i * j <= max_num and i * j >= min_num
    )
    return sorted(target_ratios, key=lambda x: x[0] * x[1])


def ref_select_grid(width: int, height: int, max_num: int = 12, min_num: int = 1, image_size: int = S):
    aspect_ratio = width / height
    best_ratio_diff = float("inf")
    best_ratio = (1, 1)
    area = width * height
    for ratio in ref_candidates(min_num, max_num):
        target_aspect_ratio = ratio[0] / ratio[1]
        ratio_diff = abs(aspect_ratio - target_aspect_ratio)
        if ratio_diff < best_ratio_diff:
            best_ratio_diff = ratio_diff
            best_ratio = ratio
        elif ratio_diff == best_ratio_diff:  # noqa: SIM102 - the model card's structure, kept verbatim
            if area > 0.5 * image_size * image_size * ratio[0] * ratio[1]:
                best_ratio = ratio
    return best_ratio


def ref_select_grid_many(w: np.ndarray, h: np.ndarray, max_num: int, min_num: int = 1, image_size: int = S):
    """The same scan, run over arrays of sizes at once (each element follows the scalar if/elif exactly)."""
    aspect = w / h
    area = w * h
    best_diff = np.full(w.shape, np.inf)
    best = np.ones((*w.shape, 2), dtype=np.int64)
    for i, j in ref_candidates(min_num, max_num):
        diff = np.abs(aspect - i / j)
        closer = diff < best_diff
        tie_wins = ~closer & (diff == best_diff) & (area > 0.5 * image_size * image_size * i * j)
        best[closer | tie_wins] = (i, j)
        best_diff = np.where(closer, diff, best_diff)
    return best


def build_transform(input_size: int = S):
    return T.Compose(
        [
            T.Lambda(lambda img: img.convert("RGB") if img.mode != "RGB" else img),
            T.Resize((input_size, input_size), interpolation=InterpolationMode.BICUBIC),
            T.ToTensor(),
            T.Normalize(mean=MEAN, std=STD),
        ]
    )


def ref_pixel_values(image: Image.Image, max_num: int = 12, min_num: int = 1, image_size: int = S) -> torch.Tensor:
    image = image.convert("RGB")
    cols, rows = ref_select_grid(image.width, image.height, max_num, min_num, image_size)
    target_width, target_height = image_size * cols, image_size * rows
    resized_img = image.resize((target_width, target_height))
    tiles = []
    for i in range(cols * rows):
        box = (
            (i % (target_width // image_size)) * image_size,
            (i // (target_width // image_size)) * image_size,
            ((i % (target_width // image_size)) + 1) * image_size,
            ((i // (target_width // image_size)) + 1) * image_size,
        )
        tiles.append(resized_img.crop(box))
    if len(tiles) != 1:
        tiles.append(image.resize((image_size, image_size)))
    transform = build_transform(image_size)
    return torch.stack([transform(t) for t in tiles])


# --- test images ------------------------------------------------------------------------------------------------


def photo(w: int = 800, h: int = 600, seed: int = 0) -> Image.Image:
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[0:h, 0:w].astype(np.float32)
    img = np.stack([60 + 150 * yy / h, 120 + 80 * np.sin(xx / 41.0), 200 - 120 * xx / w], axis=2)
    img += rng.normal(0, 10, img.shape)
    return Image.fromarray(np.clip(img, 0, 255).astype(np.uint8), "RGB")


def text_page(w: int = 1240, h: int = 1754, seed: int = 1) -> Image.Image:
    rng = np.random.default_rng(seed)
    page = Image.new("L", (w, h), 250)
    draw = ImageDraw.Draw(page)
    for y in range(80, h - 80, 28):
        x = 60
        while x < w - 200:
            word = "".join(chr(int(c)) for c in rng.integers(97, 123, int(rng.integers(2, 9))))
            draw.text((x, y), word, fill=int(rng.integers(0, 40)))
            x += 12 + 7 * len(word)
    arr = np.clip(np.asarray(page, np.int16) + rng.normal(0, 4, (h, w)), 0, 255).astype(np.uint8)
    return Image.fromarray(arr, "L").convert("RGB")


def line_art(w: int = 1000, h: int = 700) -> Image.Image:
    img = Image.new("RGB", (w, h), "white")
    draw = ImageDraw.Draw(img)
    for k in range(0, w, 23):
        draw.line((k, 0, w - k, h), fill=(0, 0, 0), width=1)
    for k in range(10, min(w, h) // 2, 37):
        draw.ellipse((k, k, w - k, h - k), outline=(200, 0, 30), width=2)
    return img


def flat_colours(w: int = 900, h: int = 500) -> Image.Image:
    img = Image.new("RGB", (w, h))
    draw = ImageDraw.Draw(img)
    colours = [(255, 0, 0), (0, 255, 0), (0, 0, 255), (255, 255, 255), (0, 0, 0), (128, 64, 200)]
    for k, c in enumerate(colours):
        draw.rectangle((k * w // 6, 0, (k + 1) * w // 6, h), fill=c)
    return img


def noise(w: int, h: int, seed: int = 2) -> Image.Image:
    return Image.fromarray(np.random.default_rng(seed).integers(0, 256, (h, w, 3), dtype=np.uint8), "RGB")


# --- grid rule --------------------------------------------------------------------------------------------------

# research/internvl_reference.md §7: W×H -> (cols, rows), patches including the thumbnail.
SECTION7_MAX12 = [
    ((448, 448), (1, 1), 1),
    ((224, 224), (1, 1), 1),
    ((500, 500), (1, 1), 1),
    ((1, 1), (1, 1), 1),
    ((800, 600), (4, 3), 13),
    ((1024, 768), (4, 3), 13),
    ((640, 480), (4, 3), 13),
    ((4000, 3000), (4, 3), 13),
    ((600, 800), (3, 4), 13),
    ((1920, 1080), (4, 2), 9),
    ((2560, 1440), (4, 2), 9),
    ((1080, 1920), (2, 4), 9),
    ((900, 900), (2, 2), 5),
    ((2048, 2048), (3, 3), 10),
    ((1344, 896), (3, 2), 7),
    ((300, 200), (3, 2), 7),
    ((1000, 667), (3, 2), 7),
    ((427, 640), (2, 3), 7),
    ((896, 448), (2, 1), 3),
    ((448, 896), (1, 2), 3),
    ((1792, 448), (4, 1), 5),
    ((1000, 100), (10, 1), 11),
    ((100, 1000), (1, 10), 11),
    ((1000, 1), (12, 1), 13),
]
SECTION7_MAX6 = [
    ((800, 600), (3, 2), 7),
    ((640, 480), (3, 2), 7),
    ((600, 800), (2, 3), 7),
    ((1920, 1080), (2, 1), 3),
    ((900, 900), (2, 2), 5),
    ((2048, 2048), (2, 2), 5),
    ((1000, 100), (6, 1), 7),
]


@pytest.mark.parametrize(
    ("size", "max_tiles", "grid", "patches"),
    [(s, 12, g, p) for s, g, p in SECTION7_MAX12] + [(s, 6, g, p) for s, g, p in SECTION7_MAX6],
)
def test_section7_vectors(size, max_tiles, grid, patches):
    assert select_grid(*size, max_tiles=max_tiles) == grid
    assert num_tiles_for(*size, max_tiles=max_tiles) == patches


def test_candidate_order_is_the_seeds():
    # §7: CPython set order of the seed for max 6 (the HF processor's order differs within products).
    assert candidate_grids(1, 6) == (
        (1, 1), (1, 2), (2, 1), (3, 1), (1, 3), (4, 1), (1, 4), (2, 2), (1, 5), (5, 1), (6, 1), (2, 3), (1, 6), (3, 2),
    )  # fmt: skip


def _sweep_sizes(max_tiles: int, n_random: int = 1200) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(1000 + max_tiles)
    edges = [(1, 1), (1, 10000), (10000, 1), (1, 2), (2, 1), (448, 448), (224, 224), (20000, 20000), (3, 7)]
    sizes = list(edges)
    # Log-uniform sizes: tiny to huge, all aspect ratios.
    log_sides = np.exp(rng.uniform(0, math.log(20000), (n_random, 2))).astype(int) + 1
    sizes += [(int(a), int(b)) for a, b in log_sides]
    # Exact tie geometry: images whose ratio equals a candidate's ratio or the midpoint of two candidates' ratios,
    # at areas on both sides of the 0.5·S²·i·j thresholds.
    ratios = sorted({(i, j) for i, j in candidate_grids(1, max_tiles)}, key=lambda g: g[0] / g[1])
    for (i1, j1), (i2, j2) in itertools.pairwise(ratios):
        num, den = i1 * j2 + i2 * j1, 2 * j1 * j2  # midpoint ratio num/den
        g = math.gcd(num, den)
        for k in rng.integers(1, 600, 3):
            sizes.append((num // g * int(k), den // g * int(k)))
        for k in rng.integers(1, 300, 2):
            sizes.append((i1 * int(k), j1 * int(k)))
    for side in range(300, 1500, 7):  # squares around the (1,1)/(2,2)/(3,3) tie thresholds
        sizes.append((side, side))
    w = np.array([s[0] for s in sizes], dtype=np.int64)
    h = np.array([s[1] for s in sizes], dtype=np.int64)
    return w, h


def test_vectorised_reference_matches_scalar_reference():
    # Guards the sweep below: the array version of the reference must be the reference.
    for max_tiles in (1, 6, 12, 40):
        w, h = _sweep_sizes(max_tiles, n_random=150)
        expected = [ref_select_grid(int(a), int(b), max_tiles) for a, b in zip(w, h, strict=True)]
        assert [tuple(x) for x in ref_select_grid_many(w, h, max_tiles).tolist()] == expected


@pytest.mark.parametrize("max_tiles", range(1, 41))
def test_select_grid_matches_reference_sweep(max_tiles):
    w, h = _sweep_sizes(max_tiles)
    expected = ref_select_grid_many(w, h, max_tiles)
    got = np.array([select_grid(int(a), int(b), max_tiles) for a, b in zip(w, h, strict=True)])
    bad = np.nonzero((got != expected).any(axis=1))[0]
    assert bad.size == 0, [(int(w[k]), int(h[k]), got[k].tolist(), expected[k].tolist()) for k in bad[:5]]


@pytest.mark.parametrize(("min_tiles", "max_tiles"), [(2, 2), (3, 3), (4, 4), (2, 6), (3, 12), (6, 12), (4, 9)])
def test_select_grid_matches_reference_with_min_tiles(min_tiles, max_tiles):
    # With min_tiles > 1 the order within one product can decide ties; we must follow the seed's.
    w, h = _sweep_sizes(max_tiles, n_random=400)
    grid_w, grid_h = np.meshgrid(np.arange(1, 60), np.arange(1, 60))
    w, h = np.concatenate([w, grid_w.ravel()]), np.concatenate([h, grid_h.ravel()])
    expected = ref_select_grid_many(w, h, max_tiles, min_tiles)
    got = np.array([select_grid(int(a), int(b), max_tiles, min_tiles) for a, b in zip(w, h, strict=True)])
    assert (got == expected).all()


def test_min_tiles_order_matters_and_we_follow_the_seed():
    # min = max = 4, 5x2 image: (4,1) and (1,4)... tie with (2,2) excluded candidates; the seed order wins.
    assert select_grid(5, 2, max_tiles=4, min_tiles=4) == ref_select_grid(5, 2, 4, 4) == (4, 1)


@settings(max_examples=300, deadline=None)
@given(
    w=st.integers(1, 30000),
    h=st.integers(1, 30000),
    max_tiles=st.integers(1, 40),
    data=st.data(),
)
def test_grid_properties(w, h, max_tiles, data):
    min_tiles = data.draw(st.integers(1, max_tiles))
    cols, rows = select_grid(w, h, max_tiles, min_tiles)
    assert min_tiles <= cols * rows <= max_tiles
    # Optimality: no allowed grid has a ratio strictly closer to the image's.
    best = min(abs(w / h - c / r) for c, r in candidate_grids(min_tiles, max_tiles))
    assert abs(w / h - cols / rows) == best
    assert (cols, rows) == ref_select_grid(w, h, max_tiles, min_tiles)
    n = num_tiles_for(w, h, max_tiles, min_tiles)
    assert n == cols * rows + (1 if cols * rows > 1 else 0)
    assert num_tiles_for(w, h, max_tiles, min_tiles, use_thumbnail=False) == cols * rows


@settings(max_examples=100, deadline=None)
@given(w=st.integers(1, 5000), h=st.integers(1, 5000), image_size=st.sampled_from([224, 336, 448, 512]))
def test_grid_follows_image_size_in_tie_rule(w, h, image_size):
    assert select_grid(w, h, 12, 1, image_size) == ref_select_grid(w, h, 12, 1, image_size)


@pytest.mark.parametrize(
    ("kwargs", "error"),
    [
        ({"width": 0, "height": 10}, ImageTooSmallError),
        ({"width": 10, "height": -1}, ImageTooSmallError),
        ({"width": 10.5, "height": 10}, ConfigError),
        ({"width": True, "height": 10}, ConfigError),
        ({"width": 10, "height": 10, "max_tiles": 0}, ConfigError),
        ({"width": 10, "height": 10, "min_tiles": 0}, ConfigError),
        ({"width": 10, "height": 10, "min_tiles": 5, "max_tiles": 4}, ConfigError),
        ({"width": 10, "height": 10, "max_tiles": "12"}, ConfigError),
        ({"width": 10, "height": 10, "image_size": 0}, ConfigError),
    ],
)
def test_select_grid_rejects_bad_arguments(kwargs, error):
    with pytest.raises(error):
        select_grid(**kwargs)


@pytest.mark.parametrize(
    ("max_tiles", "n_images", "per_image"),
    [(12, 1, 12), (12, 2, 6), (12, 3, 4), (12, 5, 2), (12, 12, 1), (12, 20, 1), (6, 4, 1), (40, 3, 13)],
)
def test_split_tile_budget(max_tiles, n_images, per_image):
    assert split_tile_budget(max_tiles, n_images) == per_image


def test_split_tile_budget_rejects_no_images():
    with pytest.raises(ConfigError):
        split_tile_budget(12, 0)


# --- pixels: exact and fast vs the reference pipeline -----------------------------------------------------------

NUMERIC_CASES = {
    "photo 800x600": lambda: photo(),
    "scanned text 1240x1754": lambda: text_page(),
    "line art 1000x700": lambda: line_art(),
    "flat colours 900x500": lambda: flat_colours(),
    "upscaled 300x200": lambda: photo(300, 200, seed=3),
    "noise 97x1013": lambda: noise(97, 1013),
    "tiny 1x1": lambda: Image.new("RGB", (1, 1), (12, 200, 77)),
    "extreme 1x10000": lambda: noise(1, 10000),
    "extreme 10000x1": lambda: noise(10000, 1),
    "grey L mode": lambda: text_page(300, 500).convert("L"),
    "RGBA": lambda: photo(500, 300).convert("RGBA"),
    "palette P": lambda: flat_colours(640, 200).convert("P"),
}


@pytest.fixture(scope="module")
def reference_outputs():
    cache: dict[str, tuple[Image.Image, torch.Tensor]] = {}

    def get(name: str):
        if name not in cache:
            img = NUMERIC_CASES[name]()
            cache[name] = (img, ref_pixel_values(img))
        return cache[name]

    return get


@pytest.mark.parametrize("name", list(NUMERIC_CASES))
def test_exact_is_bit_identical_to_reference(name, reference_outputs):
    img, ref = reference_outputs(name)
    out = tile_image(img, mode="exact")
    assert out.pixel_values.dtype == torch.float32
    assert torch.equal(out.pixel_values, ref)


@pytest.mark.parametrize("name", list(NUMERIC_CASES))
def test_fast_is_within_two_levels_of_reference(name, reference_outputs):
    img, ref = reference_outputs(name)
    out = tile_image(img)  # fast is the default
    assert out.pixel_values.shape == ref.shape
    diff = (out.pixel_values - ref).abs()
    levels = diff * torch.tensor(STD).view(1, 3, 1, 1) * 255
    assert levels.max().item() <= MAX_LEVELS + 1e-3
    assert diff.max().item() <= FAST_TOL
    assert diff.mean().item() < 0.1 * ONE_LEVEL  # off-by-one levels are rare, not systematic
    assert (levels > 1.5).float().mean().item() < 1e-4  # two-level differences rarer still


@pytest.mark.parametrize("mode", ["fast", "exact"])
def test_numpy_input_equals_pil_input(mode):
    img = photo(640, 360, seed=5)
    a = tile_image(img, mode=mode).pixel_values
    b = tile_image(np.asarray(img), mode=mode).pixel_values
    assert torch.equal(a, b)
    grey = np.asarray(img.convert("L"))
    assert torch.equal(tile_image(grey, mode=mode).pixel_values, tile_image(img.convert("L"), mode=mode).pixel_values)


def test_exact_with_min_and_max_and_image_size():
    img = photo(700, 300, seed=7)
    out = tile_image(img, max_tiles=6, min_tiles=3, image_size=224, mode="exact")
    assert torch.equal(out.pixel_values, ref_pixel_values(img, 6, 3, 224))
    assert out.pixel_values.shape[-2:] == (224, 224)


def test_tiles_are_row_major_and_thumbnail_last():
    # A 3x2 grid of flat colours, one per tile position: tile k must show the colour at column k % 3, row k // 3.
    colours = [(250, 0, 0), (0, 250, 0), (0, 0, 250), (250, 250, 0), (0, 250, 250), (250, 0, 250)]
    img = Image.new("RGB", (3 * S, 2 * S))
    draw = ImageDraw.Draw(img)
    for k, c in enumerate(colours):
        col, row = k % 3, k // 3
        draw.rectangle((col * S, row * S, (col + 1) * S - 1, (row + 1) * S - 1), fill=c)
    for mode in ("fast", "exact"):
        out = tile_image(img, max_tiles=6, mode=mode)
        assert out.grid == (3, 2) and out.num_tiles == 7 and out.has_thumbnail
        mean = torch.tensor(MEAN).view(3, 1, 1)
        std = torch.tensor(STD).view(3, 1, 1)
        for k, c in enumerate(colours):
            rgb = (out.pixel_values[k] * std + mean) * 255
            centre = rgb[:, S // 4 : 3 * S // 4, S // 4 : 3 * S // 4]
            assert torch.allclose(centre, torch.tensor(c, dtype=torch.float32).view(3, 1, 1).expand_as(centre), atol=1)
        # The thumbnail is the whole image squeezed: its top-left quarter region is tile 0's colour.
        thumb = (out.pixel_values[6] * std + mean) * 255
        assert torch.allclose(
            thumb[:, 20:60, 20:60].mean((1, 2)), torch.tensor(colours[0], dtype=torch.float32), atol=1
        )
        assert torch.allclose(
            thumb[:, -60:-20, -60:-20].mean((1, 2)), torch.tensor(colours[5], dtype=torch.float32), atol=1
        )


@pytest.mark.parametrize(
    ("size", "use_thumbnail", "grid", "n"),
    [
        ((448, 448), True, (1, 1), 1),
        ((900, 900), True, (2, 2), 5),
        ((900, 900), False, (2, 2), 4),
        ((64, 64), True, (1, 1), 1),
    ],
)
def test_thumbnail_only_with_more_than_one_tile(size, use_thumbnail, grid, n):
    out = tile_image(Image.new("RGB", size, "gray"), use_thumbnail=use_thumbnail)
    assert out.grid == grid
    assert out.num_tiles == n == out.pixel_values.shape[0]
    assert out.has_thumbnail == (n > grid[0] * grid[1])
    assert out.source_size == size and out.image_size == S


def test_tile_boxes_cover_the_image_row_major():
    out = tile_image(Image.new("RGB", (1000, 667)), mode="fast")
    assert out.grid == (3, 2)
    boxes = out.tile_boxes()
    assert len(boxes) == out.num_tiles == 7
    assert boxes[0] == (0.0, 0.0, 1000 / 3, 333.5)
    assert boxes[1][0] == pytest.approx(1000 / 3) and boxes[1][1] == 0.0  # second tile: next column, same row
    assert boxes[3][:2] == (0.0, 333.5)  # fourth tile: first column, second row
    assert boxes[5][2:] == (1000.0, 667.0)
    assert boxes[6] == (0.0, 0.0, 1000.0, 667.0)  # thumbnail
    assert sum((x1 - x0) * (y1 - y0) for x0, y0, x1, y1 in boxes[:6]) == pytest.approx(1000 * 667)


# --- dtype, device, options -------------------------------------------------------------------------------------


def test_bf16_output_on_cpu():
    img = photo(800, 600, seed=9)
    f32 = tile_image(img).pixel_values
    bf16 = tile_image(img, dtype=torch.bfloat16).pixel_values
    assert bf16.dtype == torch.bfloat16 and bf16.shape == f32.shape
    # Rounded once from float32: within half a bf16 ulp (2^-8 relative) of the float32 values.
    assert ((bf16.float() - f32).abs() <= f32.abs() * 2**-8 + 1e-6).all()
    exact_bf16 = tile_image(img, mode="exact", dtype="bfloat16").pixel_values
    assert torch.equal(exact_bf16, ref_pixel_values(img).to(torch.bfloat16))


def test_float16_by_name_and_float64():
    img = photo(300, 300)
    assert tile_image(img, dtype="float16").pixel_values.dtype == torch.float16
    f64 = tile_image(img, dtype=torch.float64).pixel_values
    assert f64.dtype == torch.float64
    assert (f64 - ref_pixel_values(img).double()).abs().max() <= FAST_TOL


def test_meta_device_path_shapes():
    # The accelerator path (uint8 moved first, normalised on the device) runs shape-only on the meta device.
    out = tile_image(photo(800, 600), device="meta", dtype=torch.bfloat16)
    assert out.pixel_values.device.type == "meta"
    assert out.pixel_values.dtype == torch.bfloat16 and tuple(out.pixel_values.shape) == (13, 3, S, S)


def test_custom_mean_std():
    img = flat_colours(448, 448)
    out = tile_image(img, mean=(0.0, 0.0, 0.0), std=(1.0, 1.0, 1.0), mode="exact").pixel_values
    expected = torch.from_numpy(np.asarray(img.resize((S, S)))).permute(2, 0, 1).float().div(255)
    assert torch.equal(out[0], expected)


def test_num_threads_is_restored():
    before = torch.get_num_threads()
    tile_image(photo(500, 400), num_threads=1)
    assert torch.get_num_threads() == before


@pytest.mark.parametrize(
    ("image", "kwargs", "error"),
    [
        (Image.new("RGB", (0, 5)), {}, ImageTooSmallError),
        (np.zeros((0, 4, 3), np.uint8), {}, ImageTooSmallError),
        (np.zeros((4, 4, 3), np.float32), {}, UnsupportedSourceError),
        (np.zeros((4, 4, 2), np.uint8), {}, UnsupportedSourceError),
        ("photo.png", {}, UnsupportedSourceError),
        (Image.new("RGB", (8, 8)), {"mode": "slow"}, ConfigError),
        (Image.new("RGB", (8, 8)), {"dtype": torch.int64}, ConfigError),
        (Image.new("RGB", (8, 8)), {"dtype": "float17"}, ConfigError),
        (Image.new("RGB", (8, 8)), {"device": "not-a-device"}, ConfigError),
        (Image.new("RGB", (8, 8)), {"std": (0.2, 0.0, 0.2)}, ConfigError),
        (Image.new("RGB", (8, 8)), {"mean": (0.5, 0.5)}, ConfigError),
        (Image.new("RGB", (8, 8)), {"max_tiles": 0}, ConfigError),
        (Image.new("RGB", (8, 8)), {"num_threads": 0}, ConfigError),
    ],
)
def test_tile_image_rejects_bad_input(image, kwargs, error):
    with pytest.raises(error):
        tile_image(image, **kwargs)


# --- several images ---------------------------------------------------------------------------------------------


def test_tile_images_shares_the_budget_thumbnails_on_top():
    imgs = [Image.new("RGB", (800, 600)), Image.new("RGB", (1920, 1080))]
    tiled = tile_images(imgs, max_tiles=12)
    # 12 over 2 images: 6 each; 800x600 -> (3,2)+thumb, 1920x1080 -> (2,1)+thumb (the §7 max_num=6 vectors).
    assert [t.grid for t in tiled] == [(3, 2), (2, 1)]
    assert [t.num_tiles for t in tiled] == [7, 3]
    pixel_values, counts = concat_tiles(tiled)
    assert counts == [7, 3] and pixel_values.shape[0] == 10
    assert torch.equal(pixel_values[:7], tiled[0].pixel_values)


def test_tile_images_many_images_get_one_tile_each():
    tiled = tile_images([Image.new("RGB", (800, 600))] * 13, max_tiles=12, min_tiles=2)
    assert all(t.grid == (1, 1) and t.num_tiles == 1 for t in tiled)


def test_tile_images_passes_options_and_handles_empty():
    assert tile_images([]) == []
    tiled = tile_images([photo(400, 300)], mode="exact", dtype=torch.float32)
    assert isinstance(tiled[0], TiledImage)
    assert torch.equal(tiled[0].pixel_values, ref_pixel_values(photo(400, 300)))
    with pytest.raises(UnsupportedSourceError):
        tile_images(Image.new("RGB", (8, 8)))  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("src", "dst"),
    [((97, 1013), (448, 448)), ((1013, 97), (448, 448)), ((300, 900), (448, 448)), ((1920, 1080), (1792, 896)),
     ((400, 1200), (448, 448)), ((100, 100), (200, 50)), ((238, 241), (79, 57)), ((500, 1400), (448, 448))],
)  # fmt: skip
def test_fast_resize_follows_the_installed_pillow_pass_order(src, dst):
    # PIL's two passes clip to uint8 in between, so the pass order matters by many levels on noise. Our fast
    # resize must pick the same order as the installed Pillow; noise makes any mismatch obvious.
    from internvl_tools.resample import resize_like_pil

    arr = np.asarray(noise(*src, seed=11))
    pil = np.asarray(Image.fromarray(arr).resize(dst)).astype(int)
    ours = resize_like_pil(torch.from_numpy(arr).permute(2, 0, 1).unsqueeze(0), *dst)
    assert np.abs(ours[0].permute(1, 2, 0).numpy().astype(int) - pil).max() <= MAX_LEVELS
