"""Typed results of internvl-tools (pydantic v2), safe to send as JSON tool artifacts and API payloads.

The file is organised by feature, one section each. Only plain data and cheap methods live here; parsing,
drawing and file export live in the feature modules (``internvl_tools.grounding`` for boxes) and are imported
lazily by the convenience methods below, so importing this module costs only pydantic.

Grounding conventions (see ``research/internvl_reference.md`` §4):

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

import io
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, FiniteFloat, PrivateAttr, field_validator, model_validator

from internvl_tools.errors import ConfigError, DependencyMissingError

if TYPE_CHECKING:  # pragma: no cover - for type checkers only
    import numpy as np
    from PIL import Image

__all__ = [
    "UNLABELED",
    "BoundingBox",
    "CoordSystem",
    "GroundedObject",
    "GroundingResult",
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


def _check_image_size(value: Any) -> tuple[int, int]:
    """Validate a caller-given ``(width, height)``; raises :class:`ConfigError` naming the bad value."""
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
    def from_normalized(
        cls, values: Sequence[float], image_size: tuple[int, int], scale: float = 1000
    ) -> BoundingBox:
        """Map ``(x1, y1, x2, y2)`` on a ``0..scale`` grid to pixels: ``v / scale * W`` (and ``H`` for y).

        >>> BoundingBox.from_normalized([0.5, 0.5, 1, 1], (200, 100), scale=1).xyxy
        (100.0, 50.0, 200.0, 100.0)
        """
        width, height = _check_image_size(image_size)
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
        width, height = _check_image_size(image_size)
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
        width, height = _check_image_size(image_size)
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

    ``start`` and ``end`` are character offsets into :attr:`GroundingResult.raw_text` (``raw_text[start:end]``
    is the offending part).
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


class GroundingResult(BaseModel):
    """Objects found in one image, in the order the model named them, plus the text and the parse's warnings.

    A label the model repeats gives separate objects (one per ``<ref>``), kept in order; :meth:`by_label`
    merges them. In Jupyter the result shows itself drawn on its image once one is attached
    (:meth:`with_image`); the image is never serialised.

    >>> from internvl_tools.grounding import parse_grounding
    >>> r = parse_grounding("<ref>cat</ref><box>[[0, 0, 500, 500]]</box>", (200, 100))
    >>> r.labels, [b.xyxy for b in r.boxes]
    (['cat'], [(0.0, 0.0, 100.0, 50.0)])
    """

    model_config = ConfigDict(extra="forbid")

    objects: list[GroundedObject] = Field(default_factory=list)
    image_size: tuple[int, int] = Field(description="(width, height) of the original image in pixels.")
    raw_text: str = Field(default="", description="The model text the result was parsed from.")
    coords: CoordSystem = Field(default="norm1000", description="How the numbers in raw_text were read.")
    warnings: list[GroundingWarning] = Field(default_factory=list)

    _image: Any = PrivateAttr(default=None)

    @field_validator("image_size", mode="before")
    @classmethod
    def _valid_size(cls, value: Any) -> tuple[int, int]:
        return _check_image_size(value)

    # --- shortcuts --------------------------------------------------------------------------------------

    @property
    def boxes(self) -> list[BoundingBox]:
        """All boxes, flattened in order."""
        return [box for obj in self.objects for box in obj.boxes]

    @property
    def labels(self) -> list[str | None]:
        """The label of each box in :attr:`boxes` (same length and order)."""
        return [obj.label for obj in self.objects for _ in obj.boxes]

    def by_label(self) -> dict[str | None, list[BoundingBox]]:
        """Boxes grouped by label, labels in order of first appearance (repeated refs merged).

        >>> from internvl_tools.grounding import parse_grounding
        >>> text = "<ref>a</ref><box>[[0,0,1,1]]</box><ref>b</ref><box>[[2,2,3,3]]</box><ref>a</ref><box>[[4,4,5,5]]"
        >>> {k: len(v) for k, v in parse_grounding(text, (1000, 1000)).by_label().items()}
        {'a': 2, 'b': 1}
        """
        groups: dict[str | None, list[BoundingBox]] = {}
        for obj in self.objects:
            groups.setdefault(obj.label, []).extend(obj.boxes)
        return groups

    # --- image ------------------------------------------------------------------------------------------

    def with_image(self, image: Image.Image) -> GroundingResult:
        """Attach the image the boxes refer to (kept private, never serialised); returns ``self``."""
        self._image = image
        return self

    @property
    def image(self) -> Image.Image | None:
        """The attached image, if any."""
        return self._image

    def draw(self, image: Image.Image | None = None, **kwargs: Any) -> Image.Image:
        """Draw the boxes on ``image`` (default: the attached image); see :func:`internvl_tools.grounding.draw`."""
        from internvl_tools.grounding.drawing import draw

        target = image if image is not None else self._image
        if target is None:
            raise ConfigError("no image to draw on: pass one, or attach it first with result.with_image(image)")
        return draw(target, self, **kwargs)

    def _repr_png_(self) -> bytes | None:
        # Jupyter calls this; returning None falls back to the text repr when no image is attached.
        if self._image is None:
            return None
        buffer = io.BytesIO()
        self.draw().save(buffer, format="PNG")
        return buffer.getvalue()

    # --- exports ----------------------------------------------------------------------------------------

    def to_text(self) -> str:
        """The result in InternVL's own syntax, one ``<ref>..</ref><box>[[..]]</box>`` line per object.

        >>> GroundingResult(objects=[GroundedObject(label="cat", boxes=[BoundingBox(x1=0, y1=0, x2=100, y2=50)])],
        ...                 image_size=(200, 100)).to_text()
        '<ref>cat</ref><box>[[0, 0, 500, 500]]</box>'
        """
        from internvl_tools.grounding.records import format_grounding

        return format_grounding(self)

    def to_coco(
        self, image_id: int = 0, *, categories: Sequence[str] | None = None, first_annotation_id: int = 1
    ) -> dict[str, list[dict[str, Any]]]:
        """COCO-style ``{"images", "annotations", "categories"}`` for this one image.

        ``bbox`` is ``[x, y, width, height]`` in pixels. Category ids count from 1 in the order of
        ``categories`` if given (other labels are appended), else in order of first appearance; boxes
        without a label use the category ``"object"``.

        >>> r = GroundingResult(objects=[GroundedObject(label="cat", boxes=[BoundingBox(x1=1, y1=2, x2=4, y2=6)])],
        ...                     image_size=(10, 10))
        >>> r.to_coco()["annotations"][0]["bbox"], r.to_coco()["categories"]
        ([1.0, 2.0, 3.0, 4.0], [{'id': 1, 'name': 'cat'}])
        """
        names: list[str] = list(dict.fromkeys(categories or ()))
        for label in self.labels:
            name = label if label is not None else UNLABELED
            if name not in names:
                names.append(name)
        ids = {name: i + 1 for i, name in enumerate(names)}
        width, height = self.image_size
        annotations = []
        for offset, (label, box) in enumerate(zip(self.labels, self.boxes, strict=True)):
            annotations.append(
                {
                    "id": first_annotation_id + offset,
                    "image_id": image_id,
                    "category_id": ids[label if label is not None else UNLABELED],
                    "bbox": list(box.xywh),
                    "area": box.area,
                    "iscrowd": 0,
                }
            )
        return {
            "images": [{"id": image_id, "width": width, "height": height}],
            "annotations": annotations,
            "categories": [{"id": ids[name], "name": name} for name in names],
        }

    def to_supervision(self) -> tuple[np.ndarray, list[str]]:
        """``(xyxy, class_names)``: an ``(N, 4)`` float32 array and one name per box (``"object"`` if unlabeled).

        Feed them to ``supervision.Detections(xyxy=..., data={"class_name": ...})``, or use
        :meth:`to_detections`. Needs numpy.
        """
        try:
            import numpy as np
        except ImportError as exc:  # pragma: no cover - numpy is a core dependency
            raise DependencyMissingError("to_supervision() needs numpy: pip install numpy") from exc
        xyxy = np.array([box.xyxy for box in self.boxes], dtype=np.float32).reshape(-1, 4)
        return xyxy, [label if label is not None else UNLABELED for label in self.labels]

    def to_detections(self) -> Any:
        """A ``supervision.Detections`` (class ids in order of first appearance, names in ``data["class_name"]``).

        Needs the optional ``supervision`` package, which internvl-tools does not depend on.
        """
        try:
            import numpy as np
            import supervision as sv
        except ImportError as exc:
            raise DependencyMissingError(
                "to_detections() needs the 'supervision' package: pip install supervision "
                "(or use to_supervision() for plain arrays)"
            ) from exc
        xyxy, names = self.to_supervision()
        ids = {name: i for i, name in enumerate(dict.fromkeys(names))}
        return sv.Detections(
            xyxy=xyxy,
            class_id=np.array([ids[n] for n in names], dtype=int),
            data={"class_name": np.array(names, dtype=str)},
        )

    def to_internvl_jsonl_record(
        self, image_path: str | Path, question: str | None = None, *, record_id: int = 0
    ) -> dict[str, Any]:
        """One line of InternVL fine-tuning data (``chat_data_format``), see :func:`grounding.to_internvl_record`."""
        from internvl_tools.grounding.records import to_internvl_record

        return to_internvl_record(self, image_path, question, record_id=record_id)

    def to_swift_record(self, image_path: str | Path, question: str | None = None) -> dict[str, Any]:
        """One line of ms-swift grounding data (``objects`` form), see :func:`grounding.to_swift_record`."""
        from internvl_tools.grounding.records import to_swift_record

        return to_swift_record(self, image_path, question)


class RegionDescription(BaseModel):
    """The model's answer about one region of an image (``InternVL.describe_region``).

    >>> RegionDescription(box=BoundingBox(x1=0, y1=0, x2=10, y2=10), text="a cat", image_size=(100, 100)).text
    'a cat'
    """

    box: BoundingBox
    text: str
    image_size: tuple[int, int]
    prompt: str | None = None
