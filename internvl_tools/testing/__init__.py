"""Testing helpers: tiny random InternVL checkpoints built offline, byte-identical per seed, cached on disk
(:mod:`.checkpoints`), their models (:mod:`.models`) and tokenizers (:mod:`.tokenizers`)."""

from internvl_tools.testing import checkpoints, models, tokenizers
from internvl_tools.testing.checkpoints import *  # noqa: F403
from internvl_tools.testing.models import *  # noqa: F403
from internvl_tools.testing.tokenizers import *  # noqa: F403

__all__ = [*checkpoints.__all__, *models.__all__, *tokenizers.__all__]
