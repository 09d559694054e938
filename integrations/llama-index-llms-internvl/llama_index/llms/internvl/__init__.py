"""LlamaIndex LLM for InternVL vision-language models: ``from llama_index.llms.internvl import InternVL``."""

from llama_index.llms.internvl.base import DEFAULT_MODEL, InternVL

__all__ = ["DEFAULT_MODEL", "InternVL"]
