"""Engines: the VisionLanguageModel contract, conversation → model input, generation on loaded weights, the local
InternVL engine and the client for OpenAI-compatible servers."""

from typing import TYPE_CHECKING

from internvl_tools.lazy import lazy_exports

__all__, __getattr__, __dir__ = lazy_exports(
    __name__,
    (
        "base",
        "prepare",
        "generate",
        "local",
        "registry",
        "transport",
        "remote",
        "settings",
    ),
)

if TYPE_CHECKING:  # for type checkers and IDEs: the same names, eagerly
    from internvl_tools.engines.base import *  # noqa: F403
    from internvl_tools.engines.generate import *  # noqa: F403
    from internvl_tools.engines.local import *  # noqa: F403
    from internvl_tools.engines.prepare import *  # noqa: F403
    from internvl_tools.engines.registry import *  # noqa: F403
    from internvl_tools.engines.remote import *  # noqa: F403
    from internvl_tools.engines.settings import *  # noqa: F403
    from internvl_tools.engines.transport import *  # noqa: F403
