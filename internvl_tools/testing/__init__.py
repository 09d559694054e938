"""Testing helpers: tiny random InternVL checkpoints built offline, byte-identical per seed, cached on disk."""

from internvl_tools.testing import checkpoints
from internvl_tools.testing.checkpoints import *  # noqa: F403

__all__ = [*checkpoints.__all__]
