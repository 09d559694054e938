"""Only the chosen decoders ever see user bytes, and no image is decoded past the pixel limit (issue 14).

* The format allow-list holds in a fresh process and after any other open: EPS, PSD, XBM, ... are refused with a
  typed error (never handed to Ghostscript or another plugin), and TIFF, WEBP, JPEG 2000, PNG and JPEG all open,
  in either order. Checked in fresh interpreters, since Pillow registers its plugins lazily.
* Big-dimension headers (PNG, 1-bit PNG, TIFF, GIF, JPEG) and PNG text/ICC-chunk bombs give ``ImageTooLargeError``
  naming the limit, from ``load_image`` and from the documents path alike, in bounded memory.
* Each frame of a multi-page TIFF is checked on its own: an oversized page fails alone.

Every hostile file is generated here, from a few bytes.
"""

from __future__ import annotations

import io
import json
import os
import struct
import subprocess
import sys
import textwrap
import zlib
from pathlib import Path

import pytest
from PIL import Image

from internvl_tools.documents import render_pages
from internvl_tools.errors import DocumentError, ImageDecodeError, ImageTooLargeError
from internvl_tools.media import MediaPolicy, load_image, open_image

ROOT = Path(__file__).parents[2]


def _chunk(kind: bytes, data: bytes) -> bytes:
    return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))


