"""LlamaIndex tools for InternVL vision-language models: ``from llama_index.tools.internvl import InternVLToolSpec``."""

from llama_index.tools.internvl.base import InternVLToolSpec

__all__ = ["InternVLToolSpec"]
