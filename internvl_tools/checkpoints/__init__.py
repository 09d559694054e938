"""Checkpoints: the one config reader (:mod:`.config`), weight mapping onto transformers' native InternVL
(:mod:`.weights`, by the per-family table in :mod:`.families`), tokenizers, device placement and loading
(:mod:`.load`).

The process-wide registry of loaded models (one copy of the weights per checkpoint and settings) is engine-side:
:mod:`internvl_tools.engines.registry`.
"""

from typing import TYPE_CHECKING

from internvl_tools.lazy import lazy_exports

__all__, __getattr__, __dir__ = lazy_exports(
    __name__,
    (
        "config",
        "families",
        "weights",
        "load",
        "device",
    ),
)

if TYPE_CHECKING:  # for type checkers and IDEs: the same names, eagerly
    from internvl_tools.checkpoints.config import *  # noqa: F403
    from internvl_tools.checkpoints.device import *  # noqa: F403
    from internvl_tools.checkpoints.families import *  # noqa: F403
    from internvl_tools.checkpoints.load import *  # noqa: F403
    from internvl_tools.checkpoints.weights import *  # noqa: F403
