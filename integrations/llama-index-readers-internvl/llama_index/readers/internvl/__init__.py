"""LlamaIndex reader for scanned PDFs and images read by InternVL: ``from llama_index.readers.internvl import
InternVLPDFReader``."""

from llama_index.readers.internvl.base import (
    CHUNK_METADATA_KEYS,
    DEFAULT_MODEL,
    EXTRA_METADATA_KEYS,
    SUPPORTED_EXTENSIONS,
    InternVLPDFReader,
)

__all__ = ["CHUNK_METADATA_KEYS", "DEFAULT_MODEL", "EXTRA_METADATA_KEYS", "SUPPORTED_EXTENSIONS", "InternVLPDFReader"]
