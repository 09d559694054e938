"""Specification of ``internvl_tools.media``: what loads, to which pixels, and what is refused with which error.

Every fixture is generated here with PIL/numpy (or written byte by byte where PIL cannot produce it). Network
tests talk only to a local ``http.server`` in a thread, reached through the explicit ``allow_private_hosts``
opt-in; blocked-address tests never open a socket.
"""

from __future__ import annotations

import base64
import contextlib
import io
import ipaddress
import os
import re
import struct
import threading
import time
import warnings
import zlib
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import ClassVar

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from hypothesis.extra.numpy import arrays
from PIL import Image, ImageFile

from internvl_tools.errors import (
    ConfigError,
    FetchError,
    ImageDecodeError,
    ImageTooLargeError,
    ImageTooSmallError,
    InternVLError,
    MediaError,
    MediaNotFoundError,
    PathNotAllowedError,
    RemoteFetchDisabledError,
    UnsupportedSourceError,
    URLBlockedError,
)
from internvl_tools.media import (
    MediaPolicy,
    describe_source,
    encode_image,
    fetch,
    load_image,
    load_images,
    to_data_uri,
)

# --- fixture builders -------------------------------------------------------------------------------------------


def rgb_pattern(width: int = 5, height: int = 4) -> np.ndarray:
    """An HxWx3 uint8 image in which every pixel differs, so transposes and channel swaps show."""
    y, x = np.mgrid[0:height, 0:width]
    return np.stack([x * 40 + 10, y * 50 + 5, (x + y) * 17 + 1], axis=-1).astype(np.uint8)


def encoded(im: Image.Image, fmt: str = "PNG", **kwargs) -> bytes:
    buf = io.BytesIO()
    im.save(buf, fmt, **kwargs)
    return buf.getvalue()


def png_chunk(tag: bytes, data: bytes) -> bytes:
    return struct.pack(">I", len(data)) + tag + data + struct.pack(">I", zlib.crc32(tag + data) & 0xFFFFFFFF)


def raw_png(width: int, height: int, bit_depth: int, color_type: int, pixel_rows: list[bytes] | None) -> bytes:
    """A PNG written by hand: PIL cannot write 16-bit RGB, and a bomb header must not need its pixels."""
    ihdr = struct.pack(">IIBBBBB", width, height, bit_depth, color_type, 0, 0, 0)
    if pixel_rows is None:  # header only, with a token IDAT: the pixels are never meant to be decoded
        idat = zlib.compress(b"\x00" * 64)
    else:
        idat = zlib.compress(b"".join(b"\x00" + row for row in pixel_rows))
    return b"\x89PNG\r\n\x1a\n" + png_chunk(b"IHDR", ihdr) + png_chunk(b"IDAT", idat) + png_chunk(b"IEND", b"")


PATTERN = rgb_pattern()
PATTERN_PNG = encoded(Image.fromarray(PATTERN))
PATTERN_B64 = base64.b64encode(PATTERN_PNG).decode()


def pixels(im: Image.Image) -> np.ndarray:
    assert im.mode == "RGB"
    return np.asarray(im)


def assert_close(actual, expected, tol: int) -> None:
    diff = np.abs(np.asarray(actual, dtype=int) - np.asarray(expected, dtype=int))
    assert diff.max() <= tol, f"{actual} vs {expected}"


# --- accepted source forms --------------------------------------------------------------------------------------


class NonSeekable(io.RawIOBase):
    """A pipe-like stream: read() only."""

    def __init__(self, data: bytes) -> None:
        self._buf = io.BytesIO(data)

    def readable(self) -> bool:
        return True

    def seekable(self) -> bool:
        return False

    def readinto(self, b) -> int:
        chunk = self._buf.read(len(b))
        b[: len(chunk)] = chunk
        return len(chunk)


def _mid_stream() -> io.BytesIO:
    buf = io.BytesIO(b"JUNKPREFIX" + PATTERN_PNG)
    buf.seek(10)
    return buf


SOURCE_FORMS = {
    "str path": lambda p: str(p),
    "pathlib.Path": lambda p: p,
    "file:// URI": lambda p: p.as_uri(),
    "bytes": lambda p: PATTERN_PNG,
    "bytearray": lambda p: bytearray(PATTERN_PNG),
    "memoryview": lambda p: memoryview(PATTERN_PNG),
    "BytesIO": lambda p: io.BytesIO(PATTERN_PNG),
    "BytesIO positioned mid-stream": lambda p: _mid_stream(),
    "non-seekable stream": lambda p: NonSeekable(PATTERN_PNG),
    "PIL image": lambda p: Image.fromarray(PATTERN),
    "numpy HxWx3 uint8": lambda p: PATTERN.copy(),
    "base64": lambda p: PATTERN_B64,
    "base64 wrapped at 76 columns": lambda p: "\n".join(
        PATTERN_B64[i : i + 76] for i in range(0, len(PATTERN_B64), 76)
    ),
    "base64 urlsafe, unpadded": lambda p: base64.urlsafe_b64encode(PATTERN_PNG).decode().rstrip("="),
    "data URI": lambda p: "data:image/png;base64," + PATTERN_B64,
    "data URI, upper-case scheme, no media type": lambda p: "DATA:;base64," + PATTERN_B64,
    "data URI percent-encoded": lambda p: "data:image/png," + "".join(f"%{b:02X}" for b in PATTERN_PNG),
}