def png(
    width: int,
    height: int,
    *,
    bit_depth: int = 8,
    color: int = 2,
    rows: bytes | None = None,
    before: bytes = b"",
    after: bytes = b"",
) -> bytes:
    """A PNG with any header size; ``rows`` defaults to one all-zero row (a truncated image past that)."""
    ihdr = struct.pack(">IIBBBBB", width, height, bit_depth, color, 0, 0, 0)
    channels = {0: 1, 2: 3}[color]
    row = b"\x00" + bytes((width * channels * bit_depth + 7) // 8)
    return (
        b"\x89PNG\r\n\x1a\n"
        + _chunk(b"IHDR", ihdr)
        + before
        + _chunk(b"IDAT", zlib.compress(row if rows is None else rows, 9))
        + after
        + _chunk(b"IEND", b"")
    )


def one_bit_png_bomb(side: int) -> bytes:
    """A complete, valid 1-bit PNG of ``side`` x ``side`` zeros: a few KB that decode to ``side**2`` pixels."""
    row = b"\x00" + bytes((side + 7) // 8)
    compressor = zlib.compressobj(9)
    body = b"".join(compressor.compress(row) for _ in range(side)) + compressor.flush()
    ihdr = struct.pack(">IIBBBBB", side, side, 1, 0, 0, 0, 0)
    return b"\x89PNG\r\n\x1a\n" + _chunk(b"IHDR", ihdr) + _chunk(b"IDAT", body) + _chunk(b"IEND", b"")


def tiff(width: int, height: int) -> bytes:
    """A 1-bit TIFF header claiming ``width`` x ``height`` (one strip, which is mostly missing)."""
    entries = [
        (256, 4, width),
        (257, 4, height),
        (258, 3, 1),
        (259, 3, 1),
        (262, 3, 1),
        (273, 4, 8 + 2 + 12 * 9 + 4),
        (277, 3, 1),
        (278, 4, height),
        (279, 4, (width + 7) // 8 * height),
    ]
    ifd = struct.pack("<H", len(entries)) + b"".join(struct.pack("<HHII", t, k, 1, v) for t, k, v in entries)
    return b"II*\x00" + struct.pack("<I", 8) + ifd + struct.pack("<I", 0) + bytes(64)


def gif(width: int, height: int) -> bytes:
    screen = struct.pack("<HHBBB", width, height, 0x80, 0, 0) + bytes(6)
    frame = b"\x2c" + struct.pack("<HHHHB", 0, 0, width, height, 0) + b"\x02\x02\x4c\x01\x00"
    return b"GIF89a" + screen + frame + b"\x3b"


def jpeg(width: int, height: int) -> bytes:
    buf = io.BytesIO()
    Image.new("L", (8, 8)).save(buf, "JPEG")
    data = bytearray(buf.getvalue())
    sof = data.index(b"\xff\xc0")
    data[sof + 5 : sof + 9] = struct.pack(">HH", height, width)
    return bytes(data)


def text_bomb(kind: bytes) -> bytes:
    """A 1x1 PNG with a zTXt or iCCP chunk that inflates to 4 MB (Pillow's per-chunk limit is 1 MB)."""
    payload = b"bomb\x00\x00" + zlib.compress(bytes(4 * 1024 * 1024), 9)
    chunk = _chunk(kind, payload)
    return png(1, 1, before=chunk) if kind == b"iCCP" else png(1, 1, after=chunk)


HOSTILE_SIZES = {
    "png 30000x30000": png(30000, 30000),
    "1-bit png 13300x13300 (177 Mpx)": one_bit_png_bomb(13300),
    "tiff 60000x60000": tiff(60000, 60000),
    "gif 65535x65535": gif(65535, 65535),
    "jpeg 65500x65500": jpeg(65500, 65500),
    "png zTXt bomb": text_bomb(b"zTXt"),
    "png iCCP bomb": text_bomb(b"iCCP"),
}


@pytest.mark.parametrize("name", list(HOSTILE_SIZES))
def test_bombs_are_refused_with_a_typed_error_naming_the_limit(name) -> None:
    data = HOSTILE_SIZES[name]
    assert len(data) < 200_000
    with pytest.raises(ImageTooLargeError, match=r"max_pixels|MAX_TEXT_CHUNK|MAX_IMAGE_PIXELS") as info:
        load_image(data)
    assert "raise" in str(info.value)  # says how to lift the limit for a trusted file
    try:  # the documents path: refused when opened (over Pillow's own limit), else the page fails alone
        outcome = [page.error_type for page in render_pages(data)]
    except ImageTooLargeError:
        outcome = ["ImageTooLargeError"]
    assert outcome == ["ImageTooLargeError"]


def test_bombs_cost_bounded_memory_in_a_fresh_process(tmp_path) -> None:
    for i, data in enumerate(HOSTILE_SIZES.values()):
        (tmp_path / f"{i}.bin").write_bytes(data)
    code = textwrap.dedent(
        """
        import sys, pathlib
        from internvl_tools.documents import render_pages
        from internvl_tools.media import load_image
        from internvl_tools.errors import InternVLError
        out = []
        for path in sorted(pathlib.Path(sys.argv[1]).iterdir()):
            for read in (load_image, lambda p: [pg.error_type for pg in render_pages(p)][0]):
                try:
                    out.append(str(read(path)))
                except InternVLError as err:
                    out.append(type(err).__name__)
        hwm = next(l for l in open("/proc/self/status") if l.startswith("VmHWM")).split()[1]
        print(int(hwm) // 1024, *sorted(set(out)))
        """
    )
    done = subprocess.run(
        [sys.executable, "-c", code, str(tmp_path)],
        capture_output=True,
        text=True,
        timeout=120,
        env={**os.environ, "PYTHONPATH": str(ROOT)},
    )
    assert done.returncode == 0, done.stderr[-2000:]
    peak_mb, *kinds = done.stdout.split()
    assert kinds == ["ImageTooLargeError"]
    assert int(peak_mb) < 300  # the 1-bit bomb alone used to take +1 GB


# ------------------------------------------------------------------------------------------------ allow-list

_REFUSED = {
    "EPS": b"%!PS-Adobe-3.0 EPSF-3.0\n%%BoundingBox: 0 0 10 10\n0 0 moveto 10 10 lineto stroke\nshowpage\n",
    "PSD": b"8BPS" + struct.pack(">H6xHIIHH", 1, 3, 4, 4, 8, 3) + bytes(12) + bytes(48),
    "XBM": b"#define im_width 8\n#define im_height 1\nstatic char im_bits[] = { 0xff };\n",
    "SVG": b'<svg xmlns="http://www.w3.org/2000/svg" width="4" height="4"/>',
}


def _encoded(fmt: str) -> bytes:
    buf = io.BytesIO()
    Image.new("RGB", (8, 6), (10, 200, 30)).save(buf, fmt)
    return buf.getvalue()


_FRESH = textwrap.dedent(
    """
    import json, sys
    from internvl_tools.documents import render_pages
    from internvl_tools.errors import InternVLError
    from internvl_tools.media import load_image
    results = []
    for path in sys.argv[1:]:
        for read in (lambda p: load_image(p).size, lambda p: next(iter(render_pages(p))).size_px):
            try:
                results.append([path.rsplit("/", 1)[-1], list(read(path))])
            except InternVLError as err:
                results.append([path.rsplit("/", 1)[-1], type(err).__name__])
    print(json.dumps(results))
    """
)


@pytest.mark.parametrize("order", ["refused-first", "allowed-first", "png-first"])
def test_the_allow_list_holds_in_a_fresh_process_in_any_order(tmp_path, order) -> None:
    files = {}
    for name, data in _REFUSED.items():
        files[name] = tmp_path / f"{name}.bad"  # no telling extension: the bytes alone must be refused
        files[name].write_bytes(data)
    for fmt in ("TIFF", "WEBP", "JPEG2000", "PNG", "JPEG"):
        files[fmt] = tmp_path / f"{fmt}.img"
        files[fmt].write_bytes(_encoded(fmt))
    names = list(files)
    if order == "allowed-first":
        names = names[len(_REFUSED) :] + names[: len(_REFUSED)]
    elif order == "png-first":  # the old bug: after one PNG, Pillow's preinit list hid TIFF/WEBP/JP2
        names = ["PNG", *[n for n in names if n != "PNG"]]
    done = subprocess.run(
        [sys.executable, "-c", _FRESH, *map(str, (files[n] for n in names))],
        capture_output=True,
        text=True,
        timeout=120,
        env={**os.environ, "PYTHONPATH": str(ROOT)},
    )
    assert done.returncode == 0, done.stderr[-2000:]
    got = {}
    for name, outcome in json.loads(done.stdout):
        got.setdefault(name.split(".")[0], []).append(outcome)
    for name in _REFUSED:
        assert got[name] == ["ImageDecodeError", "DocumentError"], name
    for fmt in ("TIFF", "WEBP", "JPEG2000", "PNG", "JPEG"):
        assert got[fmt] == [[8, 6], [8, 6]], fmt


def test_eps_never_reaches_ghostscript(monkeypatch) -> None:
    from PIL import EpsImagePlugin

    def boom(*args, **kwargs):  # pragma: no cover - reaching it is the failure
        raise AssertionError("the EPS decoder ran")

    monkeypatch.setattr(EpsImagePlugin, "Ghostscript", boom)
    monkeypatch.setattr(EpsImagePlugin.EpsImageFile, "_open", boom)
    with pytest.raises(ImageDecodeError, match="allowed format"):
        load_image(_REFUSED["EPS"])
    with pytest.raises(DocumentError, match="allowed format"):
        render_pages(_REFUSED["EPS"])
    with pytest.raises(ImageDecodeError):
        open_image(io.BytesIO(_REFUSED["EPS"]), policy=MediaPolicy())


# ------------------------------------------------------------------------------------------------ multi-frame


def test_each_tiff_frame_is_checked_and_an_oversized_one_fails_alone() -> None:
    frames = [Image.new("L", (50, 40), 10), Image.new("L", (400, 300), 20), Image.new("L", (60, 30), 30)]
    buf = io.BytesIO()
    frames[0].save(buf, "TIFF", save_all=True, append_images=frames[1:])
    policy = MediaPolicy(max_pixels=10_000)
    pages = list(render_pages(buf.getvalue(), policy=policy))
    assert [(p.number, p.ok) for p in pages] == [(1, True), (2, False), (3, True)]
    assert pages[1].error_type == "ImageTooLargeError" and "400x300" in pages[1].error
    assert [p.size_px for p in pages if p.ok] == [(50, 40), (60, 30)]
    assert pages[2].image.getpixel((0, 0)) == (30, 30, 30)
