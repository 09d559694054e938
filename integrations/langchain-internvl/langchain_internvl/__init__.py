"""LangChain integration for InternVL vision-language models (built on ``internvl-tools``).

>>> import langchain_internvl
>>> sorted(langchain_internvl.__all__)[:2]
['ChatInternVL', 'InternVLGroundingTool']
"""

from importlib import metadata

from langchain_internvl._messages import UnsupportedContentError
from langchain_internvl.chat_models import ChatInternVL
from langchain_internvl.document_loaders import InternVLPDFLoader
from langchain_internvl.tools import InternVLGroundingTool, InternVLOCRTool, InternVLVisionTool

try:
    __version__ = metadata.version(__package__ or "langchain-internvl")
except metadata.PackageNotFoundError:  # running from a source tree without an install
    __version__ = "0.1.0"

__all__ = [
    "ChatInternVL",
    "InternVLGroundingTool",
    "InternVLOCRTool",
    "InternVLPDFLoader",
    "InternVLVisionTool",
    "UnsupportedContentError",
    "__version__",
]
