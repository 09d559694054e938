"""Checkpoints: the one config reader, weight mapping onto transformers' native InternVL, tokenizers, device placement, loading and the shared-weights registry."""

from internvl_tools.checkpoints import config, weights, load, device, registry
from internvl_tools.checkpoints.config import *  # noqa: F403
from internvl_tools.checkpoints.weights import *  # noqa: F403
from internvl_tools.checkpoints.load import *  # noqa: F403
from internvl_tools.checkpoints.device import *  # noqa: F403
from internvl_tools.checkpoints.registry import *  # noqa: F403

__all__ = [*config.__all__, *weights.__all__, *load.__all__, *device.__all__, *registry.__all__]
