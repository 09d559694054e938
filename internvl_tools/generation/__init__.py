"""Generation: options, token text, stopping criteria, streams, the decoding loop and grammar-constrained (JSON-schema)
output, and tool calls decoded under a grammar."""

from internvl_tools.generation import decoding, options, stopping, stream, structured, text, tools
from internvl_tools.generation.decoding import *  # noqa: F403
from internvl_tools.generation.options import *  # noqa: F403
from internvl_tools.generation.stopping import *  # noqa: F403
from internvl_tools.generation.stream import *  # noqa: F403
from internvl_tools.generation.structured import *  # noqa: F403
from internvl_tools.generation.text import *  # noqa: F403
from internvl_tools.generation.tools import *  # noqa: F403

__all__ = [
    *options.__all__,
    *text.__all__,
    *stopping.__all__,
    *stream.__all__,
    *decoding.__all__,
    *structured.__all__,
    *tools.__all__,
]