@pytest.mark.parametrize("form", list(SOURCE_FORMS))
def test_every_source_form_loads_the_same_rgb_pixels(form, tmp_path):
    path = tmp_path / "pattern.png"
    path.write_bytes(PATTERN_PNG)
    out = load_image(SOURCE_FORMS[form](path))
    assert isinstance(out, Image.Image)
    np.testing.assert_array_equal(pixels(out), PATTERN)


def test_open_file_handle_loads_and_is_left_open(tmp_path):
    path = tmp_path / "p.png"
    path.write_bytes(PATTERN_PNG)
    with open(path, "rb") as fh:
        np.testing.assert_array_equal(pixels(load_image(fh)), PATTERN)
        assert not fh.closed


def test_result_is_a_new_image_not_the_callers_object():
    src = Image.fromarray(PATTERN)
    out = load_image(src)
    out.putpixel((0, 0), (1, 2, 3))
    assert src.getpixel((0, 0)) == tuple(PATTERN[0, 0])


def test_relative_path_is_taken_from_the_current_directory(tmp_path, monkeypatch):
    (tmp_path / "rel.png").write_bytes(PATTERN_PNG)
    monkeypatch.chdir(tmp_path)
    np.testing.assert_array_equal(pixels(load_image("rel.png")), PATTERN)


def test_a_file_whose_name_is_valid_base64_loads_as_a_file(tmp_path, monkeypatch):
    (tmp_path / "abcd").write_bytes(PATTERN_PNG)  # "abcd" is also a valid 4-char base64 string
    monkeypatch.chdir(tmp_path)
    np.testing.assert_array_equal(pixels(load_image("abcd")), PATTERN)


# --- numpy arrays ------------------------------------------------------------------------------------------------

GRAY = np.array([[0, 64], [128, 255]], dtype=np.uint8)

ARRAY_CASES = {
    # name: (array, expected HxWx3 uint8)
    "HxW uint8": (GRAY, np.repeat(GRAY[..., None], 3, axis=2)),
    "HxWx1 uint8": (GRAY[..., None], np.repeat(GRAY[..., None], 3, axis=2)),
    "HxWx3 uint8": (PATTERN, PATTERN),
    "HxWx4 uint8 drops alpha": (np.dstack([PATTERN, np.zeros(PATTERN.shape[:2], np.uint8)]), PATTERN),
    "float in [0, 1]": (np.array([[0.0, 0.5, 1.0]], np.float32), np.array([[[0] * 3, [128] * 3, [255] * 3]])),
    "float64 HxWx3": (PATTERN / 255.0, PATTERN),
    "bool": (np.array([[True, False]]), np.array([[[255] * 3, [0] * 3]])),
    "int64 within 0..255": (PATTERN.astype(np.int64), PATTERN),
    "uint16 scaled": (np.array([[0, 257 * 100, 65535]], np.uint16), np.array([[[0] * 3, [100] * 3, [255] * 3]])),
    "non-contiguous view": (PATTERN[:, ::2], PATTERN[:, ::2]),
}


@pytest.mark.parametrize("case", list(ARRAY_CASES))
def test_numpy_arrays_load_to_expected_rgb(case):
    arr, expected = ARRAY_CASES[case]
    np.testing.assert_array_equal(pixels(load_image(arr)), expected)


def test_uint16_array_clip_reproduces_pil_convert():
    arr = np.array([[0, 100, 255, 256, 65535]], np.uint16)
    out = load_image(arr, high_bit_depth="clip")
    np.testing.assert_array_equal(pixels(out)[0, :, 0], [0, 100, 255, 255, 255])


BAD_ARRAYS = {
    "zero rows": (np.zeros((0, 5, 3), np.uint8), ImageTooSmallError),
    "zero columns": (np.zeros((5, 0), np.uint8), ImageTooSmallError),
    "channels first": (np.zeros((3, 8, 8), np.uint8), UnsupportedSourceError),
    "two channels": (np.zeros((8, 8, 2), np.uint8), UnsupportedSourceError),
    "4-d batch": (np.zeros((1, 8, 8, 3), np.uint8), UnsupportedSourceError),
    "1-d": (np.zeros(10, np.uint8), UnsupportedSourceError),
    "float 0..255": (np.full((2, 2), 200.0), UnsupportedSourceError),
    "float NaN": (np.array([[0.5, np.nan]]), UnsupportedSourceError),
    "int out of range": (np.array([[-1, 300]]), UnsupportedSourceError),
    "complex": (np.zeros((2, 2), np.complex64), UnsupportedSourceError),
}


@pytest.mark.parametrize("case", list(BAD_ARRAYS))
def test_bad_arrays_raise_typed_errors(case):
    arr, error = BAD_ARRAYS[case]
    with pytest.raises(error) as info:
        load_image(arr)
    assert isinstance(info.value, InternVLError)
    assert str(arr.shape) in str(info.value)  # the message names the input


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(arrays(np.uint8, st.tuples(st.integers(1, 9), st.integers(1, 9), st.just(3))))
def test_property_uint8_arrays_round_trip_through_every_inline_form(arr):
    for source in (arr, encode_image(Image.fromarray(arr)), to_data_uri(Image.fromarray(arr))):
        np.testing.assert_array_equal(pixels(load_image(source)), arr)


