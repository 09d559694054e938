"""load_pixels: load_image's pixels, bit for bit, decoded straight into the tensor the tiler reads.

Every kind of file a user sends is decoded both ways and compared exactly; the cases torchvision decodes are pinned
(so the fast route is really taken where it should be), and everything else must fall back to Pillow. Tiling the
tensor gives exact-mode tiles bit-identical to tiling the PIL image, and fast-mode tiles within 2 uint8 levels.
"""

from __future__ import annotations

import io
import struct
import zlib

import numpy as np
import pytest
import torch
from PIL import Image, ImageDraw

from internvl_tools.errors import ConfigError, ImageDecodeError, ImageTooLargeError
from internvl_tools.media.decode import open_image
from internvl_tools.media.images import load_image, load_pixels
from internvl_tools.media.pixels import torchvision_can_decode
from internvl_tools.media.policy import MediaPolicy
from internvl_tools.tiling import tile_image

STD = (0.229, 0.224, 0.225)


def scene(w: int = 301, h: int = 203, seed: int = 0) -> Image.Image:
    """A busy RGB picture: gradients, text, hard edges and noise (odd sizes on purpose)."""
    rng = np.random.default_rng(seed)
    x = np.linspace(0, 255, w)[None, :, None]
    y = np.linspace(0, 255, h)[:, None, None]
    base = np.concatenate([x + 0 * y, y + 0 * x, (x + y) / 2], axis=2)
    arr = np.clip(base + rng.normal(0, 12, (h, w, 3)), 0, 255).astype(np.uint8)
    im = Image.fromarray(arr)
    draw = ImageDraw.Draw(im)
    draw.rectangle((20, 20, 120, 90), fill=(250, 10, 10))
    draw.text((30, 120), "Invoice 1,234.56", fill=(0, 0, 0))
    return im


def encode(im: Image.Image, fmt: str, **kwargs) -> bytes:
    buf = io.BytesIO()
    im.save(buf, fmt, **kwargs)
    return buf.getvalue()


def with_orientation(im: Image.Image, orientation: int, fmt: str = "JPEG", **kwargs) -> bytes:
    exif = Image.Exif()
    exif[0x0112] = orientation
    return encode(im, fmt, exif=exif.tobytes(), **kwargs)


def chunk(kind: bytes, data: bytes) -> bytes:
    return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))


def png_with_text_after_pixels(inflated: int) -> bytes:
    """A small RGB PNG with a zTXt chunk after its pixels that inflates to ``inflated`` bytes."""
    data = encode(scene(20, 10), "PNG")
    end = data.rindex(b"IEND") - 4
    text = chunk(b"zTXt", b"note\x00\x00" + zlib.compress(bytes(inflated), 9))
    return data[:end] + text + data[end:]


def png_16bit_rgb(w: int = 40, h: int = 30) -> bytes:
    """A 16-bit RGB PNG (Pillow cannot write one), written chunk by chunk."""
    rng = np.random.default_rng(3)
    arr = rng.integers(0, 65535, (h, w, 3), dtype=np.uint16).astype(">u2")
    raw = b"".join(b"\x00" + arr[r].tobytes() for r in range(h))
    ihdr = struct.pack(">IIBBBBB", w, h, 16, 2, 0, 0, 0)
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) + chunk(b"IDAT", zlib.compress(raw)) + chunk(b"IEND", b"")


def palette_with_transparency() -> bytes:
    im = scene(90, 70).convert("P", palette=Image.Palette.ADAPTIVE, colors=16)
    return encode(im, "PNG", transparency=3)


