"""The values of grounding (pydantic v2): boxes in pixels, the objects they belong to and the parser's warnings.

This is the bottom of :mod:`internvl_tools.grounding`: it imports nothing of the subpackage, and everything else
(the prompts, the parser, the records, the drawing and :class:`~internvl_tools.grounding.result.GroundingResult`)
builds on it. The values are safe to send as JSON tool artifacts and API payloads.

Grounding conventions (see ``docs/internvl_reference.md`` §4):

* Pixel boxes are ``(x1, y1, x2, y2)`` floats in the *original* image, ``x`` to the right and ``y`` down, with
  ``x1 <= x2`` and ``y1 <= y2`` (corners given in the wrong order are swapped on construction).
* InternVL text uses integers on a 0–1000 scale: ``round(x / W * 1000)``; the way back is ``v / 1000 * W``.

>>> box = BoundingBox.from_normalized([243, 469, 558, 746], (427, 640))
>>> [round(v, 3) for v in box.xyxy]
[103.761, 300.16, 238.266, 477.44]
>>> box.to_normalized((427, 640))
(243, 469, 558, 746)
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, FiniteFloat, model_validator

from internvl_tools.errors import ConfigError

__all__ = [
    "UNLABELED",
    "BoundingBox",
    "CoordSystem",
    "GroundedObject",
    "GroundingWarning",
    "RegionDescription",
    "WarningCode",
]

# ======================================================================================================
# Grounding
# ======================================================================================================

#: How the numbers inside a ``<box>`` are read: InternVL's 0–1000 scale (default), 0–1 fractions
#: (InternVL-Chat-V1-2 and LLaVA-style data) or pixels of the original image.
CoordSystem = Literal["norm1000", "norm1", "pixel"]

#: Every problem the grounding parser reports. Codes are stable; messages are for people.
WarningCode = Literal[
    "ref_without_box",  # <ref>x</ref> with no box list after it (object kept with zero boxes)
    "box_without_list",  # <box> tag with no bracketed list after it
    "empty_box",  # [] with no numbers
    "wrong_count",  # a list with other than 4 numbers (dropped)
    "stray_numbers",  # numbers next to nested lists, e.g. the 245 in [245, [1, 2, 3, 4]] (ignored)
    "runaway_number",  # a number with too many digits or far outside the scale (box dropped)
    "non_finite",  # nan / inf (box dropped)
    "out_of_range",  # a coordinate below 0 or above the scale (clipped)
    "reversed_corners",  # x1 > x2 or y1 > y2 (swapped)
    "degenerate_box",  # zero width or height after clipping (kept)
    "truncated",  # the text ends inside a list or tag (incomplete parts dropped)
    "unclosed_bracket",  # a list closed by a tag or text instead of ']' (its complete boxes kept)
    "unclosed_tag",  # <ref> or <box> without its closing tag
    "stray_tag",  # </ref> or </box> without an opening tag (ignored)
    "too_deep",  # brackets nested deeper than the parser follows (extra levels ignored)
    "too_many_warnings",  # the warning list was cut short
]

#: Name used for boxes without a label where a name is required (COCO categories, supervision class names).
UNLABELED = "object"


def check_image_size(value: Any) -> tuple[int, int]:
    """Validate a caller-given ``(width, height)``; raises :class:`ConfigError` naming the bad value.

    Shared by the boxes, the result, the prompts and the parser so that every entry point refuses a bad size the
    same way (not in ``__all__``: a helper of the subpackage, not part of the grounding API).

    >>> check_image_size((640.0, 480))
    (640, 480)
    """
    try:
        width, height = value
        ok = all(isinstance(v, int | float) and not isinstance(v, bool) for v in (width, height))
        ok = ok and float(width).is_integer() and float(height).is_integer() and width > 0 and height > 0
    except (TypeError, ValueError):
        ok = False
    if not ok:
        raise ConfigError(
            f"image_size must be (width, height) as two positive integers in pixels of the original image, "
            f"got {value!r}; pass e.g. image.size for a PIL image"
        )
    return int(width), int(height)


class BoundingBox(BaseModel):
    """An axis-aligned box in pixels of the original image: ``(x1, y1)`` top-left, ``(x2, y2)`` bottom-right.

    Corners given in the wrong order are swapped; NaN and infinity are refused.

    >>> b = BoundingBox(x1=10, y1=20, x2=40, y2=60)
    >>> b.width, b.height, b.area, b.center, b.xywh
    (30.0, 40.0, 1200.0, (25.0, 40.0), (10.0, 20.0, 30.0, 40.0))
    >>> BoundingBox(x1=40, y1=60, x2=10, y2=20) == b
    True
    """

    model_config = ConfigDict(extra="forbid")

    x1: FiniteFloat = Field(description="Left edge in pixels of the original image.")
    y1: FiniteFloat = Field(description="Top edge in pixels of the original image.")
    x2: FiniteFloat = Field(description="Right edge in pixels of the original image (x2 >= x1).")
    y2: FiniteFloat = Field(description="Bottom edge in pixels of the original image (y2 >= y1).")

    @model_validator(mode="before")
    @classmethod
    def _order_corners(cls, data: Any) -> Any:
        if isinstance(data, Sequence) and not isinstance(data, str | bytes) and len(data) == 4:
            data = dict(zip(("x1", "y1", "x2", "y2"), data, strict=True))
        if isinstance(data, Mapping) and all(k in data for k in ("x1", "y1", "x2", "y2")):
            data = dict(data)
            try:
                if data["x1"] > data["x2"]:
                    data["x1"], data["x2"] = data["x2"], data["x1"]
                if data["y1"] > data["y2"]:
                    data["y1"], data["y2"] = data["y2"], data["y1"]
            except TypeError:
                pass  # let field validation report the bad types
        return data

    @classmethod
    def from_xyxy(cls, xyxy: Sequence[float]) -> BoundingBox:
        """Build from ``(x1, y1, x2, y2)`` pixels.

        >>> BoundingBox.from_xyxy([1, 2, 3, 4]).xyxy
        (1.0, 2.0, 3.0, 4.0)
        """
        x1, y1, x2, y2 = xyxy
        return cls(x1=x1, y1=y1, x2=x2, y2=y2)

    @classmethod
    def from_xywh(cls, xywh: Sequence[float]) -> BoundingBox:
        """Build from COCO-style ``(x, y, width, height)`` pixels.

        >>> BoundingBox.from_xywh([1, 2, 3, 4]).xyxy
        (1.0, 2.0, 4.0, 6.0)
        """
        x, y, w, h = xywh
        return cls(x1=x, y1=y, x2=x + w, y2=y + h)

    @classmethod
    def from_normalized(cls, values: Sequence[float], image_size: tuple[int, int], scale: float = 1000) -> BoundingBox:
        """Map ``(x1, y1, x2, y2)`` on a ``0..scale`` grid to pixels: ``v / scale * W`` (and ``H`` for y).

        >>> BoundingBox.from_normalized([0.5, 0.5, 1, 1], (200, 100), scale=1).xyxy
        (100.0, 50.0, 200.0, 100.0)
        """
        width, height = check_image_size(image_size)
        if not scale > 0:
            raise ConfigError(f"scale must be positive, got {scale!r}")
        x1, y1, x2, y2 = (float(v) for v in values)
        return cls(
            x1=x1 / scale * width,
            y1=y1 / scale * height,
            x2=x2 / scale * width,
            y2=y2 / scale * height,
        )

    def to_normalized(self, image_size: tuple[int, int], scale: int = 1000) -> tuple[int, int, int, int]:
        """Integers on a ``0..scale`` grid as InternVL writes them: ``round(x / W * scale)``, clamped.

        >>> BoundingBox(x1=100, y1=200, x2=300, y2=400).to_normalized((427, 640))
        (234, 312, 703, 625)
        """
        width, height = check_image_size(image_size)
        if not scale > 0:
            raise ConfigError(f"scale must be positive, got {scale!r}")

        def norm(v: float, dim: int) -> int:
            return min(max(round(v / dim * scale), 0), int(scale))

        return (norm(self.x1, width), norm(self.y1, height), norm(self.x2, width), norm(self.y2, height))

    @property
    def xyxy(self) -> tuple[float, float, float, float]:
        """``(x1, y1, x2, y2)``."""
        return (self.x1, self.y1, self.x2, self.y2)

    @property
    def xywh(self) -> tuple[float, float, float, float]:
        """COCO-style ``(x, y, width, height)``."""
        return (self.x1, self.y1, self.width, self.height)

    @property
    def width(self) -> float:
        return self.x2 - self.x1

    @property
    def height(self) -> float:
        return self.y2 - self.y1

    @property
    def area(self) -> float:
        return self.width * self.height

    @property
    def center(self) -> tuple[float, float]:
        return ((self.x1 + self.x2) / 2, (self.y1 + self.y2) / 2)

    def iou(self, other: BoundingBox) -> float:
        """Intersection over union, in ``[0, 1]``; 0 when both boxes have zero area.

        >>> BoundingBox(x1=0, y1=0, x2=2, y2=2).iou(BoundingBox(x1=1, y1=0, x2=3, y2=2))
        0.3333333333333333
        """
        iw = min(self.x2, other.x2) - max(self.x1, other.x1)
        ih = min(self.y2, other.y2) - max(self.y1, other.y1)
        inter = max(iw, 0.0) * max(ih, 0.0)
        union = self.area + other.area - inter
        if union <= 0 or inter <= 0:
            return 0.0
        return min(inter / union, 1.0)

    def clamp(self, image_size: tuple[int, int]) -> BoundingBox:
        """Return the box clipped to the image, ``[0, W] x [0, H]``.

        >>> BoundingBox(x1=-5, y1=10, x2=120, y2=50).clamp((100, 40)).xyxy
        (0.0, 10.0, 100.0, 40.0)
        """
        width, height = check_image_size(image_size)
        return BoundingBox(
            x1=min(max(self.x1, 0.0), width),
            y1=min(max(self.y1, 0.0), height),
            x2=min(max(self.x2, 0.0), width),
            y2=min(max(self.y2, 0.0), height),
        )

    def scaled(self, sx: float, sy: float | None = None) -> BoundingBox:
        """Return the box with x multiplied by ``sx`` and y by ``sy`` (default ``sx``), e.g. for a resized image."""
        sy = sx if sy is None else sy
        return BoundingBox(x1=self.x1 * sx, y1=self.y1 * sy, x2=self.x2 * sx, y2=self.y2 * sy)


class GroundingWarning(BaseModel):
    """One problem found while parsing model text: what (``code``, ``message``) and where (``start``/``end``).

    ``start`` and ``end`` are character offsets into the result's ``raw_text`` (``raw_text[start:end]`` is the
    offending part).
    """

    code: WarningCode
    message: str
    start: int = Field(ge=0, description="Offset of the problem in raw_text (characters).")
    end: int = Field(ge=0, description="End offset (exclusive) of the problem in raw_text.")

    def __str__(self) -> str:
        return f"[{self.code}] {self.message}"


class GroundedObject(BaseModel):
    """A phrase and the boxes the model gave it.

    ``label`` is the ``<ref>`` text; ``None`` for a ``<box>`` with no ``<ref>``. In the tag-stripped form
    ``phrase[[...]]`` it is the free text on the same line just before the list. An object may have zero
    boxes (a ``<ref>`` the model never boxed; the parse reports it).
    """

    model_config = ConfigDict(extra="forbid")

    label: str | None = None
    boxes: list[BoundingBox] = Field(default_factory=list)


class RegionDescription(BaseModel):
    """The model's answer about one region of an image (``InternVL.describe_region``).

    >>> RegionDescription(box=BoundingBox(x1=0, y1=0, x2=10, y2=10), text="a cat", image_size=(100, 100)).text
    'a cat'
    """

    box: BoundingBox
    text: str
    image_size: tuple[int, int]
    prompt: str | None = None