# --- bad inputs --------------------------------------------------------------------------------------------------


def _truncated_png() -> bytes:
    noisy = np.random.default_rng(0).integers(0, 256, (64, 64, 3), dtype=np.uint8)
    data = encoded(Image.fromarray(noisy))
    return data[: len(data) // 2]


def _truncated_jpeg() -> bytes:
    noisy = np.random.default_rng(1).integers(0, 256, (64, 64, 3), dtype=np.uint8)
    data = encoded(Image.fromarray(noisy), "JPEG")
    return data[: len(data) // 2]


BOMB_PNG = raw_png(30000, 30000, 8, 2, None)
EPS = b"%!PS-Adobe-3.0 EPSF-3.0\n%%BoundingBox: 0 0 10 10\nshowpage\n"

BAD_BYTES = {
    "truncated PNG": (_truncated_png(), ImageDecodeError),
    "truncated JPEG": (_truncated_jpeg(), ImageDecodeError),
    "zero bytes": (b"", ImageDecodeError),
    "plain text": (b"hello, this is not an image", ImageDecodeError),
    "HTML error page": (b"<!doctype html><html><body>404</body></html>", ImageDecodeError),
    "PNG signature only": (b"\x89PNG\r\n\x1a\n", ImageDecodeError),
    "30000x30000 bomb header": (BOMB_PNG, ImageTooLargeError),
    "EPS (would run Ghostscript)": (EPS, ImageDecodeError),
}


@pytest.mark.parametrize("case", list(BAD_BYTES))
@pytest.mark.parametrize("as_file", [False, True], ids=["bytes", "file"])
def test_bad_image_data_raises_typed_error(case, as_file, tmp_path):
    data, error = BAD_BYTES[case]
    source: object = data
    if as_file:
        source = tmp_path / "bad.img"
        source.write_bytes(data)
    with pytest.raises(error) as info:
        load_image(source)
    assert isinstance(info.value, InternVLError) and isinstance(info.value, MediaError)
    if as_file:
        assert "bad.img" in str(info.value)


BAD_SOURCES = {
    "int": (42, UnsupportedSourceError),
    "None": (None, UnsupportedSourceError),
    "list": ([PATTERN_PNG], UnsupportedSourceError),
    "text-mode file": (io.StringIO("abc"), UnsupportedSourceError),
    "empty string": ("   ", ImageDecodeError),
    "missing path": ("no/such/dir/cat.png", MediaNotFoundError),
    "long base64 of non-image": (base64.b64encode(b"plain text, not pixels " * 20).decode(), ImageDecodeError),
    "data URI with bad base64": ("data:image/png;base64,@@@@", ImageDecodeError),
    "data URI without comma": ("data:image/png;base64", ImageDecodeError),
    "data URI of text": ("data:text/plain;base64," + base64.b64encode(b"hello").decode(), ImageDecodeError),
}


@pytest.mark.parametrize("case", list(BAD_SOURCES))
def test_bad_sources_raise_typed_errors(case):
    source, error = BAD_SOURCES[case]
    with pytest.raises(error) as info:
        load_image(source)
    assert isinstance(info.value, InternVLError)


def test_missing_file_error_names_the_path_and_is_a_file_not_found_error(tmp_path):
    missing = tmp_path / "nope.png"
    with pytest.raises(MediaNotFoundError) as info:
        load_image(missing)
    assert "nope.png" in str(info.value)
    assert isinstance(info.value, FileNotFoundError)


def test_directory_is_not_an_image(tmp_path):
    with pytest.raises(MediaNotFoundError, match="not a regular file"):
        load_image(tmp_path)


def test_zero_sized_pil_image_is_too_small():
    with pytest.raises(ImageTooSmallError):
        load_image(Image.new("RGB", (0, 4)))


def test_bomb_is_refused_from_the_header_without_decoding(monkeypatch):
    def decode(self):  # decoding 900 Mpx would take seconds and gigabytes: it must never start
        raise AssertionError("pixels were decoded before the size check")

    monkeypatch.setattr(ImageFile.ImageFile, "load", decode)
    with pytest.raises(ImageTooLargeError, match=r"30000x30000|decompression"):
        load_image(BOMB_PNG)


def test_max_pixels_is_checked_before_decode(monkeypatch):
    data = encoded(Image.new("RGB", (40, 40)))
    decoded = []
    monkeypatch.setattr(ImageFile.ImageFile, "load", lambda self: decoded.append(self))
    with pytest.raises(ImageTooLargeError, match="1600 pixels"):
        load_image(data, policy=MediaPolicy(max_pixels=1000))
    assert decoded == []
    with contextlib.suppress(Exception):  # within the limit, decoding is reached (the probe is not blind)
        load_image(data, policy=MediaPolicy(max_pixels=1600))
    assert decoded


def test_default_pixel_limit_passes_an_a4_page_at_600_dpi():
    a4_header = raw_png(4961, 7016, 8, 0, None)  # 8.27 x 11.69 in at 600 DPI, grayscale
    with pytest.raises(ImageDecodeError):  # refused only because the token IDAT cannot fill it, not for size
        load_image(a4_header)


def test_pil_bomb_warning_is_absorbed_and_pil_bomb_error_is_typed(monkeypatch):
    monkeypatch.setattr(Image, "MAX_IMAGE_PIXELS", 1000)
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # any DecompressionBombWarning would fail the test
        out = load_image(encoded(Image.new("RGB", (40, 40), (9, 8, 7))))  # 1600 px: PIL warns
    assert out.getpixel((0, 0)) == (9, 8, 7)
    with pytest.raises(ImageTooLargeError, match="MAX_IMAGE_PIXELS"):
        load_image(encoded(Image.new("RGB", (50, 50))))  # 2500 px > 2 x 1000: PIL raises


def test_inline_data_over_max_bytes_is_refused():
    policy = MediaPolicy(max_bytes=100)
    for source in (PATTERN_PNG + bytes(200), "data:image/png;base64," + PATTERN_B64 * 3):
        with pytest.raises(ImageTooLargeError, match="max_bytes"):
            load_image(source, policy=policy)
    with pytest.raises(ImageTooLargeError):
        load_image(NonSeekable(PATTERN_PNG + bytes(200)), policy=policy)


def test_invalid_high_bit_depth_option():
    with pytest.raises(ConfigError, match="high_bit_depth"):
        load_image(PATTERN, high_bit_depth="round")  # type: ignore[arg-type]


# --- valid but unusual images: exact pixel values ----------------------------------------------------------------


def test_one_by_one_image_loads():
    out = load_image(encoded(Image.new("RGB", (1, 1), (12, 34, 56))))
    assert out.size == (1, 1) and out.getpixel((0, 0)) == (12, 34, 56)


CMYK_COLOURS = [
    # (RGB the CMYK was made from, or None) + CMYK value, expected RGB
    ((0, 255, 255, 0), (255, 0, 0)),  # pure red
    ((255, 0, 255, 0), (0, 255, 0)),
    ((255, 255, 0, 0), (0, 0, 255)),
    ((0, 0, 0, 0), (255, 255, 255)),  # paper white
    ((0, 0, 0, 255), (0, 0, 0)),  # key black
    ((0, 0, 0, 128), (127, 127, 127)),  # 50 % key: mid grey, not black
    ((128, 0, 0, 128), (64, 127, 127)),  # C and K multiply: 255 * (1 - .5) * (1 - .5)
]


@pytest.mark.parametrize("cmyk,expected", CMYK_COLOURS)
def test_cmyk_jpeg_has_sane_colours(cmyk, expected):
    data = encoded(Image.new("CMYK", (16, 16), cmyk), "JPEG", quality=95)
    assert b"Adobe" in data[:200]  # PIL writes Adobe-inverted CMYK: the hard case for readers
    out = load_image(data)
    assert_close(out.getpixel((8, 8)), expected, tol=4)


def test_sixteen_bit_grayscale_png_scale_and_clip(tmp_path):
    values = [0, 1000, 257 * 100, 40000, 65535]
    path = tmp_path / "g16.png"
    Image.fromarray(np.array([values], np.uint16)).save(path)
    with Image.open(path) as ref:
        assert ref.mode in ("I;16", "I")  # the fixture really is 16-bit (older Pillow says "I")
        reference = np.asarray(ref.convert("RGB"))
    scaled = pixels(load_image(path))[0]
    np.testing.assert_array_equal(scaled[:, 0], [round(v * 255 / 65535) for v in values])
    assert (scaled[:, 0] == scaled[:, 1]).all() and (scaled[:, 1] == scaled[:, 2]).all()
    clipped = load_image(path, high_bit_depth="clip")
    np.testing.assert_array_equal(pixels(clipped), reference)
    np.testing.assert_array_equal(pixels(clipped)[0, :, 0], [min(v, 255) for v in values])


def test_sixteen_bit_rgb_png_keeps_the_high_byte():
    samples = [(0xFFFF, 0x8000, 0x0000), (0x1234, 0xFF00, 0x00FF)]
    row = b"".join(struct.pack(">HHH", *px) for px in samples)
    out = load_image(raw_png(2, 1, 16, 2, [row]))
    np.testing.assert_array_equal(pixels(out)[0], [[c >> 8 for c in px] for px in samples])


@pytest.mark.parametrize("fmt", ["PNG", "GIF"])
def test_palette_with_transparency_loads_palette_colours(fmt):
    pal = Image.new("P", (3, 1))
    pal.putpalette([200, 10, 10, 10, 200, 10, 10, 10, 200] + [0] * (768 - 9))
    for x in range(3):
        pal.putpixel((x, 0), x)
    data = encoded(pal, fmt, transparency=1)
    assert "transparency" in Image.open(io.BytesIO(data)).info
    out = load_image(data)
    # transparent index 1 keeps its palette colour, exactly as Image.open(p).convert('RGB') does
    assert [out.getpixel((x, 0)) for x in range(3)] == [(200, 10, 10), (10, 200, 10), (10, 10, 200)]


MODE_CASES = {
    # mode: (PIL image, expected RGB pixel at (0, 0))
    "RGBA drops alpha (no compositing)": (Image.new("RGBA", (2, 2), (200, 10, 10, 0)), (200, 10, 10)),
    "LA": (Image.new("LA", (2, 2), (77, 0)), (77, 77, 77)),
    "L": (Image.new("L", (2, 2), 99), (99, 99, 99)),
    "1": (Image.new("1", (2, 2), 1), (255, 255, 255)),
    "YCbCr neutral grey": (Image.new("YCbCr", (2, 2), (128, 128, 128)), (128, 128, 128)),
    "I;16 scaled": (Image.fromarray(np.full((2, 2), 65535, np.uint16)), (255, 255, 255)),
    "I holding 16-bit data": (Image.fromarray(np.full((2, 2), 32896, np.int32)), (128, 128, 128)),
    "I holding 8-bit data": (Image.fromarray(np.full((2, 2), 77, np.int32)), (77, 77, 77)),
    "F in [0, 1]": (Image.fromarray(np.full((2, 2), 0.5, np.float32)), (128, 128, 128)),
}


@pytest.mark.parametrize("case", list(MODE_CASES))
def test_modes_convert_to_rgb(case):
    im, expected = MODE_CASES[case]
    assert load_image(im).getpixel((0, 0)) == expected


@pytest.mark.parametrize("mode", ["RGBA", "LA", "L", "P", "CMYK", "YCbCr", "1"])
def test_eight_bit_modes_match_reference_convert(mode):
    src = Image.fromarray(np.dstack([PATTERN, PATTERN[..., :1]])).convert(mode)
    reference = Image.open(io.BytesIO(encoded(src, "TIFF"))).convert("RGB")
    np.testing.assert_array_equal(pixels(load_image(encoded(src, "TIFF"))), np.asarray(reference))


def _oriented_jpeg(orientation: int) -> bytes:
    im = Image.new("RGB", (32, 16), (220, 20, 20))
    im.paste((20, 20, 220), (16, 0, 32, 16))  # left half red, right half blue
    exif = Image.Exif()
    exif[0x0112] = orientation
    return encoded(im, "JPEG", exif=exif.tobytes(), quality=95)


def test_exif_orientation_is_applied_by_default():
    out = load_image(_oriented_jpeg(6))  # 6: rotate 90 degrees clockwise to display
    assert out.size == (16, 32)
    assert_close(out.getpixel((8, 4)), (220, 20, 20), tol=12)  # the left edge is now on top
    assert_close(out.getpixel((8, 28)), (20, 20, 220), tol=12)


def test_exif_transpose_false_gives_the_reference_orientation():
    data = _oriented_jpeg(6)
    out = load_image(data, exif_transpose=False)
    assert out.size == (32, 16)
    np.testing.assert_array_equal(pixels(out), np.asarray(Image.open(io.BytesIO(data)).convert("RGB")))


# --- path policy -------------------------------------------------------------------------------------------------


@pytest.fixture
def sandbox(tmp_path):
    inside = tmp_path / "inside"
    outside = tmp_path / "outside"
    (inside / "sub").mkdir(parents=True)
    outside.mkdir()
    (inside / "ok.png").write_bytes(PATTERN_PNG)
    (inside / "sub" / "deep.png").write_bytes(PATTERN_PNG)
    (outside / "secret.png").write_bytes(PATTERN_PNG)
    (inside / "escape.png").symlink_to(outside / "secret.png")
    (inside / "linkdir").symlink_to(outside, target_is_directory=True)
    (inside / "alias.png").symlink_to(inside / "ok.png")
    return inside, outside, MediaPolicy.sandboxed([inside])


ALLOWED = ["ok.png", "sub/deep.png", "sub/../ok.png", "alias.png", "{inside}/ok.png", "file://{inside}/ok.png"]
REFUSED = [
    "../outside/secret.png",
    "sub/../../outside/secret.png",
    "escape.png",
    "linkdir/secret.png",
    "{outside}/secret.png",
    "file://{outside}/secret.png",
    "/etc/passwd",
]


@pytest.mark.parametrize("template", ALLOWED)
def test_sandbox_allows_paths_inside(template, sandbox):
    inside, outside, policy = sandbox
    source = template.format(inside=inside, outside=outside)
    np.testing.assert_array_equal(pixels(load_image(source, policy=policy)), PATTERN)


@pytest.mark.parametrize("template", REFUSED)
def test_sandbox_refuses_escapes(template, sandbox):
    inside, outside, policy = sandbox
    with pytest.raises(PathNotAllowedError) as info:
        load_image(template.format(inside=inside, outside=outside), policy=policy)
    assert isinstance(info.value, PermissionError) and isinstance(info.value, InternVLError)
    assert "outside the allowed directories" in str(info.value)


def test_sandbox_refuses_pathlike_escapes_too(sandbox):
    inside, _, policy = sandbox
    with pytest.raises(PathNotAllowedError):
        load_image(inside / ".." / "outside" / "secret.png", policy=policy)


def test_sandbox_still_accepts_inline_base64_that_starts_like_an_absolute_path(sandbox):
    _, _, policy = sandbox
    jpeg_b64 = base64.b64encode(encoded(Image.new("RGB", (8, 8), (0, 128, 255)), "JPEG")).decode()
    assert jpeg_b64.startswith("/9j/")  # would be an absolute path outside the sandbox
    assert_close(load_image(jpeg_b64, policy=policy).getpixel((4, 4)), (0, 128, 255), tol=4)


def test_local_files_can_be_switched_off(tmp_path):
    path = tmp_path / "p.png"
    path.write_bytes(PATTERN_PNG)
    policy = MediaPolicy(allow_local_files=False)
    for source in (path, str(path), path.as_uri()):
        with pytest.raises(PathNotAllowedError):
            load_image(source, policy=policy)
    np.testing.assert_array_equal(pixels(load_image(PATTERN_PNG, policy=policy)), PATTERN)


def test_file_uri_with_remote_host_is_refused():
    with pytest.raises(URLBlockedError):
        load_image("file://fileserver/share/cat.png")


def test_policy_validation():
    for kwargs in ({"allowed_schemes": ("ftp",)}, {"max_pixels": 0}, {"max_bytes": -1}, {"max_redirects": -1}):
        with pytest.raises(ConfigError):
            MediaPolicy(**kwargs)
    assert MediaPolicy(allowed_dirs=["."]).allowed_dirs == (Path.cwd().resolve(),)


# --- URLs without a network --------------------------------------------------------------------------------------


@pytest.mark.parametrize("url", ["http://example.com/cat.png", "https://example.com/a.jpg", "HTTP://EXAMPLE.COM/"])
def test_urls_are_refused_by_default(url):
    with pytest.raises(RemoteFetchDisabledError) as info:
        load_image(url)
    assert isinstance(info.value, InternVLError) and "allow_remote" in str(info.value)


@pytest.mark.parametrize("url", ["ftp://example.com/a.png", "gopher://example.com/", "javascript://x"])
def test_other_schemes_are_refused(url):
    with pytest.raises(URLBlockedError, match="scheme"):
        load_image(url, policy=MediaPolicy(allow_remote=True))


BLOCKED_HOSTS = [
    "127.0.0.1", "10.1.2.3", "172.16.0.1", "192.168.1.1", "169.254.169.254", "100.64.0.1", "0.0.0.0",
    "224.0.0.1", "240.0.0.1", "255.255.255.255",
    "[::1]", "[::]", "[::ffff:127.0.0.1]", "[::ffff:169.254.169.254]", "[fe80::1]", "[fec0::1]", "[fd00::1]",
    "[ff02::1]", "[64:ff9b::7f00:1]", "[2002:7f00:1::]",
    "2130706433", "0x7f000001", "0x7f.1", "127.1", "017700000001",
    "localhost", "LOCALHOST.", "api.localhost",
]  # fmt: skip


@pytest.mark.parametrize("host", BLOCKED_HOSTS)
def test_private_and_special_addresses_are_blocked(host):
    url = f"http://{host}:8080/latest/meta-data"
    with pytest.raises(URLBlockedError) as info:
        load_image(url, policy=MediaPolicy(allow_remote=True))
    assert isinstance(info.value, InternVLError) and isinstance(info.value, PermissionError)


PRIVATE_NETS = ["10.0.0.0/8", "172.16.0.0/12", "192.168.0.0/16", "127.0.0.0/8", "169.254.0.0/16", "100.64.0.0/10"]


@settings(max_examples=60, deadline=None)
@given(st.sampled_from(PRIVATE_NETS), st.integers(0, 2**32 - 1), st.booleans())
def test_property_every_private_ipv4_is_blocked_in_any_spelling(net, offset, mapped):
    network = ipaddress.ip_network(net)
    addr = network[offset % network.num_addresses]
    host = f"[::ffff:{addr}]" if mapped else str(int(addr))  # IPv4-mapped, or the decimal integer form
    with pytest.raises(URLBlockedError):
        load_image(f"http://{host}/x.png", policy=MediaPolicy(allow_remote=True))


def test_a_name_with_any_private_address_is_blocked(monkeypatch):
    monkeypatch.setattr(fetch, "_resolve_host", lambda host, port: ["93.184.216.34", "10.0.0.7"])
    with pytest.raises(URLBlockedError, match=re.escape("10.0.0.7")):
        load_image("http://mixed.example/cat.png", policy=MediaPolicy(allow_remote=True))


def test_password_in_url_is_not_echoed_in_errors():
    with pytest.raises(RemoteFetchDisabledError) as info:
        load_image("https://user:hunter2@example.com/cat.png")
    assert "hunter2" not in str(info.value)


# --- URLs against a local server ---------------------------------------------------------------------------------


class _Handler(BaseHTTPRequestHandler):
    seen_hosts: ClassVar[list[str]] = []
    stop: ClassVar[threading.Event] = threading.Event()

    def log_message(self, *args) -> None:  # keep test output clean
        pass

    def _send(self, status: int, body: bytes = b"", headers: dict[str, str] | None = None, length: bool = True):
        self.send_response(status)
        for key, value in (headers or {}).items():
            self.send_header(key, value)
        if length:
            self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def do_GET(self) -> None:  # http.server dispatches on this name
        type(self).seen_hosts.append(self.headers.get("Host", ""))
        port = self.server.server_address[1]
        routes = {
            "/img.png": lambda: self._send(200, PATTERN_PNG, {"Content-Type": "image/png"}),
            "/redirect-ok": lambda: self._send(302, headers={"Location": "/img.png"}),
            "/redirect-chain": lambda: self._send(301, headers={"Location": "/redirect-ok"}),
            "/redirect-metadata": lambda: self._send(
                302, headers={"Location": "http://169.254.169.254/latest/meta-data"}
            ),
            "/redirect-localhost": lambda: self._send(302, headers={"Location": f"http://localhost:{port}/img.png"}),
            "/redirect-ftp": lambda: self._send(302, headers={"Location": "ftp://example.com/img.png"}),
            "/loop": lambda: self._send(302, headers={"Location": "/loop"}),
            "/missing": lambda: self._send(404, b"not found"),
            "/error": lambda: self._send(500, b"boom"),
            "/big": lambda: self._send(200, bytes(5000)),
            "/big-no-length": lambda: self._send(200, bytes(5000), length=False),
            "/html": lambda: self._send(200, b"<html>login</html>", {"Content-Type": "text/html"}),
            "/slow": self._slow,
            "/drip": self._drip,
        }
        routes.get(self.path, lambda: self._send(404))()

    def _slow(self) -> None:
        type(self).stop.wait(3)
        self._send(200, PATTERN_PNG)

    def _drip(self) -> None:
        self.send_response(200)
        self.send_header("Content-Length", str(len(PATTERN_PNG)))
        self.end_headers()
        try:
            for i in range(0, len(PATTERN_PNG), 8):
                if type(self).stop.wait(0.05):
                    return
                self.wfile.write(PATTERN_PNG[i : i + 8])
                self.wfile.flush()
        except OSError:
            pass


@pytest.fixture(scope="module")
def server():
    _Handler.stop.clear()
    httpd = ThreadingHTTPServer(("127.0.0.1", 0), _Handler)
    httpd.daemon_threads = True
    thread = threading.Thread(target=httpd.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{httpd.server_address[1]}"
    _Handler.stop.set()
    httpd.shutdown()
    httpd.server_close()


LOCAL = MediaPolicy(allow_remote=True, allow_private_hosts=frozenset({"127.0.0.1"}), timeout=5)


def test_local_server_png_loads_with_the_test_opt_in(server):
    np.testing.assert_array_equal(pixels(load_image(f"{server}/img.png", policy=LOCAL)), PATTERN)


def test_local_server_is_blocked_without_the_opt_in(server):
    with pytest.raises(URLBlockedError, match="loopback"):
        load_image(f"{server}/img.png", policy=MediaPolicy(allow_remote=True))


@pytest.mark.parametrize("route", ["/redirect-ok", "/redirect-chain"])
def test_redirects_to_allowed_hosts_are_followed(server, route):
    np.testing.assert_array_equal(pixels(load_image(server + route, policy=LOCAL)), PATTERN)


def test_redirect_limit(server):
    with pytest.raises(FetchError, match="redirected more than 3"):
        load_image(f"{server}/loop", policy=LOCAL)
    with pytest.raises(FetchError, match="redirected more than 1"):
        load_image(f"{server}/redirect-chain", policy=MediaPolicy(**{**_local_kwargs(), "max_redirects": 1}))


def _local_kwargs() -> dict:
    return {"allow_remote": True, "allow_private_hosts": frozenset({"127.0.0.1"}), "timeout": 5}


@pytest.mark.parametrize(
    "route,error",
    [
        ("/redirect-metadata", URLBlockedError),  # redirect into cloud metadata
        ("/redirect-localhost", URLBlockedError),  # same server, but by a name that is not exempt
        ("/redirect-ftp", URLBlockedError),
    ],
)
def test_redirects_are_rechecked_at_every_hop(server, route, error):
    with pytest.raises(error):
        load_image(server + route, policy=LOCAL)


@pytest.mark.parametrize("route,status", [("/missing", "404"), ("/error", "500")])
def test_http_errors_name_url_and_status(server, route, status):
    with pytest.raises(FetchError) as info:
        load_image(server + route, policy=LOCAL)
    assert status in str(info.value) and route in str(info.value)
    assert isinstance(info.value, InternVLError)


@pytest.mark.parametrize("route", ["/big", "/big-no-length"])
def test_byte_cap_refuses_large_bodies(server, route):
    with pytest.raises(FetchError, match="max_bytes"):
        load_image(server + route, policy=MediaPolicy(**{**_local_kwargs(), "max_bytes": 1000}))


def test_non_image_body_is_a_decode_error(server):
    with pytest.raises(ImageDecodeError) as info:
        load_image(f"{server}/html", policy=LOCAL)
    assert "/html" in str(info.value)


@pytest.mark.parametrize("route", ["/slow", "/drip"])
def test_timeout_is_honoured(server, route):
    policy = MediaPolicy(**{**_local_kwargs(), "timeout": 0.3})
    start = time.perf_counter()
    with pytest.raises(FetchError, match=r"timed out|took longer"):
        load_image(server + route, policy=policy)
    assert time.perf_counter() - start < 2.5  # 8x the timeout; the server would answer only after 3 s


def test_connects_to_the_checked_address_and_sends_the_original_host(server, monkeypatch):
    port = server.rsplit(":", 1)[1]
    calls = []

    def fake_resolver(host, port):
        calls.append(host)
        return ["127.0.0.1"]  # a real DNS lookup of this name would fail: only the pinned IP can work

    monkeypatch.setattr(fetch, "_resolve_host", fake_resolver)
    _Handler.seen_hosts.clear()
    out = load_image(f"http://images.invalid:{port}/img.png", policy=LOCAL)
    np.testing.assert_array_equal(pixels(out), PATTERN)
    assert calls == ["images.invalid"]  # resolved once, by us
    assert _Handler.seen_hosts == [f"images.invalid:{port}"]


def test_a_host_name_can_be_exempted(server, monkeypatch):
    port = server.rsplit(":", 1)[1]
    monkeypatch.setattr(fetch, "_resolve_host", lambda host, port: ["10.9.8.7"])
    with pytest.raises(URLBlockedError):
        load_image(f"http://intranet.invalid:{port}/img.png", policy=LOCAL)
    monkeypatch.setattr(fetch, "_resolve_host", lambda host, port: ["127.0.0.1"])
    named = MediaPolicy(allow_remote=True, allow_private_hosts=frozenset({"intranet.invalid"}), timeout=5)
    np.testing.assert_array_equal(pixels(load_image(f"http://intranet.invalid:{port}/img.png", policy=named)), PATTERN)


# --- batch, encode, describe -------------------------------------------------------------------------------------


def test_load_images_keeps_going_after_a_bad_item(tmp_path):
    sources = [PATTERN_PNG, b"garbage", tmp_path / "missing.png", PATTERN]
    out = load_images(sources, return_errors=True)
    assert [type(x) for x in out] == [Image.Image, ImageDecodeError, MediaNotFoundError, Image.Image]
    np.testing.assert_array_equal(pixels(out[3]), PATTERN)


def test_load_images_raises_the_first_error_with_notes_about_the_rest(tmp_path):
    with pytest.raises(ImageDecodeError) as info:
        load_images([PATTERN_PNG, b"garbage", tmp_path / "missing.png"])
    notes = "\n".join(info.value.__notes__)
    assert "item 1 of 3" in notes and "item 2 also failed" in notes and "MediaNotFoundError" in notes


def test_load_images_all_good_and_single_source_misuse():
    assert [im.size for im in load_images([PATTERN, PATTERN_PNG])] == [(5, 4), (5, 4)]
    with pytest.raises(UnsupportedSourceError, match="list"):
        load_images("cat.png")


def test_encode_image_is_lossless_png_by_default():
    data = encode_image(Image.fromarray(PATTERN))
    assert data.startswith(b"\x89PNG")
    np.testing.assert_array_equal(np.asarray(Image.open(io.BytesIO(data))), PATTERN)


def test_encode_image_jpeg_accepts_rgba_and_bad_formats_are_typed():
    data = encode_image(Image.new("RGBA", (4, 4), (10, 200, 30, 0)), "jpg")
    assert data[:3] == b"\xff\xd8\xff"
    with pytest.raises(UnsupportedSourceError):
        encode_image(Image.new("RGB", (2, 2)), "NOT-A-FORMAT")


@pytest.mark.parametrize("fmt,mime", [("PNG", "image/png"), ("JPEG", "image/jpeg"), ("WEBP", "image/webp")])
def test_to_data_uri_round_trips(fmt, mime):
    uri = to_data_uri(Image.fromarray(PATTERN), fmt)
    assert uri.startswith(f"data:{mime};base64,")
    tol = 0 if fmt == "PNG" else 60
    assert_close(pixels(load_image(uri)), PATTERN, tol=tol)


DESCRIPTIONS = [
    (b"x" * 3_000_000, "bytes (3000000 bytes)"),
    (np.zeros((4, 5, 3), np.uint8), "numpy array (shape (4, 5, 3), dtype uint8)"),
    (Image.new("LA", (7, 3)), "PIL image (mode LA, 7x3)"),
    ("cat.png", "path 'cat.png'"),
    ("https://u:secret@example.com/a.png", "URL 'https://***@example.com/a.png'"),
]


@pytest.mark.parametrize("source,expected", DESCRIPTIONS, ids=lambda x: type(x).__name__)
def test_describe_source(source, expected):
    assert describe_source(source) == expected


def test_describe_source_truncates_big_inline_data():
    huge = PATTERN_B64 * 10_000
    for source in (huge, "data:image/png;base64," + huge):
        text = describe_source(source)
        assert len(text) < 200 and str(len(source)) in text


def test_error_for_huge_non_image_base64_is_short():
    with pytest.raises(ImageDecodeError) as info:
        load_image(base64.b64encode(os.urandom(300_000)).decode())
    assert len(str(info.value)) < 500
