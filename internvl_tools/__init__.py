"""internvl-tools: InternVL vision-language models for LangChain, LlamaIndex, notebooks and the command line.

Importing the package is cheap: torch, transformers, pypdfium2 and decord load only when a feature needs them.
The public surface is each module's ``__all__`` in :data:`PUBLIC_MODULES` (written once, in that module); names
resolve lazily on first access (PEP 562), so ``import internvl_tools`` imports only :mod:`internvl_tools.errors`.

>>> import internvl_tools
>>> internvl_tools.select_grid(800, 600)
(4, 3)
>>> "read_pdf" in internvl_tools.__all__
True
"""

from __future__ import annotations

import importlib
import warnings
from typing import TYPE_CHECKING, Any

from internvl_tools import errors
from internvl_tools.errors import *  # noqa: F403
from internvl_tools.lazy import module_all

__version__ = "0.1.0"

# The modules whose ``__all__`` make up the top-level API, in data-flow order. Subpackages keep further names
# (``internvl_tools.grounding``, ``internvl_tools.documents``, ``internvl_tools.testing``, ...).
PUBLIC_MODULES: tuple[str, ...] = (
    "internvl_tools.media.policy",
    "internvl_tools.media.paths",
    "internvl_tools.media.decode",
    "internvl_tools.media.images",
    "internvl_tools.media.video",
    "internvl_tools.tiling",
    "internvl_tools.messages",
    "internvl_tools.results",
    "internvl_tools.prompts.templates",
    "internvl_tools.prompts.builder",
    "internvl_tools.checkpoints.config",
    "internvl_tools.checkpoints.load",
    "internvl_tools.checkpoints.device",
    "internvl_tools.generation.options",
    "internvl_tools.generation.stream",
    "internvl_tools.generation.structured",
    "internvl_tools.engines.base",
    "internvl_tools.engines.local",
    "internvl_tools.engines.remote",
    "internvl_tools.engines.settings",
    "internvl_tools.grounding.types",
    "internvl_tools.grounding.prompts",
    "internvl_tools.grounding.drawing",
    "internvl_tools.grounding.result",
    "internvl_tools.grounding.parser",
    "internvl_tools.documents.blocks",
    "internvl_tools.documents.models",
    "internvl_tools.documents.chunks",
    "internvl_tools.documents.sources",
    "internvl_tools.documents.sizing",
    "internvl_tools.documents.render",
    "internvl_tools.documents.options",
    "internvl_tools.documents.pipeline",
    "internvl_tools.documents.output",
)

# Names that left the top level, still resolved (with a DeprecationWarning) from where they live now.
_MOVED: dict[str, str] = {
    "make_tiny_checkpoint": "internvl_tools.testing",
    "tiny_checkpoint": "internvl_tools.testing",
}


def _lazy_map() -> dict[str, str]:
    mapping: dict[str, str] = {}
    for module in PUBLIC_MODULES:
        for name in module_all(module):
            mapping.setdefault(name, module)  # tests/test_exported_members.py checks each name has one home
    return mapping


_LAZY: dict[str, str] = _lazy_map()

__all__ = ["__version__", *errors.__all__, *_LAZY]


def __getattr__(name: str) -> Any:
    module_name = _LAZY.get(name)
    if module_name is None and name in _MOVED:
        module_name = _MOVED[name]
        warnings.warn(
            f"internvl_tools.{name} moved to {module_name}.{name}; import it from there.",
            DeprecationWarning,
            stacklevel=2,
        )
    if module_name is None:
        raise AttributeError(f"module 'internvl_tools' has no attribute {name!r}")
    value = getattr(importlib.import_module(module_name), name)
    if name in _LAZY:
        globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(_LAZY))


if TYPE_CHECKING:  # pragma: no cover - for type checkers and IDEs: the same modules, star-imported
    from internvl_tools.checkpoints.config import *  # noqa: F403
    from internvl_tools.checkpoints.device import *  # noqa: F403
    from internvl_tools.checkpoints.load import *  # noqa: F403
    from internvl_tools.documents.models import *  # noqa: F403
    from internvl_tools.documents.options import *  # noqa: F403
    from internvl_tools.documents.output import *  # noqa: F403
    from internvl_tools.documents.pipeline import *  # noqa: F403
    from internvl_tools.documents.render import *  # noqa: F403
    from internvl_tools.documents.sizing import *  # noqa: F403
    from internvl_tools.documents.sources import *  # noqa: F403
    from internvl_tools.engines.base import *  # noqa: F403
    from internvl_tools.engines.local import *  # noqa: F403
    from internvl_tools.engines.remote import *  # noqa: F403
    from internvl_tools.engines.settings import *  # noqa: F403
    from internvl_tools.generation.options import *  # noqa: F403
    from internvl_tools.generation.stream import *  # noqa: F403
    from internvl_tools.generation.structured import *  # noqa: F403
    from internvl_tools.grounding.drawing import *  # noqa: F403
    from internvl_tools.grounding.parser import *  # noqa: F403
    from internvl_tools.grounding.prompts import *  # noqa: F403
    from internvl_tools.grounding.result import *  # noqa: F403
    from internvl_tools.grounding.types import *  # noqa: F403
    from internvl_tools.media.decode import *  # noqa: F403
    from internvl_tools.media.images import *  # noqa: F403
    from internvl_tools.media.paths import *  # noqa: F403
    from internvl_tools.media.policy import *  # noqa: F403
    from internvl_tools.media.video import *  # noqa: F403
    from internvl_tools.messages import *  # noqa: F403
    from internvl_tools.prompts.builder import *  # noqa: F403
    from internvl_tools.prompts.templates import *  # noqa: F403
    from internvl_tools.results import *  # noqa: F403
    from internvl_tools.tiling import *  # noqa: F403
