"""What every InternVL backend offers, whatever runs the model (local weights or an OpenAI-compatible server).

A backend implements four primitives (``chat``, ``stream``, ``batch``, ``generate_structured``) and the media
policy; everything built from them lives here once: ``ask``, ``extract``, ``ground``, ``detect``, ``ocr_boxes``,
``describe_region`` and ``read_pdf``. The LangChain and LlamaIndex integrations accept any backend.

>>> issubclass(__import__("internvl_tools.engines.local").engine.InternVL, VisionLanguageModel)
True
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Iterator, Sequence
from typing import Any

from internvl_tools.errors import ConfigError, StructuredOutputError
from internvl_tools.messages import user_message
from internvl_tools.results import ChatResult

__all__ = ["VisionLanguageModel"]


class VisionLanguageModel(ABC):
    """The public API shared by :class:`~internvl_tools.InternVL` and the server backend."""

    model_name: str
    media_policy: Any = None

    @abstractmethod
    def chat(self, messages: Any, **generation: Any) -> ChatResult:
        """Answer a conversation (see :meth:`internvl_tools.InternVL.chat`)."""

    @abstractmethod
    def stream(self, messages: Any, **generation: Any) -> Iterator[str]:
        """Yield text deltas whose concatenation equals ``chat(...).text``.

        Backends return a :class:`~internvl_tools.generation.TextStream`, whose ``result`` (a ``ChatResult`` with
        usage and finish reason) is set once the stream is exhausted.
        """

    @abstractmethod
    def batch(self, conversations: Sequence[Any], *, batch_size: int = 8, **generation: Any) -> list[ChatResult]:
        """Answer several conversations; bad items come back with ``finish_reason="error"``."""

    @abstractmethod
    def generate_structured(self, messages: Any, json_schema: dict, **generation: Any) -> ChatResult:
        """Like :meth:`chat`, with the answer constrained to ``json_schema``."""

    @property
    @abstractmethod
    def info(self) -> Any:
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
        import json

        from internvl_tools.generation.structured import json_schema_of, validate_output

        generation.setdefault("max_new_tokens", 1024)
        json_schema = json_schema_of(schema)
        question = prompt
        if schema_in_prompt:
            question = f"{prompt}\nAnswer with a JSON object that follows this JSON schema:\n{json.dumps(json_schema)}"
        messages = [user_message(question, images)]
        result = self.generate_structured(messages, json_schema, **generation)
        if result.finish_reason != "stop":
            raise StructuredOutputError(
                f"The JSON answer did not complete within max_new_tokens={generation['max_new_tokens']}; raise it. "
                f"Partial answer: {result.text[:200]!r}"
            )
        return validate_output(result.text, schema)

    # ------------------------------------------------------------------------------------------------ grounding

    def _grounded_answer(self, image: Any, prompt: str, generation: dict[str, Any], default_tokens: int) -> Any:
        from internvl_tools.grounding.parser import parse_grounding
        from internvl_tools.media import load_image

        pil = load_image(image, policy=self.media_policy)
        generation.setdefault("max_new_tokens", default_tokens)
        result = self.chat([user_message(prompt, pil)], **generation)
        # Boxes are on the 0-1000 scale of the whole original image, whatever the tiling: map to its pixels.
        return parse_grounding(result.text, pil.size).with_image(pil)

    def ground(self, image: Any, phrase: str, **generation: Any) -> Any:
        """Find ``phrase`` in the image with the official referring-expression prompt.

        Returns a :class:`~internvl_tools.schemas.GroundingResult` with boxes in pixels of the original image
        (``max_new_tokens`` defaults to 100, as the official RefCOCO evaluation).
        """
        from internvl_tools.grounding.prompts import grounding_prompt

        return self._grounded_answer(image, grounding_prompt(phrase), generation, 100)

    def detect(self, image: Any, labels: Sequence[str] | None = None, **generation: Any) -> Any:
        """Detect all objects (the official detection prompt), or only ``labels``; a ``GroundingResult``."""
        from internvl_tools.grounding.prompts import detection_prompt

        return self._grounded_answer(image, detection_prompt(labels), generation, 1024)

    def ocr_boxes(self, image: Any, *, language: str = "en", **generation: Any) -> Any:
        """Grounded OCR: text lines with their boxes, as a ``GroundingResult`` whose labels are the lines."""
        from internvl_tools.grounding.prompts import grounded_ocr_prompt

        return self._grounded_answer(image, grounded_ocr_prompt(language), generation, 1024)  # type: ignore[arg-type]

    def describe_region(self, image: Any, box: Any, question: str | None = None, **generation: Any) -> Any:
        """Ask about one region; ``box`` is in pixels of the image and is written on the model's 0-1000 scale.

        Returns a :class:`~internvl_tools.schemas.RegionDescription` (the box, the answer, the image size).
        """
        from internvl_tools.grounding.prompts import region_prompt
        from internvl_tools.media import load_image
        from internvl_tools.grounding.types import BoundingBox, RegionDescription

        pil = load_image(image, policy=self.media_policy)
        bbox = box if isinstance(box, BoundingBox) else BoundingBox.from_xyxy(box)
        prompt = region_prompt(bbox, pil.size, question)
        generation.setdefault("max_new_tokens", 128)
        result = self.chat([user_message(prompt, pil)], **generation)
        return RegionDescription(box=bbox, text=result.text, image_size=pil.size, prompt=prompt)

    # ------------------------------------------------------------------------------------------------ documents

    def read_pdf(self, source: Any, **kwargs: Any) -> Any:
        """Run a task over the pages of a PDF (or TIFF / image): OCR by default; see
        :func:`internvl_tools.documents.read_pdf` for ``task``, ``question``, ``pages``, ``dpi``, ``batch_size``,
        ``resume_from`` and the rest. Returns a lazy ``PageStream`` of ``PageResult`` (``.summary`` at the end).
        """
        from internvl_tools.documents.pipeline import read_pdf

        return read_pdf(self, source, **kwargs)
