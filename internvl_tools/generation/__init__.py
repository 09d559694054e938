"""Generation: options, the decoding loop, stop strings, streams and grammar-constrained (JSON-schema) output."""

from internvl_tools.generation import options, decoding, structured
from internvl_tools.generation.options import *  # noqa: F403
from internvl_tools.generation.decoding import *  # noqa: F403
from internvl_tools.generation.structured import *  # noqa: F403

__all__ = [*options.__all__, *decoding.__all__, *structured.__all__]
