"""A grounding result: the objects found in one image, with the conveniences that draw and export it.

:class:`GroundingResult` sits above the rest of the subpackage on purpose: its methods (:meth:`~GroundingResult.draw`,
:meth:`~GroundingResult.to_text`, :meth:`~GroundingResult.to_internvl_jsonl_record`, ...) are thin calls into
:mod:`~internvl_tools.grounding.drawing` and :mod:`~internvl_tools.grounding.records`, which only read a result's
attributes and so need this module for type checking only. Imports point one way: ``types`` <- ``prompts`` <-
``records``/``drawing`` <- ``result`` <- ``parser``.

>>> from internvl_tools.grounding.types import BoundingBox, GroundedObject
>>> r = GroundingResult(objects=[GroundedObject(label="cat", boxes=[BoundingBox(x1=0, y1=0, x2=100, y2=50)])],
...                     image_size=(200, 100))
>>> r.labels, r.to_text()
(['cat'], '<ref>cat</ref><box>[[0, 0, 500, 500]]</box>')
"""

from __future__ import annotations

import io
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

from pydantic import BaseModel, ConfigDict, Field, PrivateAttr, field_validator

from internvl_tools.errors import ConfigError, DependencyMissingError
from internvl_tools.grounding.drawing import draw
from internvl_tools.grounding.records import format_grounding, to_internvl_record, to_swift_record
from internvl_tools.grounding.types import (
    UNLABELED,
    BoundingBox,
    CoordSystem,
    GroundedObject,
    GroundingWarning,
    check_image_size,
)

if TYPE_CHECKING:  # pragma: no cover - for type checkers only
    import numpy as np
    from PIL import Image

__all__ = ["GroundingResult"]


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
        return check_image_size(value)

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
        return to_internvl_record(self, image_path, question, record_id=record_id)

    def to_swift_record(self, image_path: str | Path, question: str | None = None) -> dict[str, Any]:
        """One line of ms-swift grounding data (``objects`` form), see :func:`grounding.to_swift_record`."""
        return to_swift_record(self, image_path, question)
