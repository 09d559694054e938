"""A small invoice page drawn with Pillow: the sample document the demo and the README use.

The shipped PNG (``internvl_tools/samples/invoice_page.png``) is this function's output; regenerate it with
``python -m internvl_tools.demo.sample``.

>>> make_sample_page().size
(1240, 1754)
"""

from __future__ import annotations

from pathlib import Path

from PIL import Image, ImageDraw, ImageFont

SAMPLE_PAGE = Path(__file__).resolve().parent.parent / "samples" / "invoice_page.png"
SAMPLE_QUESTION = "What is the total amount due on this invoice?"

_ITEMS = [
    ("Printer paper, A4 (5 reams)", "2", "24.50", "49.00"),
    ("Toner cartridge, black", "1", "89.90", "89.90"),
    ("Desk lamp, LED", "3", "32.00", "96.00"),
    ("Shipping", "1", "12.00", "12.00"),
]


def make_sample_page(width: int = 1240, height: int = 1754) -> Image.Image:
    """Draw the invoice page (A4 at 150 DPI by default): a header, an item table and a total."""
    page = Image.new("RGB", (width, height), "white")
    draw = ImageDraw.Draw(page)
    big = ImageFont.load_default(size=56)
    mid = ImageFont.load_default(size=30)
    small = ImageFont.load_default(size=26)
    draw.text((90, 90), "INVOICE", font=big, fill=(20, 20, 20))
    draw.text((90, 180), "Invoice no. 2024-0117", font=mid, fill=(40, 40, 40))
    draw.text((90, 225), "Date: 2024-03-14", font=mid, fill=(40, 40, 40))
    draw.text((760, 90), "Northwind Supplies Ltd.", font=mid, fill=(40, 40, 40))
    draw.text((760, 135), "12 Harbour Road, Leeds", font=small, fill=(60, 60, 60))
    draw.text((90, 330), "Bill to: Contoso Design Studio", font=mid, fill=(40, 40, 40))
    top, row_h = 430, 64
    columns = [90, 720, 840, 1010]
    draw.rectangle((80, top, width - 80, top + row_h), fill=(225, 232, 240))
    for x, title in zip(columns, ["Item", "Qty", "Price", "Amount"], strict=True):
        draw.text((x, top + 16), title, font=mid, fill=(20, 20, 20))
    for i, row in enumerate(_ITEMS, start=1):
        y = top + i * row_h
        draw.line((80, y, width - 80, y), fill=(180, 180, 180), width=2)
        for x, cell in zip(columns, row, strict=True):
            draw.text((x, y + 16), cell, font=small, fill=(30, 30, 30))
    y = top + (len(_ITEMS) + 1) * row_h
    draw.line((80, y, width - 80, y), fill=(120, 120, 120), width=3)
    draw.text((760, y + 30), "Total due:", font=mid, fill=(10, 10, 10))
    draw.text((1010, y + 30), "246.90", font=mid, fill=(10, 10, 10))
    draw.text((90, height - 160), "Payment within 30 days. Thank you for your business.", font=small, fill=(80, 80, 80))
    return page


if __name__ == "__main__":  # pragma: no cover
    SAMPLE_PAGE.parent.mkdir(parents=True, exist_ok=True)
    make_sample_page().save(SAMPLE_PAGE, optimize=True)
    print(SAMPLE_PAGE)
