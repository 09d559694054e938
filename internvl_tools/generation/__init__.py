"""Generation: options, token text, stopping criteria, streams, the decoding loop and grammar-constrained (JSON-schema)
output, and tool calls decoded under a grammar."""

from typing import TYPE_CHECKING

from internvl_tools.lazy import lazy_exports

__all__, __getattr__, __dir__ = lazy_exports(
    __name__,
    (
        "options",
        "text",
        "stopping",
        "stream",
        "decoding",
        "structured",
        "tools",
    ),
)

if TYPE_CHECKING:  # for type checkers and IDEs: the same names, eagerly
    from internvl_tools.generation.decoding import *  # noqa: F403
    from internvl_tools.generation.options import *  # noqa: F403
    from internvl_tools.generation.stopping import *  # noqa: F403
    from internvl_tools.generation.stream import *  # noqa: F403
    from internvl_tools.generation.structured import *  # noqa: F403
    from internvl_tools.generation.text import *  # noqa: F403
    from internvl_tools.generation.tools import *  # noqa: F403
