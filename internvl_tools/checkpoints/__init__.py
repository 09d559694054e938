"""Checkpoints: the one config reader (:mod:`.config`), weight mapping onto transformers' native InternVL
(:mod:`.weights`), tokenizers, device placement and loading (:mod:`.load`).

The engine-side registry of loaded models is :mod:`internvl_tools.checkpoints.registry`; it builds on this package
and on :mod:`internvl_tools.testing`, so it is not imported here.
"""

from internvl_tools.checkpoints import config, device, load, weights
from internvl_tools.checkpoints.config import *  # noqa: F403
from internvl_tools.checkpoints.device import *  # noqa: F403
from internvl_tools.checkpoints.load import *  # noqa: F403
from internvl_tools.checkpoints.weights import *  # noqa: F403

__all__ = [*config.__all__, *weights.__all__, *load.__all__, *device.__all__]
