"""internvl-tools: InternVL vision-language models for LangChain, LlamaIndex, notebooks and the command line.

Importing the package is cheap: torch, transformers, pypdfium2 and decord load only when a feature needs them.

>>> import internvl_tools
>>> internvl_tools.select_grid(800, 600)
(4, 3)
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

from internvl_tools.errors import (
    ConfigError,
    ContextLengthError,
    DependencyMissingError,
    DocumentError,
    FetchError,
    GenerationError,
    ImageDecodeError,
    ImageTooLargeError,
    ImageTooSmallError,
    InternVLError,
    MediaError,
    MediaNotFoundError,
    MediaPolicyError,
    ModelLoadError,
    PageRenderError,
    PageSelectionError,
    PasswordError,
    PathNotAllowedError,
    RemoteFetchDisabledError,
    ServerAuthError,
    ServerConnectionError,
    ServerError,
    ServerRequestError,
    ServerTimeoutError,
    StructuredOutputError,
    TemplateError,
    UnsupportedSourceError,
    URLBlockedError,
    VideoError,
)

__version__ = "0.1.0"

# Public name -> module that defines it. Resolved on first attribute access (PEP 562) so that
# ``import internvl_tools`` never pulls in torch or transformers.
_LAZY: dict[str, str] = {
    # media
    "MediaPolicy": "internvl_tools.media",
    "load_image": "internvl_tools.media",
    "load_images": "internvl_tools.media",
    "encode_image": "internvl_tools.media",
    "to_data_uri": "internvl_tools.media",
    # tiling
    "select_grid": "internvl_tools.tiling",
    "tile_image": "internvl_tools.tiling",
    "tile_images": "internvl_tools.tiling",
    "TiledImage": "internvl_tools.tiling",
    "split_tile_budget": "internvl_tools.tiling",
    # video
    "sample_frame_indices": "internvl_tools.video",
    "load_video": "internvl_tools.video",
    "VideoFrames": "internvl_tools.video",
    # prompts
    "Template": "internvl_tools.prompts",
    "get_template": "internvl_tools.prompts",
    "build_prompt": "internvl_tools.prompts",
    "detect_template": "internvl_tools.prompts",
    "detect_family": "internvl_tools.prompts",
    "FamilyInfo": "internvl_tools.prompts",
    "TEMPLATES": "internvl_tools.prompts",
    "build_chat_prompt": "internvl_tools.prompts",
    "expand_image_placeholders": "internvl_tools.prompts",
    "ChatPrompt": "internvl_tools.prompts",
    "PromptTurn": "internvl_tools.prompts",
    "ImageSlot": "internvl_tools.prompts",
    "VideoSlot": "internvl_tools.prompts",
    # engine and results
    "InternVL": "internvl_tools.engines.local",
    "VisionLanguageModel": "internvl_tools.engines.base",
    "GenerationOptions": "internvl_tools.generation",
    "ChatResult": "internvl_tools.results",
    "Usage": "internvl_tools.results",
    "Message": "internvl_tools.messages",
    "TextPart": "internvl_tools.messages",
    "ImagePart": "internvl_tools.messages",
    "VideoPart": "internvl_tools.messages",
    "normalize_messages": "internvl_tools.messages",
    "balanced_device_map": "internvl_tools.checkpoints.device",
    "json_schema_of": "internvl_tools.generation.structured",
    "validate_output": "internvl_tools.generation.structured",
    # grounding
    "BoundingBox": "internvl_tools.grounding.types",
    "GroundedObject": "internvl_tools.grounding.types",
    "GroundingResult": "internvl_tools.grounding.types",
    "GroundingWarning": "internvl_tools.grounding.types",
    "RegionDescription": "internvl_tools.grounding.types",
    "parse_grounding": "internvl_tools.grounding",
    "draw_grounding": "internvl_tools.grounding",
    "grounding_prompt": "internvl_tools.grounding",
    "detection_prompt": "internvl_tools.grounding",
    "region_prompt": "internvl_tools.grounding",
    "grounded_ocr_prompt": "internvl_tools.grounding",
    # documents
    "read_pdf": "internvl_tools.documents",
    "render_pages": "internvl_tools.documents",
    "PageResult": "internvl_tools.documents",
    "PageStream": "internvl_tools.documents",
    "DocumentSummary": "internvl_tools.documents",
    "RenderedPage": "internvl_tools.documents",
    "load_results": "internvl_tools.documents",
    "write_markdown": "internvl_tools.documents",
    "parse_pages": "internvl_tools.documents",
    # servers
    "RemoteInternVL": "internvl_tools.engines.remote",
    "OpenAIBackend": "internvl_tools.engines.remote",
    "RemoteInfo": "internvl_tools.engines.remote",
    "TextStream": "internvl_tools.generation",
    # checkpoints
    "CheckpointInfo": "internvl_tools.checkpoints",
    "read_checkpoint_info": "internvl_tools.checkpoints",
    "load_model": "internvl_tools.checkpoints",
    # testing
    "make_tiny_checkpoint": "internvl_tools.testing",
    "tiny_checkpoint": "internvl_tools.testing",
}

__all__ = [
    "__version__",
    "ConfigError",
    "ContextLengthError",
    "DependencyMissingError",
    "DocumentError",
    "FetchError",
    "GenerationError",
    "ImageDecodeError",
    "ImageTooLargeError",
    "ImageTooSmallError",
    "InternVLError",
    "MediaError",
    "MediaNotFoundError",
    "MediaPolicyError",
    "ModelLoadError",
    "PageRenderError",
    "PageSelectionError",
    "PasswordError",
    "PathNotAllowedError",
    "RemoteFetchDisabledError",
    "ServerAuthError",
    "ServerConnectionError",
    "ServerError",
    "ServerRequestError",
    "ServerTimeoutError",
    "StructuredOutputError",
    "TemplateError",
    "UnsupportedSourceError",
    "URLBlockedError",
    "VideoError",
    *_LAZY,
]


def __getattr__(name: str) -> Any:
    module_name = _LAZY.get(name)
    if module_name is None:
        raise AttributeError(f"module 'internvl_tools' has no attribute {name!r}")
    value = getattr(importlib.import_module(module_name), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(_LAZY))


if TYPE_CHECKING:  # pragma: no cover - for type checkers and IDEs only
    from internvl_tools.engines.base import VisionLanguageModel
    from internvl_tools.checkpoints.load import CheckpointInfo, load_model, read_checkpoint_info
    from internvl_tools.checkpoints.device import balanced_device_map
    from internvl_tools.documents.models import DocumentSummary, PageResult
    from internvl_tools.documents.pipeline import PageStream, read_pdf
    from internvl_tools.documents.render import RenderedPage, render_pages
    from internvl_tools.documents.output import load_results, write_markdown
    from internvl_tools.documents.sources import parse_pages
    from internvl_tools.engines.local import InternVL
    from internvl_tools.generation.options import GenerationOptions, TextStream
    from internvl_tools.grounding.parser import detection_prompt, grounded_ocr_prompt, grounding_prompt, parse_grounding, region_prompt
    from internvl_tools.grounding.drawing import draw_grounding
    from internvl_tools.media import MediaPolicy, encode_image, load_image, load_images, to_data_uri
    from internvl_tools.messages import ImagePart, Message, TextPart, VideoPart, normalize_messages
    from internvl_tools.prompts.builder import TEMPLATES, ChatPrompt, ImageSlot, PromptTurn, Template, VideoSlot, build_chat_prompt, build_prompt, expand_image_placeholders, get_template
    from internvl_tools.checkpoints.config import FamilyInfo, detect_family, detect_template
    from internvl_tools.engines.remote import OpenAIBackend, RemoteInfo, RemoteInternVL
    from internvl_tools.results import ChatResult, Usage
    from internvl_tools.grounding.types import BoundingBox, GroundedObject, GroundingResult, GroundingWarning, RegionDescription
    from internvl_tools.testing.checkpoints import make_tiny_checkpoint, tiny_checkpoint
    from internvl_tools.tiling import TiledImage, select_grid, split_tile_budget, tile_image, tile_images
    from internvl_tools.video import VideoFrames, load_video, sample_frame_indices