# name -> (bytes builder, decoded by torchvision?)
CASES = {
    "png rgb": (lambda: encode(scene(), "PNG"), True),
    "png rgba": (lambda: encode(scene().convert("RGBA"), "PNG"), True),
    "png grey": (lambda: encode(scene().convert("L"), "PNG"), True),
    "png grey+alpha": (lambda: encode(scene().convert("LA"), "PNG"), True),
    "png palette": (lambda: encode(scene().convert("P", palette=Image.Palette.ADAPTIVE), "PNG"), True),
    "png palette 4-bit": (
        lambda: encode(scene().convert("P", palette=Image.Palette.ADAPTIVE, colors=16), "PNG", bits=4),
        True,
    ),
    "png 1-bit": (lambda: encode(scene().convert("1"), "PNG"), True),
    "png palette+tRNS": (palette_with_transparency, False),
    "png exif rotated 6": (lambda: with_orientation(scene(), 6, "PNG"), True),  # eligible, then kept by its eXIf
    "png small zTXt": (lambda: png_with_text_after_pixels(100), True),  # eligible, then kept by its zTXt
    "png 16-bit grey": (
        lambda: encode(Image.fromarray(np.arange(40 * 30, dtype=np.uint16).reshape(30, 40) * 50), "PNG"),
        False,
    ),
    "png 16-bit rgb": (png_16bit_rgb, False),
    "jpeg 4:2:0": (lambda: encode(scene(), "JPEG", quality=85), True),
    "jpeg 4:4:4": (lambda: encode(scene(), "JPEG", quality=95, subsampling=0), True),
    "jpeg 4:2:2": (lambda: encode(scene(), "JPEG", quality=75, subsampling=1), True),
    "jpeg progressive": (lambda: encode(scene(), "JPEG", quality=80, progressive=True), True),
    "jpeg grey": (lambda: encode(scene().convert("L"), "JPEG"), True),
    "jpeg cmyk": (lambda: encode(scene().convert("CMYK"), "JPEG"), False),
    "jpeg exif rotated 3": (lambda: with_orientation(scene(), 3), True),
    "jpeg exif rotated 6": (lambda: with_orientation(scene(), 6), True),
    "jpeg exif rotated 8": (lambda: with_orientation(scene(), 8), True),
    "jpeg exif mirrored 5": (lambda: with_orientation(scene(), 5), True),
    "gif": (lambda: encode(scene(), "GIF"), False),
    "webp": (lambda: encode(scene(), "WEBP", quality=80), False),
    "tiff": (lambda: encode(scene(), "TIFF"), False),
    "bmp": (lambda: encode(scene(), "BMP"), False),
}


@pytest.fixture(scope="module")
def files() -> dict[str, bytes]:
    return {name: build() for name, (build, _) in CASES.items()}


def as_hwc(t: torch.Tensor) -> np.ndarray:
    return t.permute(1, 2, 0).numpy()


@pytest.mark.parametrize("exif_transpose", [True, False], ids=["exif", "no-exif"])
@pytest.mark.parametrize("name", list(CASES))
def test_pixels_equal_load_image_bit_for_bit(files, name, exif_transpose):
    data = files[name]
    want = np.asarray(load_image(data, exif_transpose=exif_transpose))
    got = load_pixels(data, exif_transpose=exif_transpose)
    assert got.dtype == torch.uint8 and got.shape[0] == 3
    assert np.array_equal(as_hwc(got), want), f"max |diff| {np.abs(as_hwc(got).astype(int) - want).max()}"
    forced = load_pixels(data, exif_transpose=exif_transpose, decoder="pillow")
    assert np.array_equal(as_hwc(forced), want)


@pytest.mark.parametrize("name", list(CASES))
def test_torchvision_decodes_exactly_the_pinned_cases(files, name):
    im = open_image(io.BytesIO(files[name]))
    try:
        assert torchvision_can_decode(im, exif_transpose=True) is CASES[name][1]
    finally:
        im.close()


@pytest.mark.parametrize("route", ["auto", "pillow"])
def test_torchvision_route_skips_the_pil_copies(files, route, monkeypatch):
    """The fast route never builds a PIL RGB copy; the pillow route does (what the option is for)."""
    calls = []
    original = Image.Image.tobytes
    monkeypatch.setattr(Image.Image, "tobytes", lambda self, *a, **k: calls.append(1) or original(self, *a, **k))
    load_pixels(files["png rgb"], decoder=route)
    assert bool(calls) is (route == "pillow")


