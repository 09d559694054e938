"""Checkpoints: the one config reader (:mod:`.config`), weight mapping onto transformers' native InternVL
(:mod:`.weights`, by the per-family table in :mod:`.families`), tokenizers, device placement and loading
(:mod:`.load`).

The process-wide registry of loaded models (one copy of the weights per checkpoint and settings) is engine-side:
:mod:`internvl_tools.engines.registry`.
"""

from internvl_tools.checkpoints import config, device, families, load, weights
from internvl_tools.checkpoints.config import *  # noqa: F403
from internvl_tools.checkpoints.device import *  # noqa: F403
from internvl_tools.checkpoints.families import *  # noqa: F403
from internvl_tools.checkpoints.load import *  # noqa: F403
from internvl_tools.checkpoints.weights import *  # noqa: F403

__all__ = [*config.__all__, *families.__all__, *weights.__all__, *load.__all__, *device.__all__]
