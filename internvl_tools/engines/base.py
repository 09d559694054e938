"""What every InternVL backend offers, whatever runs the model (local weights or an OpenAI-compatible server).

A backend implements four primitives (``chat``, ``stream``, ``batch``, ``generate_structured``) and the media
policy; everything built from them lives here once: ``ask``, ``extract``, ``ground``, ``detect``, ``ocr_boxes``,
``describe_region`` and ``read_pdf``. The LangChain and LlamaIndex integrations accept any backend.

>>> from internvl_tools.engines.local import InternVL
>>> from internvl_tools.engines.remote import RemoteInfo
>>> issubclass(InternVL, VisionLanguageModel), isinstance(RemoteInfo(), ModelInfo)
(True, True)
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any, Protocol, runtime_checkable

from internvl_tools.errors import ConfigError, StructuredOutputError
from internvl_tools.generation.structured import json_instruction, json_schema_of, validate_output
from internvl_tools.messages import user_message
from internvl_tools.results import ChatResult

if TYPE_CHECKING:
    from internvl_tools.documents.pipeline import PageStream
    from internvl_tools.generation.stream import TextStream
    from internvl_tools.grounding.result import GroundingResult
    from internvl_tools.grounding.types import RegionDescription

__all__ = ["ModelInfo", "VisionLanguageModel"]


@runtime_checkable
class ModelInfo(Protocol):
    """What the pipelines read about a backend's checkpoint (``read_pdf`` sizes pages from it): a
    :class:`~internvl_tools.CheckpointInfo` for local weights, a :class:`~internvl_tools.RemoteInfo` for a server.
    ``context_length`` and ``tokens_per_tile`` are ``None`` when a server does not report them."""

    @property
    def image_size(self) -> int: ...

    @property
    def max_dynamic_patch(self) -> int: ...

    @property
    def dynamic_image_size(self) -> bool: ...

    @property
    def use_thumbnail(self) -> bool: ...

    @property
    def template(self) -> str | None: ...

    @property
    def context_length(self) -> int | None: ...

    @property
    def tokens_per_tile(self) -> int | None: ...


class VisionLanguageModel(ABC):
    """The public API shared by :class:`~internvl_tools.InternVL` and the server backend."""

    model_name: str
    media_policy: Any = None

    @abstractmethod
    def chat(self, messages: Any, **generation: Any) -> ChatResult:
        """Answer a conversation (see :meth:`internvl_tools.InternVL.chat`)."""

    @abstractmethod
    def stream(self, messages: Any, **generation: Any) -> TextStream:
        """Yield text deltas whose concatenation equals ``chat(...).text``.

        The :class:`~internvl_tools.generation.TextStream` holds the ``ChatResult`` (usage and finish reason) in
        ``result`` once it is exhausted.
        """

    @abstractmethod
    def batch(self, conversations: Sequence[Any], *, batch_size: int = 8, **generation: Any) -> list[ChatResult]:
        """Answer several conversations; bad items come back with ``finish_reason="error"``."""

    @abstractmethod
    def generate_structured(self, messages: Any, json_schema: dict, **generation: Any) -> ChatResult:
        """Like :meth:`chat`, with the answer constrained to ``json_schema``."""

    @property
    @abstractmethod
    def info(self) -> ModelInfo:
        """Facts the pipelines need: ``image_size``, ``max_dynamic_patch``, ``dynamic_image_size``, ``template``."""

    def ask(self, images: Any, question: str, **generation: Any) -> str:
        """One question about zero, one or several images; returns the answer text.

        >>> from internvl_tools import InternVL
        >>> isinstance(InternVL("tiny").ask(None, "Hi", max_new_tokens=2), str)
        True
        """
        if not isinstance(question, str) or not question.strip():
            raise ConfigError("ask() needs a non-empty question string.")
        return self.chat([user_message(question, images)], **generation).text

    def extract(
        self,
        images: Any,
        prompt: str,
        schema: Any,
        *,
        schema_in_prompt: bool = True,
        **generation: Any,
    ) -> Any:
        """Answer with JSON constrained to ``schema`` (pydantic model, TypedDict or JSON-schema dict) via xgrammar.

        Returns a validated instance for model schemas, a dict for dict schemas. Valid JSON is guaranteed whenever
        the schema can be completed within ``max_new_tokens`` (default 1024 here).
        """
        generation.setdefault("max_new_tokens", 1024)
        json_schema = json_schema_of(schema)
        question = prompt
        if schema_in_prompt:
            question = f"{prompt}\n{json_instruction(json_schema)}"
        messages = [user_message(question, images)]
        result = self.generate_structured(messages, json_schema, **generation)
        if result.finish_reason != "stop":
            raise StructuredOutputError(
                f"The JSON answer did not complete within max_new_tokens={generation['max_new_tokens']}; raise it. "
                f"Partial answer: {result.text[:200]!r}"
            )
        return validate_output(result.text, schema)

    # ------------------------------------------------------------------------------------------------ grounding

    def _grounded_answer(
        self, image: Any, prompt: str, generation: dict[str, Any], default_tokens: int
    ) -> GroundingResult:
        from internvl_tools.grounding.parser import parse_grounding
        from internvl_tools.media.images import load_image

        pil = load_image(image, policy=self.media_policy)
        generation.setdefault("max_new_tokens", default_tokens)
        result = self.chat([user_message(prompt, pil)], **generation)
        # Boxes are on the 0-1000 scale of the whole original image, whatever the tiling: map to its pixels.
        return parse_grounding(result.text, pil.size).with_image(pil)

    def ground(self, image: Any, phrase: str, **generation: Any) -> GroundingResult:
        """Find ``phrase`` in the image with the official referring-expression prompt.

        Returns a :class:`~internvl_tools.grounding.GroundingResult` with boxes in pixels of the original image
        (``max_new_tokens`` defaults to 100, as the official RefCOCO evaluation).
        """
        from internvl_tools.grounding.prompts import grounding_prompt

        return self._grounded_answer(image, grounding_prompt(phrase), generation, 100)

    def detect(self, image: Any, labels: Sequence[str] | None = None, **generation: Any) -> GroundingResult:
        """Detect all objects (the official detection prompt), or only ``labels``; a ``GroundingResult``."""
        from internvl_tools.grounding.prompts import detection_prompt

        return self._grounded_answer(image, detection_prompt(labels), generation, 1024)

    def ocr_boxes(self, image: Any, *, language: str = "en", **generation: Any) -> GroundingResult:
        """Grounded OCR: text lines with their boxes, as a ``GroundingResult`` whose labels are the lines."""
        from internvl_tools.grounding.prompts import grounded_ocr_prompt

        return self._grounded_answer(image, grounded_ocr_prompt(language), generation, 1024)  # type: ignore[arg-type]

    def describe_region(
        self, image: Any, box: Any, question: str | None = None, **generation: Any
    ) -> RegionDescription:
        """Ask about one region; ``box`` is in pixels of the image and is written on the model's 0-1000 scale.

        Returns a :class:`~internvl_tools.grounding.RegionDescription` (the box, the answer, the image size).
        """
        from internvl_tools.grounding.prompts import region_prompt
        from internvl_tools.grounding.types import BoundingBox, RegionDescription
        from internvl_tools.media.images import load_image

        pil = load_image(image, policy=self.media_policy)
        bbox = box if isinstance(box, BoundingBox) else BoundingBox.from_xyxy(box)
        prompt = region_prompt(bbox, pil.size, question)
        generation.setdefault("max_new_tokens", 128)
        result = self.chat([user_message(prompt, pil)], **generation)
        return RegionDescription(box=bbox, text=result.text, image_size=pil.size, prompt=prompt)

    # ------------------------------------------------------------------------------------------------ documents

    def read_pdf(self, source: Any, **kwargs: Any) -> PageStream:
        """Run a task over the pages of a PDF (or TIFF / image): OCR by default; see
        :func:`internvl_tools.documents.read_pdf` for ``task``, ``question``, ``pages``, ``dpi``, ``batch_size``,
        ``resume_from`` and the rest. Returns a lazy ``PageStream`` of ``PageResult`` (``.summary`` at the end).
        """
        # documents/ is a surface above the engines (it drives any backend); it never imports engines/, so this
        # convenience is no cycle. Imported on use: an engine does not load the document pipeline until asked.
        from internvl_tools.documents.pipeline import read_pdf

        return read_pdf(self, source, **kwargs)