@pytest.mark.parametrize("source", ["path", "file object", "data uri"])
def test_every_source_kind_reaches_the_same_pixels(files, tmp_path, source):
    import base64

    data = files["jpeg 4:2:0"]
    path = tmp_path / "page.jpg"
    path.write_bytes(data)
    src = {
        "path": str(path),
        "file object": io.BytesIO(data),
        "data uri": "data:image/jpeg;base64," + base64.b64encode(data).decode(),
    }[source]
    assert np.array_equal(as_hwc(load_pixels(src)), np.asarray(load_image(data)))


@pytest.mark.parametrize("name", ["png rgb", "jpeg 4:2:0", "jpeg progressive"])
@pytest.mark.parametrize("cut", [0.3, 0.7, 0.97])
def test_truncated_files_fail_as_load_image_does(files, name, cut):
    data = files[name][: int(len(files[name]) * cut)]
    with pytest.raises(ImageDecodeError):
        load_image(data)
    with pytest.raises(ImageDecodeError):
        load_pixels(data)


def test_a_text_bomb_after_the_pixels_is_refused_as_load_image_refuses_it():
    bomb = png_with_text_after_pixels(4 * 1024 * 1024)
    with pytest.raises(ImageTooLargeError):
        load_image(bomb)
    with pytest.raises(ImageTooLargeError, match="MAX_TEXT_CHUNK"):
        load_pixels(bomb)


def test_pixel_limit_is_checked_before_torchvision_sees_the_bytes(files):
    with pytest.raises(ImageTooLargeError):
        load_pixels(files["png rgb"], policy=MediaPolicy(max_pixels=1000))


def test_unknown_decoder_is_a_config_error(files):
    with pytest.raises(ConfigError, match="decoder"):
        load_pixels(files["png rgb"], decoder="libpng")  # type: ignore[arg-type]


@pytest.mark.parametrize("name", ["png rgb", "png palette", "jpeg 4:2:0", "jpeg exif rotated 6", "png 16-bit grey"])
def test_tiles_from_the_tensor_match_tiles_from_the_image(files, name):
    image, pixels = load_image(files[name]), load_pixels(files[name])
    exact_pil = tile_image(image, max_tiles=6, image_size=112, mode="exact").pixel_values
    exact_t = tile_image(pixels, max_tiles=6, image_size=112, mode="exact").pixel_values
    assert torch.equal(exact_pil, exact_t)
    fast_t = tile_image(pixels, max_tiles=6, image_size=112).pixel_values
    levels = (fast_t - exact_pil).abs() * torch.tensor(STD).view(1, 3, 1, 1) * 255
    assert levels.max().item() <= 2 + 1e-3
    assert torch.equal(fast_t, tile_image(image, max_tiles=6, image_size=112).pixel_values)


def test_tile_image_refuses_a_tensor_in_the_wrong_layout():
    from internvl_tools.errors import UnsupportedSourceError

    with pytest.raises(UnsupportedSourceError, match="3×H×W"):
        tile_image(torch.zeros((8, 8, 3), dtype=torch.uint8))
    with pytest.raises(UnsupportedSourceError, match="uint8"):
        tile_image(torch.zeros((3, 8, 8)))


def test_a_file_torchvision_refuses_is_decided_by_pillow(files, monkeypatch):
    import internvl_tools.media.decode as decode

    def refuse(*args, **kwargs):
        raise ImageDecodeError("libjpeg says no")

    monkeypatch.setattr(decode, "torchvision_decode", refuse)
    data = files["jpeg 4:2:0"]
    assert np.array_equal(as_hwc(load_pixels(data)), np.asarray(load_image(data)))
