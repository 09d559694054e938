"""Engines: the VisionLanguageModel contract, conversation → model input, generation on loaded weights, the local
InternVL engine and the client for OpenAI-compatible servers."""

from internvl_tools.engines import base, generate, local, prepare, registry, remote, settings, transport
from internvl_tools.engines.base import *  # noqa: F403
from internvl_tools.engines.generate import *  # noqa: F403
from internvl_tools.engines.local import *  # noqa: F403
from internvl_tools.engines.prepare import *  # noqa: F403
from internvl_tools.engines.registry import *  # noqa: F403
from internvl_tools.engines.remote import *  # noqa: F403
from internvl_tools.engines.settings import *  # noqa: F403
from internvl_tools.engines.transport import *  # noqa: F403

__all__ = [
    *base.__all__,
    *prepare.__all__,
    *generate.__all__,
    *local.__all__,
    *registry.__all__,
    *transport.__all__,
    *remote.__all__,
    *settings.__all__,
]
